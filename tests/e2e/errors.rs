//! What every verb says when the answer is not what a Kubernetes API server says, and
//! how every verb ends when its reader goes away.

use crate::common::*;

/// A 404 with an empty body (a proxy, the wrong port): every verb names the status, the
/// server and what to check, through one error path; nothing ends in an empty reason.
#[test]
fn an_empty_404_names_the_status_the_server_and_what_to_check() {
    let env = Env::new();
    env.spawn_script("T1", "sleep 30");
    env.server.fail_next_raw(100_000, 404, "", None);
    let url = env.server.url();
    let commands: &[&[&str]] = &[
        &["list"],
        &["status", "T1"],
        &["logs", "T1"],
        &["logs", "--all"],
        &["wait", "T1", "--timeout", "20s"],
        &["wait", "--all", "--timeout", "20s"],
        &["cleanup"],
        &[
            "spawn",
            "--task-id",
            "T9",
            "--branch",
            "b",
            "--repo",
            "git@h:o/r.git",
        ],
    ];
    for cmd in commands {
        let r = env.asdo(cmd);
        assert_eq!(r.code, 1, "{cmd:?}: {r:?}");
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{cmd:?}: {r:?}");
        let e = errors[0];
        assert!(
            e.contains("404")
                && e.contains("with an empty body")
                && e.contains(url.trim_end_matches('/'))
                && e.contains("is this a Kubernetes API server?")
                && !e.contains("Failed to parse"),
            "{cmd:?}: {e}"
        );
    }
    env.server.clear_failures();
}
