//! `asdo wait --on-done / --webhook`: hooks get each task's result, and a failing, hung or
//! unreachable hook changes neither wait's exit code nor when the other tasks are reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Env, path_str};

/// A webhook receiver on 127.0.0.1 answering `statuses` in turn (then 200), keeping bodies.
fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/services/T0/B0/secret-path",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let code = statuses.next().unwrap_or(200);
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

#[test]
fn on_done_and_webhook_get_each_result() {
    let env = Env::new();
    env.spawn_script(
        "T001",
        "echo 'asdo: pr https://forge.example/o/r/pull/7'; echo 'asdo: done 0123abcd'",
    );
    env.spawn_script("T002", "echo 'asdo: failed agent: model said no'; exit 12");
    let out = env.dir.0.join("hooks");
    std::fs::create_dir_all(&out).unwrap();
    // The first POST gets a 500: the hook tries once more.
    let (url, bodies) = receiver(vec![500]);
    let cmd = format!(
        "printf '%s|%s|%s|%s|%s\\n' \"$ASDO_PHASE\" \"$ASDO_EXIT\" \"$ASDO_COMMIT\" \"$ASDO_PR_URL\" \"$ASDO_FAILED_STEP\" > {}/$ASDO_TASK_ID",
        path_str(&out)
    );
    let mut c = env.cmd(&["wait", "T001", "T002", "--on-done", &cmd]);
    c.env("ASDO_WEBHOOK_URL", &url);
    let r = crate::common::run_with_timeout(c, Duration::from_secs(90));
    assert_eq!(r.code, 1, "T002 failed: {r:?}");
    let read = |id: &str| std::fs::read_to_string(out.join(id)).unwrap();
    assert_eq!(
        read("T001"),
        "Succeeded|0|0123abcd|https://forge.example/o/r/pull/7|\n"
    );
    assert_eq!(read("T002"), "Failed|12|||agent\n");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "two tasks, one retried: {bodies:?}");
    let json: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let t1 = json.iter().rfind(|j| j["task_id"] == "T001").unwrap();
    assert_eq!(t1["commit"], "0123abcd");
    assert!(
        t1["text"]
            .as_str()
            .unwrap()
            .starts_with("T001 Succeeded exit=0")
    );
    // The webhook URL's secret path is never printed.
    assert!(
        !r.stderr.contains("secret-path") && !r.stdout.contains("secret-path"),
        "{r:?}"
    );
}

#[test]
fn failing_hung_and_unreachable_hooks_do_not_change_the_outcome() {
    let env = Env::new();
    env.spawn_script("T001", "echo 'asdo: done 0123abcd'");
    env.spawn_script("T002", "sleep 2; echo 'asdo: done 4567cdef'");
    // A port with nothing listening.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let r = env.asdo(&[
        "wait",
        "T001",
        "T002",
        "--on-done",
        "[ \"$ASDO_TASK_ID\" = T001 ] && sleep 60; exit 3",
        "--hook-timeout",
        "2s",
        "--webhook",
        &format!("http://{dead}/hook"),
    ]);
    assert_eq!(r.code, 0, "every task succeeded: {r:?}");
    assert!(
        r.stdout.contains("T001 Succeeded") && r.stdout.contains("T002 Succeeded"),
        "{r:?}"
    );
    // Both hooks of both tasks failed, each said so once.
    assert!(
        r.stderr
            .contains("--on-done for T001: still running after 2s; killed"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("--on-done for T002: exited with"),
        "{r:?}"
    );
    assert_eq!(r.stderr.matches("--webhook for").count(), 2, "{r:?}");
    // T001's hung hook did not hold T002's report back to its 60 s sleep.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    // A bad URL is refused before any call.
    let r = env.asdo(&["wait", "T001", "--webhook", "hooks.example.com/x"]);
    assert_eq!(r.code, 2, "{r:?}");
}

/// A receiver that records the request head, then answers 200 with a body of `declared`
/// bytes, written until the client stops reading; returns (url, head, bytes written).
fn flooding_receiver(
    userinfo: &str,
    declared: usize,
) -> (String, std::sync::mpsc::Receiver<(String, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{userinfo}@{}/services/T0/B0/secret-path",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {declared}\r\n\r\n"
        );
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0usize;
        while written < declared {
            match conn.write(&chunk[..chunk.len().min(declared - written)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n,
            }
        }
        let _ = tx.send((head, written));
    });
    (url, rx)
}

/// A webhook answering far more than asdo reads: wait reads 8 KiB, says so naming the
/// cap, and drops the connection (the receiver could not write the rest); the URL's
/// `user:password@` arrives as a Basic header and is printed nowhere, even at -vvv.
#[test]
fn webhook_answer_is_capped_and_its_credentials_go_as_basic_auth() {
    let env = Env::new();
    env.spawn_script("T001", "echo 'asdo: done 0123abcd'");
    let declared = 256 * 1024 * 1024;
    let (url, got) = flooding_receiver("hookuser:hook%40pass-7f3e", declared);
    let mut c = env.cmd(&["-vvv", "wait", "T001", "--timeout", "120s"]);
    c.env("ASDO_WEBHOOK_URL", &url);
    let r = crate::common::run_with_timeout(c, Duration::from_secs(180));
    assert_eq!(
        r.code,
        0,
        "{}",
        r.stderr
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (head, written) = got
        .recv_timeout(Duration::from_secs(60))
        .expect("the webhook was called");
    // base64("hookuser:hook@pass-7f3e"): the user info percent-decoded, as curl sends it.
    assert!(
        head.to_ascii_lowercase().contains(
            "authorization: basic aG9va3VzZXI6aG9va0BwYXNzLTdmM2U="
                .to_ascii_lowercase()
                .as_str()
        ),
        "{head}"
    );
    assert!(!head.contains("hook%40pass"), "{head}");
    eprintln!("the webhook receiver wrote {written} of {declared} bytes");
    // Socket buffers hold a few MiB; the whole 256 MiB was never taken.
    assert!(
        written < 32 * 1024 * 1024,
        "the receiver wrote {written} bytes"
    );
    let warning: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("--webhook for T001"))
        .collect();
    assert_eq!(warning.len(), 1, "{warning:?}");
    assert!(warning[0].contains("more than 8 KiB"), "{warning:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    let mut forms = crate::traces::secret_forms("hookuser", "hook@pass-7f3e");
    forms.push("hook%40pass-7f3e".into());
    crate::traces::assert_no_secret("wait --webhook", &all, &forms);
    assert!(!all.contains("secret-path"), "the URL's path was printed");
}

/// `--hook-timeout 0` would kill every hook as it starts: refused, one line, no call.
#[test]
fn hook_timeout_zero_is_refused_before_any_call() {
    let env = Env::new();
    let before = env.server.requests().len();
    for args in [
        vec!["wait", "T001", "--on-done", "true", "--hook-timeout", "0"],
        vec![
            "wait",
            "T001",
            "--webhook",
            "https://hooks.example.com/x",
            "--hook-timeout",
            "0s",
        ],
    ] {
        let r = env.asdo(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        assert!(r.stderr.contains("--hook-timeout 0"), "{r:?}");
    }
    assert_eq!(env.server.requests().len(), before, "nothing sent");
}
