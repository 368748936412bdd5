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

/// `asdo list | head -1` and friends: when stdout's reader goes away, the verb ends
/// quietly (killed by SIGPIPE as Unix tools are, or exit 0): no panic, no message.
#[test]
fn a_closed_stdout_ends_every_verb_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let env = Env::new();
    let lines: String = (1..=3000)
        .map(|i| format!("echo \"line {i} of many\"; "))
        .collect();
    for i in 0..3 {
        env.spawn_script(&format!("Q{i}"), &format!("{lines} sleep 30"));
    }
    assert!(eventually(std::time::Duration::from_secs(30), || {
        env.kubectl(&["logs", "agent-q0", "-n", NS])
            .stdout
            .lines()
            .count()
            == 3000
    }));
    let commands: &[&[&str]] = &[
        &["list"],
        &["list", "-o", "wide"],
        &["list", "-o", "json"],
        &["status", "Q0", "-o", "json"],
        &["logs", "Q0"],
        &["logs", "Q0", "--no-follow"],
        &["logs", "--all"],
        &["status", "Q0"],
    ];
    for cmd in commands {
        // stdout is a pipe whose reader is closed before asdo writes a byte.
        let mut c = env.cmd(cmd);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take());
        let r = wait_output_status(child, std::time::Duration::from_secs(60));
        let quiet = r.0.code() == Some(0) || r.0.signal() == Some(libc::SIGPIPE);
        assert!(quiet, "{cmd:?}: {:?} {}", r.0, r.1);
        assert!(
            !r.1.contains("panicked") && !r.1.contains("Broken pipe") && !r.1.contains("error"),
            "{cmd:?}: says nothing about it: {}",
            r.1
        );
    }
}

/// The exit status itself (a signal is not a code) and stderr.
fn wait_output_status(
    child: std::process::Child,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
            panic!("command did not finish within {limit:?}");
        }
    }
}

/// Ctrl-C on `logs --all` is an interruption (130), not success.
#[test]
fn logs_all_interrupted_exits_130() {
    use std::io::BufRead;
    let env = Env::new();
    env.spawn_script("C1", "echo hello; sleep 30");
    let mut child = env.start(&["logs", "--all"]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "[C1] hello\n");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = wait_output(child, std::time::Duration::from_secs(30));
    assert_eq!(r.code, 130, "{r:?}");
}

/// A pod deleted with a grace period is still there for a moment, Failed with the kill's
/// exit code (137) and a deletionTimestamp: `logs` and `wait` give it one verdict, the
/// same words and exit 1.
#[test]
fn logs_and_wait_agree_on_a_pod_deleted_before_it_finished() {
    let env = Env::new();
    let mut pod = task_pod(
        "TD",
        "Failed",
        Some(137),
        std::time::Duration::from_secs(60),
    );
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    pod.metadata.deletion_grace_period_seconds = Some(30);
    env.server.insert_pod(pod);
    let words = "pod agent-td was deleted before its task finished";
    let logs = env.asdo(&["logs", "TD"]);
    let wait = env.asdo(&["wait", "TD", "--timeout", "30s"]);
    assert_eq!((logs.code, wait.code), (1, 1), "{logs:?} {wait:?}");
    assert!(logs.stderr.contains(words), "{logs:?}");
    assert!(wait.stderr.contains(words), "{wait:?}");
    assert!(wait.stdout.starts_with("TD Deleted"), "{wait:?}");
    assert!(
        !logs.stderr.contains("137") && !wait.stdout.contains("137"),
        "{logs:?} {wait:?}"
    );
}

/// The papercuts a new user hit, each as the user met it.
#[test]
fn a_new_users_papercuts() {
    let env = Env::new();
    // Missing --repo names the flag.
    let r = env.asdo(&["spawn", "--task-id", "T1", "--branch", "b"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--repo is required"), "{r:?}");
    // A bad YAML task list: its annotated snippet on its own lines, one `error:`.
    let bad = env.write("tasks.yaml", "repo: x\ntasks:\n  - {id: T1, branch: [\n");
    let r = env.asdo(&["spawn", "-f", bad.to_str().unwrap(), "--dry-run"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr.matches("error").count(), 1, "{r:?}");
    assert!(r.stderr.lines().count() >= 3, "multi-line: {r:?}");
    assert!(
        r.stderr.contains(&format!("{}:3:", bad.display())),
        "names the file: {r:?}"
    );
    // logs/wait with nothing to follow say what would do.
    let r = env.asdo(&["logs"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("--all") && r.stderr.contains("-l"),
        "{r:?}"
    );
    let r = env.asdo(&["wait"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("--all") && r.stderr.contains("--any"),
        "{r:?}"
    );
    // Help: the global flags under their own heading in every verb, one format, no empty
    // env values; offline verbs do not offer cluster flags.
    for verb in [
        "spawn",
        "logs",
        "list",
        "wait",
        "status",
        "cleanup",
        "diff",
        "apply",
        "doctor",
        "agent",
        "completion",
        "attach",
        "send",
        "mcp",
        "init",
    ] {
        let r = env.asdo(&[verb, "--help"]);
        assert_eq!(r.code, 0, "{verb}: {r:?}");
        let (own, global) = r.stdout.split_once("Global options:").expect(verb);
        assert!(
            !own.contains("--verbose") && global.contains("--verbose"),
            "{verb}"
        );
        assert!(!r.stdout.contains("=]"), "{verb}: an empty env value shown");
        let offline = matches!(verb, "agent" | "completion" | "init");
        assert_eq!(!r.stdout.contains("--kubeconfig"), offline, "{verb}");
        // kubectl's layout everywhere: the flag on its line, its description below.
        assert!(
            r.stdout.contains("  -h, --help\n          Print help"),
            "{verb}: one format"
        );
    }
    let r = env.asdo(&["spawn", "--help"]);
    assert!(!r.stdout.contains("wide"), "spawn does not offer -o wide");
    let r = env.asdo(&["agent", "--help"]);
    assert!(r.stdout.contains("15 pr"), "{}", r.stdout);
    let r = env.asdo(&["send", "--help"]);
    assert!(r.stdout.contains("2 on bad input"), "{}", r.stdout);
    // A hint keeps the -n the user gave.
    env.server.create_namespace("other-ns");
    env.server.insert_pod({
        let mut p = task_pod("TP", "Pending", None, std::time::Duration::from_secs(1));
        p.metadata.namespace = Some("other-ns".into());
        let status = p.status.as_mut().unwrap();
        status.container_statuses.as_mut().unwrap()[0].state = Some(
            serde_json::from_value(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}))
                .unwrap(),
        );
        p
    });
    let r = env.asdo(&["logs", "TP", "-n", "other-ns", "--start-timeout", "1s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("asdo status agent-tp -n other-ns"),
        "{r:?}"
    );
    // status at default verbosity: asdo's own lines only, no timestamped tracing WARN.
    let r = env.asdo(&["status", "TP", "-n", "other-ns"]);
    assert!(
        !r.stderr.contains("WARN") && !r.stderr.contains("INFO"),
        "{r:?}"
    );
}
