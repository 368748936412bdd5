//! attach, send and doctor on the local runtime: a task's OpenCode server reached at its
//! own 127.0.0.1 port (no port-forward), with its 0600 password file; the real opencode
//! 1.18.33 in the sandbox and the scripted model server.

use std::io::{BufRead, BufReader};
use std::process::Child;

use super::*;

/// `asdo --runtime local <args>` started, its stdout and stderr piped.
fn start(env: &[(String, String)], args: &[&str]) -> Child {
    local_cmd(Path::new("/"), env, args).spawn().unwrap()
}

/// A `send` to T020 started, once its first line on stderr says the message went in; the
/// rest of its stderr to read.
fn start_send(
    env: &[(String, String)],
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut send = start(env, args);
    let mut err = BufReader::new(send.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("sent to task T020 (session ses_"),
        "{line:?}"
    );
    (send, err)
}

/// The rest of a started command's output, once it has ended (killed and failed after
/// 400 s).
fn finish(mut child: Child, stderr: BufReader<std::process::ChildStderr>) -> Ran {
    use std::io::Read;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = stderr;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let r = wait_for(child, Duration::from_secs(400));
    Ran {
        code: r.code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// One local task running the real agent, its first turn held on a gate by a bash step
/// (a file outside the user's home and the state directory, so the sandbox can see it):
/// attach --print-url prints its own URL and stays until the task ends; two messages sent
/// while the turn is held (one streamed, one `-o json`) are both answered once the gate
/// opens, the file they ask for is pushed; a wrong password is refused at once, and
/// `--port` and a finished task are one line each.
#[test]
fn attach_and_send_reach_a_local_tasks_own_server() {
    let f = Fixture::new("local-send");
    let l = Local::new("send");
    let gate = l.root.join("gate");
    let ws = l.store().task("T020").workspace();
    // The first turn is held until both messages are in.
    let model = ModelServer::start(model_server::steered_script(&ws, &gate));
    let env = cli_env(&l, &model.opencode_config());
    let repo = f.repo_url();
    let r = asdo(
        &env,
        &spawn_args(
            "T020",
            BRANCH,
            &repo,
            "Write first.txt",
            &["--model", "stub/stub-model"],
        ),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let t = l.store().task("T020");
    assert!(
        eventually(Duration::from_secs(300), || log_text_lossy(&t)
            .contains("asdo: opencode session ses")),
        "no session announced:\n{}",
        log_text_lossy(&t)
    );
    let password = std::fs::read_to_string(t.password()).unwrap();
    let port = t.state().unwrap().unwrap().port.unwrap();

    // --port means a forward, which a local task does not need: one line, exit 2.
    let r = asdo(&env, &["attach", "T020", "--print-url", "--port", "5000"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--port is for a port-forward"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    // A wrong password is refused at once, by the server's 401.
    let wrong = l.root.join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let r = asdo(
        &env,
        &[
            "send",
            "T020",
            "hi",
            "--password-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("refused the password (HTTP 401)"),
        "{r:?}"
    );

    // attach --print-url: the task's own URL, the password from its file (named, never
    // printed), and it stays.
    let mut attach = start(&env, &["attach", "T020", "--print-url"]);
    let mut url = String::new();
    BufReader::new(attach.stdout.as_mut().unwrap())
        .read_line(&mut url)
        .unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}\n"));
    let mut attach_err = BufReader::new(attach.stderr.take().unwrap());
    let mut line = String::new();
    attach_err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!(
            "local task T020 serves http://127.0.0.1:{port}, session ses_"
        )),
        "{line:?}"
    );
    assert!(
        line.contains(&format!(
            "password from the task's password file {}",
            t.password().display()
        )),
        "{line:?}"
    );
    assert!(!line.contains(password.trim()), "{line:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = asdo::opencode::Client::new(
        url.trim().strip_prefix("http://").unwrap(),
        Some(password.trim()),
    );
    assert!(
        rt.block_on(client.healthy()).unwrap(),
        "the printed URL answers"
    );

    // Two messages while the first turn is held: one streamed, one as `-o json`.
    let (plain, plain_err) = start_send(
        &env,
        &["send", "T020", "Also write second.txt", "--timeout", "5m"],
    );
    let (quiet, quiet_err) = start_send(
        &env,
        &[
            "send",
            "T020",
            "And say what you wrote",
            "--timeout",
            "5m",
            "-o",
            "json",
        ],
    );
    std::fs::write(&gate, "").unwrap();

    let out = finish(plain, plain_err);
    assert_eq!(out.code, 0, "{out:?}\n{}", log_text_lossy(&t));
    assert!(
        out.stdout.contains("Wrote first.txt and second.txt."),
        "{out:?}"
    );
    assert!(out.stderr.contains("the session is idle again"), "{out:?}");
    let sent = finish(quiet, quiet_err);
    assert_eq!(sent.code, 0, "{sent:?}");
    let v = json(&sent);
    assert_eq!(v["outcome"], "answered", "{v:#}");
    assert_eq!(v["error"], serde_json::Value::Null, "{v:#}");
    assert!(
        v["reply"]
            .as_str()
            .unwrap()
            .contains("Wrote first.txt and second.txt."),
        "{v:#}"
    );
    let session = v["session_id"].as_str().unwrap();
    assert!(session.starts_with("ses_"), "{v:#}");
    let task = &v["task"];
    assert_eq!(task["id"], "T020", "{v:#}");
    assert_eq!(task["pod"], "agent-t020", "{v:#}");
    assert_eq!(task["namespace"], "local", "{v:#}");
    assert_eq!(task["session_id"], session, "{v:#}");
    task_schema::assert_valid(&l.root, "send", std::slice::from_ref(task));
    for r in [&out, &sent] {
        assert!(
            !r.stdout.contains(password.trim()) && !r.stderr.contains(password.trim()),
            "{r:?}"
        );
    }

    // The task ends with both files pushed; attach --print-url ends with it.
    let w = asdo(&env, &["wait", "T020", "--timeout", "5m"]);
    assert_eq!(w.code, 0, "{w:?}\n{}", log_text_lossy(&t));
    assert_eq!(f.remote_file(BRANCH, "first.txt"), "first");
    assert_eq!(f.remote_file(BRANCH, "second.txt"), "second");
    let seen = model
        .turns()
        .iter()
        .position(|t| t.text().contains("Also write second.txt"))
        .expect("the model saw the message");
    assert!(seen <= 2, "seen at turn {seen}");
    let a = finish(attach, attach_err);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stderr.contains(
            "task T020 ended (pod phase Succeeded): its OpenCode server is gone; read what it did with `asdo --runtime local logs T020`"
        ),
        "{a:?}"
    );

    // A finished task: one line naming its phase and the logs command.
    let r = asdo(&env, &["send", "T020", "one more thing"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("is finished: its OpenCode server is gone; read what it did with `asdo --runtime local logs T020`"),
        "{r:?}"
    );
    let r = asdo(&env, &["attach", "T404", "--print-url"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no local task T404"), "{r:?}");
}

/// The log without timestamps, while it is still being written (lines without one are
/// kept as they are).
fn log_text_lossy(t: &TaskDir) -> String {
    let raw = std::fs::read(t.log()).unwrap_or_default();
    raw.split_inclusive(|b| *b == b'\n')
        .map(|l| {
            let body = asdo::follow::split_timestamp(l).map_or(l, |(_, rest)| rest);
            String::from_utf8_lossy(body).into_owned()
        })
        .collect()
}

/// `asdo --runtime local doctor`: this machine's checks, each ok with the real tools; a
/// PATH without opencode is a FAIL line saying what to install, and exit 1.
#[test]
fn doctor_checks_what_a_local_task_needs() {
    let l = Local::new("doctor");
    let env = cli_env(&l, "{}");
    let r = asdo(&env, &["doctor"]);
    assert_eq!(r.code, 0, "{r:?}");
    for want in [
        format!(
            "ok    state directory {} is writable",
            l.store().root.display()
        ),
        "ok    bubblewrap makes a sandbox".into(),
        "ok    opencode 1.18.33 on PATH".into(),
        "ok    git version".into(),
        "parallel slots free".into(),
        "ok    OpenCode provider set-up a task gets: OPENCODE_CONFIG_CONTENT".into(),
    ] {
        assert!(r.stdout.contains(&want), "{want}: {r:?}");
    }
    assert!(!r.stdout.contains("cluster"), "{r:?}");

    // No opencode, no provider: what to do next, and exit 1.
    let bare: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "OPENCODE_CONFIG_CONTENT")
        .map(|(k, v)| {
            let v = if k == "PATH" {
                std::env::var("PATH").unwrap()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    // A bwrap that cannot make a sandbox (user namespaces off) and another opencode: the
    // real `bwrap … true` run fails in one line with its own words, and the version is a
    // warning naming the pinned one.
    let f = Fixture::new("local-doctor");
    f.stand_in(
        "bwrap",
        "echo 'bwrap: setting up uid map: Permission denied' >&2; exit 1",
    );
    f.stand_in("opencode", "echo 1.0.0");
    let broken: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let v = if k == "PATH" { f.path_var() } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    let r = asdo(&broken, &["doctor"]);
    assert_eq!(r.code, 1, "{r:?}");
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("bubblewrap"))
        .expect("a bubblewrap line");
    assert!(
        line.starts_with("FAIL  bubblewrap (")
            && line.contains(
                "cannot make a sandbox here: bwrap: setting up uid map: Permission denied"
            )
            && line.contains("--no-sandbox"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("warn  opencode 1.0.0 on PATH")
            && r.stdout.contains(
                "asdo is built and tested against 1.18.33: npm install -g opencode-ai@1.18.33"
            ),
        "{r:?}"
    );

    let has_opencode =
        std::env::split_paths(&std::env::var("PATH").unwrap()).any(|d| d.join("opencode").exists());
    let r = asdo(&bare, &["doctor"]);
    assert!(
        r.stdout.contains("warn  no OpenCode provider set up"),
        "{r:?}"
    );
    if !has_opencode {
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout
                .contains("FAIL  opencode is not on PATH (the agent runs it): npm install -g opencode-ai@1.18.33"),
            "{r:?}"
        );
    }
}
