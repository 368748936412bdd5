//! Queueing on Kueue: a task pod labelled with a LocalQueue is held by Kueue's
//! scheduling gate (the fake API server's Kueue pod-webhook mode) until it is admitted
//! (the test releases the gate, as Kueue would). While queued the start timeout does not
//! run; `--queue-timeout` bounds the time queued.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;

const QUEUE: &str = "team-a";
const LONG: Duration = Duration::from_secs(60);

/// The environment with Kueue's pod webhook on.
fn kueue_env() -> Env {
    let env = Env::new();
    env.server.set_kueue_pod_webhook(true);
    env.server.set_schedule_delay(Duration::ZERO);
    env
}

/// Spawns task `id` running `script` in the LocalQueue; the pod is gated.
fn spawn_queued(env: &Env, id: &str, script: &str) -> String {
    let values = env.script_values(script);
    let queue = format!("pod.queueName={QUEUE}");
    let r = env.asdo(&spawn_args(id, &["-f", path_str(&values), "--set", &queue]));
    assert_eq!(r.code, 0, "{r:?}");
    let name = format!("agent-{}", id.to_lowercase());
    let pod = env.server.pod(NS, &name).unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["kueue.x-k8s.io/queue-name"], QUEUE);
    let gates: Vec<String> = pod
        .spec
        .unwrap()
        .scheduling_gates
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        gates,
        ["kueue.x-k8s.io/admission"],
        "Kueue's webhook gated it"
    );
    name
}

/// The child's stderr, line by line, as it comes.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `what`; every line read is kept in `seen`.
fn await_line(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let end = std::time::Instant::now() + LONG;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(what);
                seen.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no stderr line with {what:?}; got {seen:#?}");
}

#[test]
fn logs_start_timeout_does_not_run_while_queued() {
    let env = kueue_env();
    let name = spawn_queued(&env, "Q1", "echo admitted and done");
    let mut child = env.start(&["logs", "Q1", "-n", NS, "--start-timeout", "5s"]);
    let rx = stderr_lines(&mut child);
    let mut seen = vec![];
    await_line(&rx, "Queued (team-a): held by queue team-a", &mut seen);
    // Queued for longer than --start-timeout: that clock is not running, so asdo still waits.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        child.try_wait().unwrap().is_none(),
        "asdo logs gave up on a queued pod: {seen:#?} {:?}",
        rx.try_iter().collect::<Vec<_>>()
    );
    assert!(env.server.release_scheduling_gates(NS, &name));
    let r = wait_output(child, LONG);
    seen.extend(rx.try_iter());
    assert_eq!(r.code, 0, "{r:?} {seen:#?}");
    assert_eq!(r.stdout, "admitted and done\n", "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("left the queue")),
        "{seen:#?}"
    );
}

#[test]
fn queue_timeout_ends_the_wait_for_a_pod_still_queued() {
    let env = kueue_env();
    let name = spawn_queued(&env, "Q2", "echo never");
    let r = env.asdo(&["logs", "Q2", "-n", NS, "--queue-timeout", "1s"]);
    assert_eq!(r.code, 1, "{r:?}");
    let last = r.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(
            "pod agent-q2 was still queued after 1s (held by queue team-a; --queue-timeout)"
        ),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");
    // The task is left as it is: still queued, never started.
    let pod = env.server.pod(NS, &name).unwrap();
    assert!(pod.spec.unwrap().node_name.is_none());
}

#[test]
fn spawn_queue_sets_the_label_and_wait_honours_the_queue_timeout() {
    let env = kueue_env();
    let values = env.script_values("echo hi");
    let r = env.asdo(&spawn_args(
        "Q3",
        &[
            "-f",
            path_str(&values),
            "--queue",
            QUEUE,
            "--wait",
            "--start-timeout",
            "1s",
            "--queue-timeout",
            "2s",
        ],
    ));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "Queued (team-a): held by queue team-a until it is admitted; waiting up to 2s (--queue-timeout)"
        ) && r.stderr.contains("pod agent-q3 was still queued after 2s"),
        "queued for longer than --start-timeout, ended by --queue-timeout only: {r:?}"
    );
    let pod = env.kubectl_pod("agent-q3");
    assert_eq!(
        pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        QUEUE
    );
    assert_eq!(
        pod["spec"]["schedulingGates"][0]["name"],
        "kueue.x-k8s.io/admission"
    );
}

#[test]
fn a_bad_queue_name_is_one_line_and_nothing_is_sent() {
    let env = kueue_env();
    env.server.clear_requests();
    let r = env.asdo(&spawn_args("Q4", &["--queue", "Team_A"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("--queue") && r.stderr.contains("LocalQueue name"),
        "{r:?}"
    );
    assert!(env.server.requests().is_empty(), "no API call: {r:?}");
    // The same through values: the chart's schema refuses it, naming the key.
    let r = env.asdo(&spawn_args("Q4", &["--set", "pod.queueName=Team_A"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pod.queueName"), "{r:?}");
    assert!(env.server.requests().is_empty(), "no API call: {r:?}");
}

/// The whole path: spawn --queue; the task is queued (logs, list's STATUS and `status -o
/// json` say `Queued (team-a)`, kubectl `SchedulingGated`); Kueue admits it (the test releases the gate); it runs and ends, logs
/// streams it and wait reports it.
#[test]
fn queued_task_is_admitted_runs_and_is_reported() {
    let env = kueue_env();
    let values = env.script_values("echo 'asdo: done 0123abcd'");
    let r = env.asdo(&spawn_args(
        "Q5",
        &["-f", path_str(&values), "--queue", QUEUE],
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let name = "agent-q5";
    let mut logs = env.start(&["logs", "Q5", "-n", NS, "--start-timeout", "5m"]);
    let rx = stderr_lines(&mut logs);
    let mut seen = vec![];
    await_line(&rx, "waiting for pod agent-q5: Queued (team-a)", &mut seen);
    // kubectl, the independent client, sees the same pod held by its gate.
    let k = env.kubectl(&["get", "pod", name, "-n", NS, "--no-headers"]);
    assert!(k.stdout.contains("SchedulingGated"), "{k:?}");
    // The task model says the same while gated: list's STATUS cell and status's object.
    let list = env.asdo(&["list", "-n", NS]);
    assert_eq!(list.code, 0, "{list:?}");
    let header = list.stdout.lines().next().unwrap_or_default();
    let (from, to) = (
        header.find("STATUS").expect("a STATUS column"),
        header.find("EXIT").expect("an EXIT column"),
    );
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("Q5 "))
        .unwrap_or_else(|| panic!("no Q5 row: {list:?}"));
    assert_eq!(row[from..to].trim(), "Queued (team-a)", "{list:?}");
    let status = env.asdo(&["status", "Q5", "-n", NS, "-o", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let task: serde_json::Value =
        serde_json::from_str(&status.stdout).unwrap_or_else(|e| panic!("{e}: {status:?}"));
    assert_eq!(task["phase"], "Queued", "{task:#}");
    assert_eq!(task["queue"], "team-a", "{task:#}");
    assert_eq!(task["status"], "Queued (team-a)", "{task:#}");
    let waiter = env.start(&["wait", "Q5", "-n", NS, "--timeout", "5m"]);

    assert!(env.server.release_scheduling_gates(NS, name));
    let r = wait_output(waiter, LONG);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("Q5 Succeeded exit=0"), "{r:?}");
    let l = wait_output(logs, LONG);
    seen.extend(rx.try_iter());
    assert_eq!(l.code, 0, "{l:?} {seen:#?}");
    assert!(l.stdout.contains("asdo: done 0123abcd"), "{l:?}");
    assert!(
        seen.iter().any(|s| s.contains("left the queue")),
        "{seen:#?}"
    );
    let list = env.asdo(&["list", "-n", NS]);
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("Q5 "))
        .unwrap_or_default();
    assert!(row.contains("Succeeded"), "{list:?}");
}
