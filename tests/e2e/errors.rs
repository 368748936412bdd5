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
