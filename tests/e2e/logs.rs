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
    // The kubelet keeps retrying a pull, so asdo keeps waiting (saying why) until the
    // start timeout; the final error names the reason.
    let r = env.asdo(&["logs", "T006", "--start-timeout", "3s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("ImagePullBackOff") || r.stderr.contains("ErrImagePull"),
        "{r:?}"
    );
    assert!(r.stderr.contains("did not start within 3s"), "{r:?}");
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
    let r = env.asdo(&["logs", "T007", "-n", "default", "--start-timeout", "3s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("CreateContainerConfigError"), "{r:?}");
    assert!(r.stderr.contains("did not start within"), "{r:?}");
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

/// A tiny deterministic generator, so every run of the property test is the same.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// `--tail N` then cuts at random points: the tail is printed once, every later line
/// once, whatever N (0 included: a reconnect never reuses tailLines).
#[test]
fn tail_then_random_cuts_lose_and_double_nothing() {
    for (seed, tail) in [(1u64, 0usize), (2, 0), (3, 2), (4, 20), (5, 0), (6, 1)] {
        let mut rng = Lcg(seed);
        let env = Env::new();
        let go = env.dir.0.join("go");
        let script = format!(
            "for i in 1 2 3 4 5; do echo \"old $i\"; sleep 0.2; done; \
             while [ ! -f {go} ]; do sleep 0.05; done; \
             for i in $(seq 1 15); do echo \"new $i\"; sleep 0.2; done",
            go = go.display()
        );
        env.spawn_script("TP", &script);
        assert!(eventually(Duration::from_secs(30), || {
            env.kubectl(&["logs", "agent-tp", "-n", NS])
                .stdout
                .lines()
                .count()
                == 5
        }));
        let tail_arg = tail.to_string();
        let mut child = env.start(&["logs", "TP", "--tail", &tail_arg]);
        assert!(
            eventually(Duration::from_secs(30), || env
                .server
                .requests()
                .iter()
                .any(
                    |r| r.path.ends_with("/log") && r.query.contains("follow=true")
                )),
            "asdo follows"
        );
        // Cuts: every new stream after a random number of bytes (room for > 1 s of
        // lines, see survives_repeated_stream_cuts_…), and a few at random moments.
        env.server
            .set_log_drop_after_bytes(Some(400 + rng.next(300) as usize));
        if rng.next(2) == 0 {
            // A cut before the first new line: the reconnect must not reuse tailLines.
            env.server.drop_log_streams_now();
        }
        std::fs::write(&go, "").unwrap();
        for _ in 0..rng.next(4) {
            std::thread::sleep(Duration::from_millis(100 + rng.next(600)));
            env.server.drop_log_streams_now();
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let r = wait_output(child, Duration::from_secs(60));
        assert_eq!(r.code, 0, "seed {seed}: {r:?}");
        let old = (1..=5).skip(5 - tail.min(5)).map(|i| format!("old {i}\n"));
        let new = (1..=15).map(|i| format!("new {i}\n"));
        let want: String = old.chain(new).collect();
        assert_eq!(out, want, "seed {seed}, --tail {tail}");
    }
}

#[test]
fn no_follow_returns_at_once_for_a_pod_that_has_not_started() {
    let env = Env::new();
    env.spawn_script("D1", "echo done-one");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-d1", "Succeeded", Duration::from_secs(20))
    );
    env.server
        .set_unschedulable(Some("0/1 nodes are available"));
    env.spawn_script("P1", "echo never");
    let r = env.asdo(&["logs", "P1", "--no-follow"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    assert!(r.stderr.contains("not started yet"), "{r:?}");
    // One Pending pod does not stall the others.
    let r = env.asdo(&["logs", "--all", "--no-follow"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "[D1] done-one\n", "{r:?}");
    assert!(
        r.stderr.contains("agent-p1") && r.stderr.contains("not started yet"),
        "{r:?}"
    );
}

#[test]
fn refused_requests_end_the_command_with_what_to_check() {
    let env = Env::new();
    env.spawn_script("R1", "echo hi; sleep 30");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-r1", "Running", Duration::from_secs(20))
    );
    let cases: &[(u16, &[&str], &str)] = &[
        (403, &["wait", "R1"], "forbidden"),
        (401, &["wait", "--all"], "unauthorized"),
        (403, &["logs", "--all"], "forbidden"),
        (401, &["logs", "-l", "task-id=R1"], "unauthorized"),
        (400, &["logs", "-l", "task-id=R1"], "selector"),
        (401, &["logs", "R1"], "unauthorized"),
        (403, &["status", "R1"], "forbidden"),
    ];
    for (code, args, says) in cases {
        env.server.fail_next_matching(1000, *code, "GET", "/pods");
        let r = env.asdo(args);
        env.server.clear_failures();
        assert_eq!(r.code, 1, "{code} {args:?}: {r:?}");
        assert!(
            r.stderr.to_lowercase().contains(says),
            "{code} {args:?}: {r:?}"
        );
        assert_eq!(
            r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{r:?}"
        );
    }
    // The log route alone refused.
    env.server.fail_next_matching(1000, 403, "GET", "/log");
    let r = env.asdo(&["logs", "R1"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("forbidden"), "{r:?}");
}

#[test]
fn a_finished_pod_whose_log_keeps_failing_is_retried_with_backoff_then_given_up() {
    let env = Env::new();
    env.server
        .insert_pod(task_pod("G1", "Failed", Some(1), Duration::from_secs(60)));
    // The node is gone: every log read fails.
    env.server.fail_next_matching(100_000, 500, "GET", "/log");
    let started = std::time::Instant::now();
    let r = env.asdo(&["logs", "G1", "--retry-for", "6s"]);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("retrying for up to 6s"),
        "says it retries: {r:?}"
    );
    assert!(r.stderr.contains("giving up"), "{r:?}");
    let n = env.count("GET", "/log");
    let rate = n as f64 / secs;
    eprintln!("{n} log requests in {secs:.1}s = {rate:.1}/s");
    assert!(n <= 20, "backoff: {n} log requests in {secs:.1}s");
}

#[test]
fn transient_waiting_reasons_are_waited_through() {
    let env = Env::new();
    // A pull that fails for a few seconds, then works.
    let values = env.script_values("echo pulled-at-last");
    let r = env.asdo(&spawn_with(
        &[
            "--image",
            "registry.example/slow-pull:1",
            "-f",
            path_str(&values),
        ],
        "W1",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["logs", "W1", "--start-timeout", "60s"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "pulled-at-last\n"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("ErrImagePull") || r.stderr.contains("ImagePullBackOff"),
        "the reason is on stderr: {r:?}"
    );

    // The password Secret appears after the pod (External Secrets syncing after install).
    let ns = "late-secret";
    env.server.create_namespace(ns);
    let values = env.script_values("echo secret-synced");
    let r = env.asdo(&spawn_with(&["-n", ns, "-f", path_str(&values)], "W2"));
    assert_eq!(r.code, 0, "{r:?}");
    let child = env.start(&["logs", "W2", "-n", ns, "--start-timeout", "60s"]);
    assert!(eventually(Duration::from_secs(30), || {
        env.server
            .pod(ns, "agent-w2")
            .and_then(|p| {
                p.status?
                    .container_statuses?
                    .first()?
                    .state
                    .clone()?
                    .waiting?
                    .reason
            })
            .as_deref()
            == Some("CreateContainerConfigError")
    }));
    env.server
        .put_secret(ns, PASSWORD_SECRET, &[("server-password", PASSWORD)]);
    let r = wait_output(child, Duration::from_secs(60));
    assert_eq!((r.code, r.stdout.as_str()), (0, "secret-synced\n"), "{r:?}");
    assert!(r.stderr.contains("CreateContainerConfigError"), "{r:?}");

    // A name that can never be pulled fails at once, naming the reason.
    let r = env.asdo(&spawn_with(&["--image", "Bad:Name:x"], "W3"));
    assert_eq!(r.code, 2, "refused locally: {r:?}");
}

fn spawn_with<'a>(extra: &[&'a str], id: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "spawn",
        "--task-id",
        id,
        "--branch",
        "b",
        "--repo",
        "git@h:o/r.git",
    ];
    v.extend_from_slice(extra);
    v
}

/// Replace the pod under the same name, as `spawn --replace` from another terminal would.
fn replace_pod(env: &Env, name: &str, script: &str) {
    let mut pod = env.server.pod(NS, name).unwrap();
    pod.metadata.uid = None;
    pod.metadata.resource_version = None;
    pod.status = None;
    let c = &mut pod.spec.as_mut().unwrap().containers[0];
    c.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
    env.server.insert_pod(pod);
}

#[test]
fn a_replaced_pod_is_never_spliced_into_the_stream() {
    let env = Env::new();
    env.spawn_script("RP", "echo old-run; sleep 60");
    let mut child = env.start(&["logs", "RP"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "old-run\n");
    replace_pod(&env, "agent-rp", "echo new-run; exit 4");
    env.server.drop_log_streams_now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = wait_output(child, Duration::from_secs(60));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(rest, "", "nothing of the new run: {r:?}");
    assert!(r.stderr.contains("replaced by another run"), "{r:?}");

    // --follow-replaced: a separator, then the new run, and its exit code.
    env.spawn_script("RQ", "echo old-run; sleep 60");
    let mut child = env.start(&["logs", "RQ", "--follow-replaced"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "old-run\n");
    replace_pod(&env, "agent-rq", "echo new-run; exit 4");
    env.server.drop_log_streams_now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = wait_output(child, Duration::from_secs(60));
    assert_eq!((r.code, rest.as_str()), (4, "new-run\n"), "{r:?}");
    assert!(r.stderr.contains("following it"), "{r:?}");
}

#[test]
fn a_burst_of_server_errors_loses_nothing_and_says_it_retried() {
    let env = Env::new();
    env.spawn_script("B5", &numbered(30, "0.2"));
    // Six refused log reads in a row (about 6 s with backoff), then the server recovers.
    env.server.fail_next_matching(6, 500, "GET", "/log");
    env.server.set_log_drop_after_bytes(Some(500));
    let r = env.asdo(&["logs", "B5"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, expected(30));
    assert!(r.stderr.contains("server error 500"), "{r:?}");
    assert!(r.stderr.contains("retrying for up to 5m"), "{r:?}");
}

#[test]
fn all_caps_concurrent_streams_and_queues_the_rest() {
    let env = Env::new();
    for i in 0..8 {
        env.spawn_script(&format!("M{i}"), "echo first; sleep 1; echo last");
    }
    assert!(eventually(Duration::from_secs(30), || {
        (0..8).all(|i| {
            env.server
                .pod(NS, &format!("agent-m{i}"))
                .and_then(|p| p.status?.phase)
                .is_some_and(|p| p == "Running" || p == "Succeeded")
        })
    }));
    let before = env.server.connections().0;
    let mut child = env.start(&["logs", "--all", "--max-log-requests", "2"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..16 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let (_, max) = env.server.connections();
    child.kill().unwrap();
    let r = wait_output(child, Duration::from_secs(30));
    lines.sort();
    for i in 0..8 {
        assert!(lines.contains(&format!("[M{i}] first\n")), "{lines:?}");
        assert!(lines.contains(&format!("[M{i}] last\n")), "{lines:?}");
    }
    eprintln!("connections: {before} before, at most {max} with --max-log-requests 2");
    // 2 streams + the pod watch + a get; never one per pod.
    assert!(max <= before + 5, "at most {max} connections");
    assert!(r.stderr.contains("queued"), "{r:?}");
}

#[test]
fn all_gives_up_when_the_server_is_gone_past_retry_for() {
    let mut env = Env::new();
    env.spawn_script("G7", "echo up; sleep 60");
    let mut child = env.start(&["logs", "--all", "--retry-for", "3s"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "[G7] up\n");
    // The API server goes away for good (this port stays closed).
    drop(std::mem::replace(
        &mut env.server,
        crate::support::FakeApiServer::start(),
    ));
    let r = wait_output(child, Duration::from_secs(60));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not answering"), "{r:?}");
    assert!(r.stderr.contains("giving up (--retry-for)"), "{r:?}");
}

/// The tail the user asked for: the last `n` of `lines` (all for None).
fn last_lines(lines: &[String], n: Option<usize>) -> Vec<String> {
    let n = n.unwrap_or(lines.len()).min(lines.len());
    lines[lines.len() - n..].to_vec()
}

/// `--tail N` on a log whose lines share timestamps (the fake's whole-seconds knob: a burst
/// of lines is one stamp, as `sinceTime` counts): exactly the last N lines, then every new
/// line once, for N in 0..=9 and -1 (all), with and without follow, one pod and `-l`.
/// The old cursor printed `line 4, line 5, line 3, line 4, line 5` for `--tail 2`.
#[test]
fn tail_is_exact_when_lines_share_a_timestamp() {
    let env = Env::new();
    env.server.set_log_timestamps_whole_seconds(true);
    let old: Vec<String> = (1..=7).map(|i| format!("old {i}")).collect();
    let new: Vec<String> = (1..=3).map(|i| format!("new {i}")).collect();
    let tails: Vec<Option<usize>> = (0..=9).map(Some).chain([None]).collect();
    // One pod per --tail value: seven lines in a burst, a wait for its go file, three more.
    for (i, _) in tails.iter().enumerate() {
        let go = env.dir.0.join(format!("go-{i}"));
        env.spawn_script(
            &format!("P{i}"),
            &format!(
                "for i in 1 2 3 4 5 6 7; do echo \"old $i\"; done; \
                 while [ ! -f {go} ]; do sleep 0.05; done; \
                 for i in 1 2 3; do echo \"new $i\"; done",
                go = go.display()
            ),
        );
    }
    for (i, _) in tails.iter().enumerate() {
        let pod = format!("agent-p{i}");
        assert!(eventually(Duration::from_secs(30), || {
            env.kubectl(&["logs", &pod, "-n", NS])
                .stdout
                .lines()
                .count()
                == 7
        }));
    }
    for (i, tail) in tails.iter().enumerate() {
        let (task, pod) = (format!("P{i}"), format!("agent-p{i}"));
        let arg = format!("--tail={}", tail.map_or(-1, |n| n as i64));
        let selector = format!("task-id={task}");
        let want_old = last_lines(&old, *tail);
        let prefixed =
            |v: &[String]| -> String { v.iter().map(|l| format!("[{task}] {l}\n")).collect() };
        let plain = |v: &[String]| -> String { v.iter().map(|l| format!("{l}\n")).collect() };

        // No follow, while the pod runs: the tail of what is there.
        let r = env.asdo(&["logs", &task, "--no-follow", &arg]);
        assert_eq!(
            (r.code, r.stdout.clone()),
            (0, plain(&want_old)),
            "{arg}: {r:?}"
        );
        let r = env.asdo(&["logs", "-l", &selector, "--no-follow", &arg]);
        assert_eq!(
            (r.code, r.stdout.clone()),
            (0, prefixed(&want_old)),
            "-l {arg}: {r:?}"
        );

        // Follow, one pod and -l at once: the tail, then the new lines once each.
        let single = env.start(&["logs", &task, &arg]);
        let mut many = env.start(&["logs", "-l", &selector, &arg]);
        assert!(
            eventually(Duration::from_secs(30), || env
                .server
                .requests()
                .iter()
                .filter(
                    |r| r.path.ends_with(&format!("/{pod}/log")) && r.query.contains("follow=true")
                )
                .count()
                >= 2),
            "{arg}: both follow"
        );
        std::fs::write(env.dir.0.join(format!("go-{i}")), "").unwrap();
        let r = wait_output(single, Duration::from_secs(60));
        let all: Vec<String> = want_old.iter().chain(&new).cloned().collect();
        assert_eq!(
            (r.code, r.stdout.clone()),
            (0, plain(&all)),
            "follow {arg}: {r:?}"
        );
        // -l follows until interrupted: wait for its verdict line, then stop it.
        let mut err = BufReader::new(many.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains(&format!("==> {pod}: Succeeded")) {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "-l {arg}: stderr ended"
            );
        }
        many.kill().unwrap();
        let r = wait_output(many, Duration::from_secs(30));
        assert_eq!(r.stdout, prefixed(&all), "follow -l {arg}");

        // No follow on the finished pod, again both ways.
        let want_end = last_lines(&all, *tail);
        let r = env.asdo(&["logs", &task, "--no-follow", &arg]);
        assert_eq!(
            (r.code, r.stdout.clone()),
            (0, plain(&want_end)),
            "{arg}: {r:?}"
        );
        let r = env.asdo(&["logs", "-l", &selector, "--no-follow", &arg]);
        assert_eq!(
            (r.code, r.stdout.clone()),
            (0, prefixed(&want_end)),
            "-l {arg}: {r:?}"
        );
    }
}

/// A running task pod inserted straight into the fake API server (faster than `asdo
/// spawn` for a hundred of them); its container runs `script`.
fn insert_task_pod(env: &Env, id: &str, script: &str) {
    let pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("agent-{}", id.to_lowercase()),
            "namespace": NS,
            "labels": {"app": "agent-orchestrator", "task-id": id},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "asdo-agent", "command": ["sh", "-c", script]}],
        },
    }))
    .unwrap();
    env.server.insert_pod(pod);
}

/// Issue 24: `logs --all` follows every running task live, over HTTP/2 to an https API
/// server: 120 pods (more than HTTP/1.1's default cap of 50) all streaming at once, the
/// server allowing 100 streams per connection as kube-apiserver does (so asdo must open
/// another connection rather than queue), streams cut mid-way, no line lost or doubled.
#[test]
fn all_follows_120_running_pods_live_over_http2_through_cuts() {
    const PODS: usize = 120;
    let env = Env::tls(Some(100));
    let go = env.dir.0.join("go");
    for i in 0..PODS {
        let script = format!(
            "echo start; while [ ! -e {go} ]; do sleep 0.2; done; {}",
            numbered(8, "0.25"),
            go = go.display()
        );
        insert_task_pod(&env, &format!("H{i:03}"), &script);
    }
    assert!(
        eventually(Duration::from_secs(120), || {
            (0..PODS).all(|i| {
                env.server
                    .pod(NS, &format!("agent-h{i:03}"))
                    .and_then(|p| p.status?.phase)
                    .is_some_and(|p| p == "Running")
            })
        }),
        "all {PODS} pods run"
    );
    let before = env.server.accepted_connections();
    let mut child = env.start(&["logs", "--all", "-n", NS]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut read = |lines: &mut Vec<String>| {
        let mut line = String::new();
        let more = out.read_line(&mut line).unwrap() > 0;
        lines.push(line);
        more
    };
    // Live: every pod's first line arrives while all of them are still running (no pod
    // can end before the test says go), so all 120 streams are open at once.
    while lines.len() < PODS {
        if !read(&mut lines) {
            panic!(
                "asdo ended: {:?}",
                wait_output(child, Duration::from_secs(30))
            );
        }
    }
    std::fs::write(&go, "").unwrap();
    // Cuts while the pods print: every open stream, three times.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        env.server.drop_log_streams_now();
    }
    while lines.len() < PODS * 9 {
        if !read(&mut lines) {
            let st = child.wait();
            panic!(
                "asdo ended: {st:?} after {} lines; last {:?}",
                lines.len(),
                &lines[lines.len().saturating_sub(3)..]
            );
        }
    }
    let (h2_conns, h2_streams) = env.server.h2_counts();
    let accepted = env.server.accepted_connections() - before;
    child.kill().unwrap();
    let r = wait_output(child, Duration::from_secs(30));
    lines.sort();
    let mut want: Vec<String> = (0..PODS)
        .flat_map(|i| {
            std::iter::once("start\n".to_string())
                .chain(
                    expected(8)
                        .lines()
                        .map(|l| format!("{l}\n"))
                        .collect::<Vec<_>>(),
                )
                .map(move |l| format!("[H{i:03}] {l}"))
        })
        .collect();
    want.sort();
    assert_eq!(lines, want, "every line of every pod, once");
    assert!(
        !r.stderr.contains("queued"),
        "no pod waited for a slot: {r:?}"
    );
    eprintln!("{accepted} connections, {h2_conns} h2 in all, {h2_streams} HTTP/2 streams");
    // 121 long streams (120 logs and the pod watch) at 100 per connection: 2 connections;
    // the burst of resumes after each cut may take a third.
    assert!(
        (2..=4).contains(&accepted),
        "{accepted} TCP connections for {PODS} streams at 100 per connection"
    );
    assert_eq!(
        h2_conns,
        env.server.accepted_connections(),
        "all of them h2"
    );
    assert!(
        h2_streams > PODS * 2,
        "{h2_streams} streams: the logs went over HTTP/2"
    );
    assert!(
        env.count("GET", "/log") >= PODS * 2,
        "the streams were really cut and resumed"
    );
}
