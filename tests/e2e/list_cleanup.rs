//! `asdo list` and `asdo cleanup` over pods the fake API server holds.

use std::time::Duration;

use crate::common::*;

fn seed(env: &Env) {
    let h = Duration::from_secs(3600);
    env.server
        .insert_pod(task_pod("T1", "Succeeded", Some(0), 3 * h));
    env.server
        .insert_pod(task_pod("T2", "Failed", Some(12), h / 2));
    env.server
        .insert_pod(task_pod("T3", "Running", None, h / 6));
    env.server
        .insert_pod(task_pod("T4", "Succeeded", Some(0), h / 60));
}

#[test]
fn list_shows_a_table_and_other_formats() {
    let env = Env::new();
    seed(&env);
    let r = env.asdo(&["list"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{r:?}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "TASK", "POD", "STATUS", "EXIT", "AGE", "DURATION", "BRANCH", "STEP"
        ]
    );
    let t2: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("T2 "))
        .unwrap()
        .split_whitespace()
        .collect();
    // Exit 12 is the agent's `agent` step (no log to read here): STATUS says so.
    assert_eq!(&t2[..5], ["T2", "agent-t2", "Failed", "(agent)", "12"]);
    assert_eq!(t2[7], "specs/1/T2-async");

    let r = env.asdo(&["list", "--phase", "succeeded", "-o", "name"]);
    assert_eq!(r.stdout, "pod/agent-t1\npod/agent-t4\n", "{r:?}");

    // The task objects (the Pods are kubectl's: get pods -l app=agent-orchestrator -o json).
    let r = env.asdo(&["list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let tasks = v.as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    assert_eq!(tasks[1]["id"], "T2");
    assert_eq!(tasks[1]["status"], "Failed (agent)");

    let r = env.asdo(&["list", "-o", "wide"]);
    assert!(
        r.stdout.lines().next().unwrap().contains("NODE")
            && r.stdout
                .lines()
                .next()
                .unwrap()
                .contains("TOKENS   COST   PR")
            && r.stdout.contains("git@github.com:o/r.git"),
        "{r:?}"
    );

    let r = env.asdo(&["list", "-A"]);
    assert!(r.stdout.starts_with("NAMESPACE"), "{r:?}");
    assert!(
        env.count("GET", "/api/v1/pods") >= 1,
        "-A lists cluster-wide"
    );
}

#[test]
fn list_pages_through_large_results() {
    let env = Env::new();
    for i in 0..1203 {
        env.server.insert_pod(task_pod(
            &format!("P{i:04}"),
            "Succeeded",
            Some(0),
            Duration::from_secs(60),
        ));
    }
    env.server.clear_requests();
    let r = env.asdo(&["list", "-o", "name"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 1203);
    let pages: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.path.ends_with("/pods"))
        .collect();
    assert_eq!(pages.len(), 3, "500 per page: {pages:?}");
    assert!(pages[1].query.contains("continue="), "{pages:?}");
}

#[test]
fn list_empty_namespace() {
    let env = Env::new();
    let r = env.asdo(&["list"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    assert!(r.stderr.contains("No task pods found"), "{r:?}");
}

#[test]
fn cleanup_deletes_finished_pods_in_one_call() {
    let env = Env::new();
    seed(&env);
    env.server.clear_requests();
    let r = env.asdo(&["cleanup"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut deleted: Vec<&str> = r.stdout.lines().collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "pod/agent-t1 deleted",
            "pod/agent-t2 deleted",
            "pod/agent-t4 deleted"
        ]
    );
    let deletes: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "one deletecollection: {deletes:?}");
    // kubectl agrees: only the running task is left.
    let k = env.kubectl(&["get", "pods", "-n", NS, "-o", "name"]);
    assert_eq!(k.stdout, "pod/agent-t3\n", "{k:?}");
}

#[test]
fn cleanup_older_than_and_dry_run() {
    let env = Env::new();
    seed(&env);
    let r = env.asdo(&["cleanup", "--older-than", "1h", "--dry-run"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "pod/agent-t1 deleted (dry run)\n"),
        "{r:?}"
    );
    assert_eq!(env.server.pods(NS).len(), 4, "dry run deletes nothing");

    let r = env.asdo(&["cleanup", "--older-than", "20m"]);
    let mut out: Vec<&str> = r.stdout.lines().collect();
    out.sort();
    assert_eq!(
        out,
        ["pod/agent-t1 deleted", "pod/agent-t2 deleted"],
        "{r:?}"
    );
    assert_eq!(env.server.pods(NS).len(), 2);
}

#[test]
fn cleanup_by_task_and_forced_all() {
    let env = Env::new();
    seed(&env);
    let r = env.asdo(&["cleanup", "--task-id", "T3"]);
    assert_eq!(r.stdout, "", "a running task is not finished: {r:?}");
    let r = env.asdo(&["cleanup", "--all"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--force"));
    let r = env.asdo(&["cleanup", "--task-id", "T3", "--all", "--force"]);
    assert_eq!(r.stdout, "pod/agent-t3 deleted\n", "{r:?}");
    let r = env.asdo(&["cleanup", "--phase", "Failed"]);
    assert_eq!(r.stdout, "pod/agent-t2 deleted\n", "{r:?}");
    assert_eq!(env.server.pods(NS).len(), 2);
}

#[test]
fn cleanup_reports_api_errors() {
    let env = Env::new();
    seed(&env);
    env.server.fail_next_matching(1, 500, "DELETE", "/pods");
    let r = env.asdo(&["cleanup"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("500"), "{r:?}");
}

/// Namespaces that would change which object a request addresses if they reached a path.
const HOSTILE_NAMESPACES: &[&str] = &[
    "agent-orchestrator-dev?",
    "agent-orchestrator-dev#x",
    "agent-orchestrator-dev/pods/x",
    "..",
    "agent-orchestrator-dev/../kube-system",
    "agent%2Fx",
    "agent orchestrator",
    "agént",
    "Agent-Orchestrator-Dev",
    "",
    "ns\nx",
];

const HOSTILE_SELECTORS: &[&str] = &[
    "a=b?x",
    "a=b#x",
    "a=b/c",
    "task-id=T1&labelSelector=",
    "a=%2F",
    "a b",
    "ü=1",
    "=x",
    "a=b,",
    "a in (b",
    "a\nb",
];

/// Every DELETE asdo ever sent is of pods in the namespace, by collection or by name.
fn assert_only_pod_deletes(env: &Env) {
    for r in env
        .server
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
    {
        let rest = r
            .path
            .strip_prefix(&format!("/api/v1/namespaces/{NS}/pods"))
            .unwrap_or_else(|| panic!("DELETE of {} is not of pods in {NS}", r.path));
        assert!(
            rest.is_empty()
                || rest.strip_prefix('/').is_some_and(|n| n
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')),
            "DELETE of {}",
            r.path
        );
    }
}

fn one_line_usage(r: &Run, what: &str) {
    assert_eq!(r.code, 2, "{what}: {r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{what}: one line: {r:?}");
    assert!(r.stderr.starts_with("error: "), "{what}: {r:?}");
}

#[test]
fn hostile_namespaces_and_selectors_send_nothing() {
    let env = Env::new();
    seed(&env);
    // A pod asdo never owned, next to the task pods.
    let mut other = task_pod("X9", "Running", None, Duration::from_secs(60));
    other.metadata.name = Some("not-asdo".into());
    other.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    env.server.insert_pod(other);
    env.server.clear_requests();
    let commands: &[&[&str]] = &[
        &["cleanup"],
        &["cleanup", "--older-than", "1s"],
        &["cleanup", "--all", "--force"],
        &["list"],
        &["logs", "T1", "--no-follow"],
        &["logs", "--all", "--no-follow"],
        &["wait", "T1", "--timeout", "5s"],
        &["status", "T1"],
        &[
            "spawn",
            "--task-id",
            "T7",
            "--branch",
            "b",
            "--repo",
            "git@h:o/r.git",
        ],
    ];
    for ns in HOSTILE_NAMESPACES {
        for cmd in commands {
            let mut args = vec!["-n", ns];
            args.extend_from_slice(cmd);
            let r = env.asdo(&args);
            one_line_usage(&r, &format!("-n {ns:?} {cmd:?}"));
            assert!(r.stderr.contains("namespace"), "{r:?}");
        }
        // The same through $NAMESPACE.
        let mut c = env.cmd(&["cleanup"]);
        c.env("NAMESPACE", ns);
        let r = run_with_timeout(c, Duration::from_secs(60));
        one_line_usage(&r, &format!("NAMESPACE={ns:?}"));
    }
    for sel in HOSTILE_SELECTORS {
        for cmd in [
            &["cleanup", "-l"][..],
            &["list", "-l"],
            &["logs", "--no-follow", "-l"],
            &["logs", "-l"],
        ] {
            let mut args = cmd.to_vec();
            args.push(sel);
            let r = env.asdo(&args);
            one_line_usage(&r, &format!("{args:?}"));
            assert!(r.stderr.contains("selector"), "{r:?}");
        }
    }
    for id in ["T1?", "T1#", "../x", "t1/x", "T1%2F", "", "T 1"] {
        for cmd in [
            &["logs", id][..],
            &["status", id],
            &["wait", id],
            &["cleanup", "--task-id", id],
        ] {
            let r = env.asdo(cmd);
            one_line_usage(&r, &format!("{cmd:?}"));
        }
    }
    assert_eq!(
        env.server.requests(),
        vec![],
        "no hostile input reaches the API server"
    );
    assert!(env.server.pod(NS, "not-asdo").is_some());
    assert_eq!(env.server.pods(NS).len(), 5);

    // The real deletes: a collection and per-pod, and nothing else.
    let r = env.asdo(&["cleanup", "--older-than", "1h"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["cleanup", "-l", "task-id in (T2, T4)"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_only_pod_deletes(&env);
    assert!(env.count("DELETE", "/pods") >= 2);
    assert!(
        env.server.pod(NS, "not-asdo").is_some(),
        "never a foreign pod"
    );
    // A valid selector the server still refuses is one line and exit 1, not a retry.
    env.server.fail_next_matching(1, 400, "DELETE", "/pods");
    let r = env.asdo(&["cleanup", "-l", "x=y"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

#[test]
fn cleanup_deletes_only_the_pod_it_listed() {
    let env = Env::new();
    seed(&env);
    let r = env.asdo(&["cleanup", "--older-than", "2h", "-v"]);
    assert_eq!(r.stdout, "pod/agent-t1 deleted\n", "{r:?}");
    let deletes: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(
        deletes[0].path,
        format!("/api/v1/namespaces/{NS}/pods/agent-t1")
    );
}

#[test]
fn a_server_that_never_answers_bounds_every_command() {
    let env = Env::new();
    seed(&env);
    // Accepts every connection, reads the request, never answers.
    env.server.hang_next_matching(100_000, None, None);
    let commands: &[&[&str]] = &[
        &["list"],
        &["status", "T1"],
        &["logs", "T1"],
        &["logs", "--all"],
        &["logs", "--all", "--no-follow"],
        &["cleanup"],
        &["cleanup", "--older-than", "1s"],
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
        let mut args = vec!["--request-timeout", "1s"];
        args.extend_from_slice(cmd);
        let r = env.asdo(&args);
        assert_eq!(r.code, 1, "{cmd:?}: {r:?}");
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{cmd:?}: {r:?}");
        assert!(
            errors[0].contains("did not answer within 1s") && errors[0].contains("127.0.0.1"),
            "names the server and the bound: {r:?}"
        );
    }
    // wait's bound is --timeout: it ends with 124 and a line per task.
    let r = env.asdo(&["--request-timeout", "1s", "wait", "T1", "--timeout", "2s"]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(r.stdout.starts_with("T1 TimedOut"), "{r:?}");
    assert!(
        r.stderr.contains("not answering"),
        "says why it waits: {r:?}"
    );
    // Nothing was created behind our back.
    env.server.clear_failures();
    assert!(env.server.pod(NS, "agent-t9").is_none());
}
