//! `asdo wait`, `status`, `doctor` and task lists: knowing when and how tasks end.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::common::*;

#[test]
fn wait_reports_each_task_and_writes_spec_kit_markers() {
    let env = Env::new();
    env.spawn_script(
        "T1",
        "echo 'asdo: cloning x'; sleep 0.3; echo 'asdo: done 0123456789abcdef'",
    );
    env.spawn_script(
        "T2",
        "echo 'asdo: running opencode'; echo 'asdo: failed agent: opencode exited 1'; exit 12",
    );
    let report = TempDir::new("report");
    let r = env.asdo(&["wait", "T1", "T2", "--report-dir", path_str(&report.0)]);
    assert_eq!(r.code, 1, "one task failed: {r:?}");
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert!(
        lines[0].starts_with("T1 Succeeded exit=0 duration="),
        "{r:?}"
    );
    assert!(lines[0].ends_with("commit=0123456789abcdef"), "{r:?}");
    assert!(lines[1].starts_with("T2 Failed exit=12"), "{r:?}");
    assert!(lines[1].contains("failed-step=agent"), "{r:?}");

    let done = std::fs::read_to_string(report.0.join("delegation_completed/T1.txt")).unwrap();
    assert!(
        done.contains("commit: 0123456789abcdef")
            && done.contains("branch: specs/001-auth/T1-async"),
        "{done}"
    );
    let err = std::fs::read_to_string(report.0.join("delegation_errors/T2.txt")).unwrap();
    assert!(
        err.contains("failed_step: agent") && err.contains("  asdo: running opencode"),
        "{err}"
    );
    assert!(!report.0.join("delegation_errors/T1.txt").exists());
}

#[test]
fn wait_all_succeeds_only_when_all_do() {
    let env = Env::new();
    env.spawn_script("W1", "sleep 0.2; echo 'asdo: done aaa'");
    env.spawn_script("W2", "sleep 0.4; echo 'asdo: done no-changes'");
    let r = env.asdo(&["wait", "--all"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");
    assert!(r.stdout.contains("commit=none (no changes)"), "{r:?}");
}

#[test]
fn wait_times_out_with_124_and_an_error_marker() {
    let env = Env::new();
    env.spawn_script("SLOW", "sleep 60");
    let report = TempDir::new("timeout");
    let r = env.asdo(&[
        "wait",
        "SLOW",
        "--timeout",
        "1s",
        "--report-dir",
        path_str(&report.0),
    ]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(r.stdout.starts_with("SLOW TimedOut("), "{r:?}");
    let err = std::fs::read_to_string(report.0.join("delegation_errors/SLOW.txt")).unwrap();
    assert!(err.contains("still "), "{err}");
}

#[test]
fn wait_notices_a_deleted_or_missing_pod() {
    let env = Env::new();
    let pod = env.spawn_script("GONE", "sleep 60");
    let child = env.start(&["wait", "GONE", "NEVER"]);
    assert!(
        env.server
            .wait_for_phase(NS, &pod, "Running", Duration::from_secs(10))
    );
    std::thread::sleep(Duration::from_millis(300));
    let k = env.kubectl(&["delete", "pod", &pod, "-n", NS, "--wait=false"]);
    assert_eq!(k.code, 0, "{k:?}");
    let r = wait_output(child, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("NEVER NotFound"), "{r:?}");
    assert!(r.stdout.contains("GONE Deleted"), "{r:?}");
}

#[test]
fn status_shows_state_marker_and_events() {
    let env = Env::new();
    env.spawn_script("ST", "echo 'asdo: pushing b'; echo 'asdo: done cafe'");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-st", "Succeeded", Duration::from_secs(10))
    );
    let r = env.asdo(&["status", "ST"]);
    assert_eq!(r.code, 0, "{r:?}");
    for want in [
        "Task:        ST",
        "Phase:       Succeeded",
        "Exit code:   0",
        "Node:        fake-node",
        "Last marker: asdo: done cafe",
        "Events:",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?}: {r:?}");
    }
    assert!(
        r.stdout.contains("Scheduled") || r.stdout.contains("Started"),
        "events listed: {r:?}"
    );
    let r = env.asdo(&["status", "NOPE"]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn status_explains_a_pending_pod() {
    let env = Env::new();
    env.server
        .set_unschedulable(Some("0/1 nodes are available: 1 Insufficient cpu."));
    env.spawn_script("PEND", "true");
    let ok = eventually(Duration::from_secs(10), || {
        env.asdo(&["status", "PEND"])
            .stdout
            .contains("Insufficient cpu")
    });
    assert!(ok, "{:?}", env.asdo(&["status", "PEND"]));
}

#[test]
fn doctor_checks_the_environment() {
    let env = Env::new();
    env.server.put_configmap(
        NS,
        "agentic-sdlc-orchestrator-dev-config",
        &[("values.yaml", "{}")],
    );
    let r = env.asdo(&["doctor"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.lines().all(|l| l.starts_with("ok")), "{r:?}");
    assert!(
        r.stdout.contains("may create pods") && r.stdout.contains("may get pods/log"),
        "{r:?}"
    );

    // Another environment: its namespace and objects are missing.
    let r = env.asdo(&["doctor", "-e", "prod"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("FAIL  namespace agent-orchestrator-prod not found"),
        "{r:?}"
    );
}

#[test]
fn task_list_spawns_all_and_names_failures() {
    let env = Env::new();
    env.spawn_script("L2", "sleep 30");
    let list = env.write(
        "tasks.yaml",
        "repo: git@github.com:org/repo.git\ntasks:\n  - {id: L1, branch: specs/1/L1-async, prompt: one}\n  - {id: L2, branch: specs/1/L2-async}\n  - {id: L3, branch: specs/1/L3-async, contextDir: specs/1}\n",
    );
    let r = env.asdo(&["spawn", "-f", path_str(&list)]);
    assert_eq!(r.code, 1, "{r:?}");
    let mut created: Vec<&str> = r.stdout.lines().collect();
    created.sort();
    assert_eq!(created, ["pod/agent-l1 created", "pod/agent-l3 created"]);
    assert!(r.stderr.contains("1 of 3 tasks failed: L2"), "{r:?}");
    assert_eq!(env.server.pods(NS).len(), 3, "created pods stay");

    // The whole list is validated before anything is sent.
    let bad = env.write("bad-tasks.yaml", "tasks:\n  - {id: B1, branch: b, repo: git@h:o/r.git}\n  - {id: B2, branch: 'bad..branch', repo: git@h:o/r.git}\n");
    env.server.clear_requests();
    let r = env.asdo(&["spawn", "-f", path_str(&bad)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("bad-tasks.yaml") && r.stderr.contains("invalid branch"),
        "{r:?}"
    );
    assert!(env.server.requests().is_empty());
}

/// A task list re-run is idempotent and cheap: one read of the chart's ConfigMap, one list
/// of the existing task pods, no create; every task `unchanged`.
#[test]
fn task_list_rerun_is_one_list_and_all_unchanged() {
    let env = Env::new();
    env.server.set_schedule_delay(Duration::from_secs(3600));
    let mut text = String::from(
        "repo: git@github.com:org/repo.git\nbranch: \"specs/{feature}/{id}-async\"\nfeature: 001-x\ntasks:\n",
    );
    for i in 0..40 {
        text.push_str(&format!("  - {{id: R{i:02}}}\n"));
    }
    let list = env.write("tasks.yaml", &text);
    let spawn = ["spawn", "-f", path_str(&list), "--if-exists", "skip"];
    env.server.clear_requests();
    let r = env.asdo(&spawn);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.lines().filter(|l| l.ends_with(" created")).count(),
        40,
        "{r:?}"
    );
    assert_eq!(
        env.count("GET", "/configmaps/"),
        1,
        "one read of the chart's ConfigMap"
    );
    assert_eq!(env.count("POST", "/pods"), 40);

    env.server.clear_requests();
    let r = env.asdo(&spawn);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout
            .lines()
            .filter(|l| l.ends_with(" unchanged"))
            .count(),
        40,
        "{r:?}"
    );
    let requests = env.server.requests();
    assert_eq!(env.count("GET", "/configmaps/"), 1, "{requests:?}");
    assert_eq!(env.count("POST", ""), 0, "no create: {requests:?}");
    assert_eq!(
        requests.len(),
        2,
        "the ConfigMap and one list of pods: {requests:?}"
    );
    // A pod of the list deleted meanwhile is created again; the rest stay unchanged.
    assert_eq!(
        env.asdo(&["cleanup", "--task-id", "R07", "--all", "--force"])
            .code,
        0
    );
    assert!(eventually(Duration::from_secs(30), || env
        .server
        .pod(NS, "agent-r07")
        .is_none()));
    let r = env.asdo(&spawn);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-r07 created"), "{r:?}");
    assert_eq!(
        r.stdout
            .lines()
            .filter(|l| l.ends_with(" unchanged"))
            .count(),
        39,
        "{r:?}"
    );
}

#[test]
fn wait_report_dir_that_cannot_be_written_is_exit_1_naming_the_path() {
    let env = Env::new();
    env.spawn_script("U1", "echo 'asdo: done aaa'");
    env.spawn_script("U2", "sleep 1; echo 'asdo: failed agent: x'; exit 3");
    // As root, permissions do not stop a write; a file where a directory must be does.
    let base = TempDir::new("report-ro");
    let file = base.0.join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("reports");
    let r = env.asdo(&["wait", "U1", "U2", "--report-dir", path_str(&under_file)]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(path_str(&under_file)),
        "names the path: {r:?}"
    );
    assert!(r.stderr.contains("Not a directory"), "the OS error: {r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");

    // Writable at first, one kind of marker impossible later: every task still gets its
    // outcome, the other marker is written, and the exit code says a report is missing.
    let report = TempDir::new("report-half");
    std::fs::write(report.0.join("delegation_completed"), "").unwrap();
    let r = env.asdo(&["wait", "U1", "U2", "--report-dir", path_str(&report.0)]);
    assert_eq!(r.code, 1, "{r:?}");
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "both tasks have an outcome: {r:?}");
    assert!(
        lines[0].starts_with("U1 Succeeded") && lines[1].starts_with("U2 Failed"),
        "{r:?}"
    );
    assert!(r.stderr.contains("delegation_completed"), "{r:?}");
    assert!(report.0.join("delegation_errors/U2.txt").exists());
}

#[test]
fn termination_reasons_are_named() {
    let env = Env::new();
    let mut pod = task_pod("K1", "Failed", Some(137), Duration::from_secs(30));
    let status = pod
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap();
    status[0]
        .state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap()
        .reason = Some("OOMKilled".into());
    env.server.insert_pod(pod);
    let r = env.asdo(&["wait", "K1"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("exit=137") && r.stdout.contains("reason=OOMKilled"),
        "{r:?}"
    );
    let r = env.asdo(&["status", "K1"]);
    assert!(r.stdout.contains("137 (OOMKilled)"), "{r:?}");
    // (`logs` names it the same way: follow::many::tests::endings_name_the_reason.)
    let report = TempDir::new("report-oom");
    env.asdo(&["wait", "K1", "--report-dir", path_str(&report.0)]);
    let text = std::fs::read_to_string(report.0.join("delegation_errors/K1.txt")).unwrap();
    assert!(text.contains("reason_terminated: OOMKilled"), "{text}");
}

#[test]
fn wait_keeps_waiting_through_api_errors_and_says_so() {
    let env = Env::new();
    env.spawn_script("O1", "sleep 2; echo 'asdo: done bbb'");
    // The API server answers 503 for a while (a restart behind a load balancer).
    env.server.fail_next_matching(6, 503, "GET", "/pods");
    let r = env.asdo(&["wait", "O1", "--timeout", "60s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("O1 Succeeded"), "{r:?}");
}

#[test]
fn wait_reports_every_task_across_an_api_server_restart() {
    let mut env = Env::new();
    env.server
        .insert_pod(task_pod("S1", "Running", None, Duration::from_secs(5)));
    env.server
        .insert_pod(task_pod("S2", "Running", None, Duration::from_secs(5)));
    let child = env.start(&["wait", "S1", "S2", "--timeout", "90s"]);
    assert!(eventually(Duration::from_secs(30), || env
        .server
        .requests()
        .iter()
        .any(|r| r.query.contains("watch=true"))));
    let uid = |name: &str| env.server.pod(NS, name).unwrap().metadata.uid;
    let (u1, u2) = (uid("agent-s1"), uid("agent-s2"));
    env.restart_server(Duration::from_secs(2));
    // Back, with the tasks finished meanwhile (the same pods: etcd keeps their uids).
    let same = |mut p: Pod, uid: Option<String>| {
        p.metadata.uid = uid;
        p
    };
    env.server.insert_pod(same(
        task_pod("S1", "Succeeded", Some(0), Duration::from_secs(1)),
        u1,
    ));
    env.server.insert_pod(same(
        task_pod("S2", "Failed", Some(5), Duration::from_secs(1)),
        u2,
    ));
    let r = wait_output(child, Duration::from_secs(90));
    assert_eq!(r.code, 1, "{r:?}");
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0].starts_with("S1 Succeeded") && lines[1].starts_with("S2 Failed exit=5"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("not answering") && r.stderr.contains("answering again"),
        "{r:?}"
    );
}

#[test]
fn wait_any_returns_with_the_first_task_to_end() {
    let env = Env::new();
    env.spawn_script("QUICK", "echo 'asdo: done 0123abcd'");
    let slow = env.spawn_script("SLOW", "sleep 120");
    let report = TempDir::new("any");
    let r = env.asdo(&[
        "wait",
        "--any",
        "SLOW",
        "QUICK",
        "--report-dir",
        path_str(&report.0),
    ]);
    assert_eq!(r.code, 0, "the quick one succeeded: {r:?}");
    assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    assert!(r.stdout.starts_with("QUICK Succeeded exit=0"), "{r:?}");
    assert!(report.0.join("delegation_completed/QUICK.txt").exists());
    assert!(!report.0.join("delegation_errors/SLOW.txt").exists());
    // It did not wait for the slow one: that pod still runs.
    assert!(
        env.server
            .wait_for_phase(NS, &slow, "Running", Duration::from_secs(30)),
        "{r:?}"
    );

    // Without task ids: only the pods still running count; QUICK has ended already.
    let r = env.asdo(&["wait", "--any", "--timeout", "2s"]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(r.stdout.starts_with("SLOW TimedOut(Running"), "{r:?}");
    assert!(!r.stdout.contains("QUICK"), "{r:?}");
}

#[test]
fn wait_reports_a_pod_replaced_behind_its_back() {
    let mut env = Env::new();
    env.server
        .insert_pod(task_pod("R1", "Running", None, Duration::from_secs(5)));
    let child = env.start(&["wait", "R1", "--timeout", "90s"]);
    assert!(eventually(Duration::from_secs(30), || env
        .server
        .requests()
        .iter()
        .any(|r| r.query.contains("watch=true"))));
    // While the watch is away the pod is deleted and re-spawned under its name: a new uid.
    env.restart_server(Duration::from_secs(2));
    env.server
        .insert_pod(task_pod("R1", "Succeeded", Some(0), Duration::from_secs(1)));
    let new_uid = env
        .server
        .pod(NS, "agent-r1")
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let r = wait_output(child, Duration::from_secs(90));
    assert_eq!(r.code, 1, "the new run's success is not this one's: {r:?}");
    assert!(r.stdout.starts_with("R1 Replaced exit=-"), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "pod agent-r1 was replaced by another run (uid {new_uid}); run asdo wait R1 again"
        )),
        "{r:?}"
    );
}
