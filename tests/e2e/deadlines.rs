//! Every user-given bound is hard: against a fake API server that accepts requests and
//! never answers, `--timeout`, `--retry-for` and `--request-timeout` (doctor) end the
//! command at the bound, cancelling what is in flight, never a request timeout later.
//! The bounds here are far below the default `--request-timeout` (30 s), and each run is
//! given 25 s: the old code needed a request timeout on top of the bound.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn within(env: &Env, args: &[&str]) -> Run {
    run_with_timeout(env.cmd(args), Duration::from_secs(25))
}

#[test]
fn wait_timeout_is_hard_against_a_server_that_never_answers() {
    let env = Env::new();
    env.spawn_script("T1", "sleep 60");
    env.server.hang_next_matching(100_000, None, None);
    let r = within(&env, &["wait", "T1", "--timeout", "3s"]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(r.stdout.starts_with("T1 TimedOut"), "its line: {r:?}");
    // --all lists first: that list is inside the bound too.
    let r = within(&env, &["wait", "--all", "--timeout", "3s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("(--timeout)"), "{r:?}");
    env.server.clear_failures();
}

#[test]
fn doctor_is_bounded_by_request_timeout() {
    let env = Env::new();
    env.server.hang_next_matching(100_000, None, None);
    let r = within(&env, &["--request-timeout", "2s", "doctor"]);
    assert_eq!(r.code, 1, "{r:?}");
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("FAIL") && first.contains("--request-timeout"),
        "prints its check: {r:?}"
    );
    env.server.clear_failures();
}

#[test]
fn logs_retry_for_is_hard_when_the_server_stops_answering() {
    let env = Env::new();
    env.spawn_script("T2", "echo started; sleep 60");
    let mut child = env.start(&["logs", "T2", "--retry-for", "3s"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    // The API server stops answering, and the open stream is cut.
    env.server.hang_next_matching(100_000, None, None);
    env.server.drop_log_streams_now();
    let pid = child.id();
    let r = std::thread::spawn(move || wait_output(child, Duration::from_secs(25)))
        .join()
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("asdo logs outlived --retry-for by more than a request timeout")
        });
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--retry-for"), "{r:?}");
    env.server.clear_failures();
}
