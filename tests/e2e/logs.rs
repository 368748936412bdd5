//! `asdo logs`: follow to the end, survive cuts, exit with the task's code.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::common::*;

/// `n` numbered lines, `pause` seconds apart.
fn numbered(n: usize, pause: &str) -> String {
    format!(
        "i=1; while [ $i -le {n} ]; do echo \"line $i of {n}\"; i=$((i+1)); sleep {pause}; done"
    )
}

fn expected(n: usize) -> String {
    (1..=n).map(|i| format!("line {i} of {n}\n")).collect()
}

#[test]
fn follows_to_the_end_and_exits_with_the_code() {
    let env = Env::new();
    let pod = env.spawn_script("T001", "echo hello; sleep 0.2; echo bye >&2; exit 3");
    let r = env.asdo(&["logs", "T001"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "hello\nbye\n", "stdout carries only log lines");
    assert!(r.stderr.contains(&format!("pod {pod}")), "{r:?}");
    assert!(r.stderr.contains("Failed, exit code 3"), "{r:?}");
    // Pod name works as well as the task id.
    let r = env.asdo(&["logs", &pod]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hello\nbye\n"));
}

#[test]
fn survives_repeated_stream_cuts_without_loss_or_duplicates() {
    let env = Env::new();
    // Every log response is cut after 400 bytes (about 9 timestamped lines). sinceTime has
    // one-second resolution on a real API server, so a resume replays the current second and
    // skips what was printed; a cut must leave room for more than one second of output (5
    // lines a second here) or no client can make progress. See SPEC.md, "Following logs".
    env.server.set_log_drop_after_bytes(Some(400));
    env.spawn_script("T002", &numbered(30, "0.2"));
    let r = env.asdo(&["logs", "T002"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, expected(30));
    let log_requests = env.count("GET", "/log");
    assert!(
        log_requests >= 3,
        "the stream was really cut and resumed ({log_requests} requests)"
    );
}

#[test]
fn survives_a_cut_during_a_long_silence() {
    let env = Env::new();
    env.spawn_script("T003", "echo before; sleep 2; echo after");
    let mut child = env.start(&["logs", "T003"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "before\n");
    // The agent is "thinking": a proxy cuts the idle stream, twice.
    env.server.drop_log_streams_now();
    std::thread::sleep(Duration::from_millis(300));
    env.server.drop_log_streams_now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = wait_output(child, Duration::from_secs(30));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(rest, "after\n");
}

#[test]
fn resumes_through_server_errors() {
    let env = Env::new();
    env.server.set_log_drop_after_bytes(Some(400));
    env.server.fail_next_matching(3, 500, "GET", "/log");
    env.spawn_script("T004", &numbered(15, "0.2"));
    let r = env.asdo(&["logs", "T004"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, expected(15));
    // Three refused attempts, then at least one stream per cut.
    let log_requests = env.count("GET", "/log");
    assert!(log_requests >= 5, "{log_requests} log requests");
}

#[test]
fn waits_while_pending_and_reports_why() {
    let env = Env::new();
    env.server.set_schedule_delay(Duration::from_millis(800));
    env.spawn_script("T005", "echo started");
    let r = env.asdo(&["logs", "T005"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "started\n"), "{r:?}");
}

#[test]
fn image_pull_failure_is_reported_and_fails() {
    let env = Env::new();
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "T006",
        "--branch",
        "b",
        "--repo",
        "git@h:o/r.git",
        "--image",
        "registry.example/does-not-exist:1",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["logs", "T006"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("ImagePullBackOff") || r.stderr.contains("ErrImagePull"),
        "{r:?}"
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn missing_secret_is_reported() {
    let env = Env::new();
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "T007",
        "--branch",
        "b",
        "--repo",
        "git@h:o/r.git",
        "-n",
        "default",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["logs", "T007", "-n", "default"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("CreateContainerConfigError"), "{r:?}");
}

#[test]
fn pod_deleted_mid_stream_is_an_error() {
    let env = Env::new();
    let pod = env.spawn_script("T008", "echo one; sleep 30");
    let mut child = env.start(&["logs", "T008"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "one\n");
    let k = env.kubectl(&["delete", "pod", &pod, "-n", NS, "--wait=false"]);
    assert_eq!(k.code, 0, "{k:?}");
    let r = wait_output(child, Duration::from_secs(30));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("deleted"), "{r:?}");
}

#[test]
fn unknown_task_says_how_to_find_one() {
    let env = Env::new();
    let r = env.asdo(&["logs", "T404"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("agent-t404") && r.stderr.contains("asdo list"),
        "{r:?}"
    );
    let r = env.asdo(&["logs", "bad_id"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn no_follow_tail_and_timestamps() {
    let env = Env::new();
    env.spawn_script("T009", &numbered(5, "0"));
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t009", "Succeeded", Duration::from_secs(10))
    );
    let r = env.asdo(&["logs", "T009", "--no-follow", "--tail", "2"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "line 4 of 5\nline 5 of 5\n"),
        "{r:?}"
    );
    let r = env.asdo(&["logs", "T009", "--timestamps"]);
    assert_eq!(r.code, 0, "{r:?}");
    for (i, line) in r.stdout.lines().enumerate() {
        let (ts, text) = line.split_once(' ').unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{line}");
        assert_eq!(text, format!("line {} of 5", i + 1));
    }
    // Same as an independent client.
    let k = env.kubectl(&["logs", "agent-t009", "-n", NS]);
    assert_eq!(k.stdout, expected(5));
}

#[test]
fn all_follows_every_task_pod_including_new_ones() {
    let env = Env::new();
    env.spawn_script("A1", "echo from-a1; sleep 30");
    let mut child = env.start(&["logs", "--all"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "[A1] from-a1\n");
    // A pod created after `logs --all` started is picked up.
    env.spawn_script("B2", "echo from-b2; sleep 30");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "[B2] from-b2\n");
    child.kill().unwrap();
    let _ = child.wait();
}
