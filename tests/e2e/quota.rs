//! A ResourceQuota capping task pods (`count/pods`): `asdo spawn` says so in one line.

use std::time::Duration;

use crate::common::*;

#[test]
fn spawn_over_the_pod_quota_says_how_many_may_run() {
    let env = Env::new();
    env.server
        .set_pod_quota(NS, Some(("agentic-sdlc-orchestrator-dev-tasks", 1)));
    let first = env.spawn_script("Q1", "sleep 30");
    assert!(
        env.server
            .wait_for_phase(NS, &first, "Running", Duration::from_secs(30))
    );

    let values = env.script_values("echo hi");
    let second = [
        "spawn",
        "--task-id",
        "Q2",
        "--branch",
        "specs/001-auth/Q2-async",
        "--repo",
        "git@github.com:org/repo.git",
        "-f",
        path_str(&values),
    ];
    let r = env.asdo(&second);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {r:?}");
    assert!(
        r.stderr.contains(
            "allows 1 task pods at once (ResourceQuota agentic-sdlc-orchestrator-dev-tasks)"
        ) && r.stderr.contains("1 are pending or running")
            && r.stderr.contains("asdo cleanup"),
        "{r:?}"
    );
    assert!(env.server.pod(NS, "agent-q2").is_none());

    // kubectl, an independent client, gets the API server's own refusal from the fake.
    let k = env.kubectl(&[
        "run",
        "other",
        "-n",
        NS,
        "--image",
        "busybox",
        "--restart",
        "Never",
    ]);
    assert_ne!(k.code, 0, "{k:?}");
    assert!(
        k.stderr
            .contains("exceeded quota: agentic-sdlc-orchestrator-dev-tasks"),
        "{k:?}"
    );

    // Finished pods are not charged: once Q1 has ended, Q2 fits.
    let r = env.asdo(&["cleanup", "--task-id", "Q1", "--all", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(eventually(Duration::from_secs(30), || env
        .server
        .pod(NS, &first)
        .is_none()));
    let r = env.asdo(&second);
    assert_eq!(r.code, 0, "{r:?}");
}
