//! `asdo ui` in a real browser: Debian's chromium driven by selenium (tests/e2e/ui_browser.py)
//! against the fake API server. Skipped, saying so, when chromium, chromedriver or the
//! py-tests venv with selenium is missing (.ci/run installs them).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The py-tests Python with selenium, when it and the browser are there; else says the
/// test is skipped.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("ASDO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/py-tests/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|b| std::path::Path::new(b).exists());
    if !(ok && browser) {
        eprintln!(
            "skipped: needs chromium, chromium-driver and selenium in .ci/cache/py-tests (run .ci/run)"
        );
        return None;
    }
    Some(p)
}

/// `asdo ui --no-open` outside any git clone, and the URL it printed first.
fn start_ui(env: &Env) -> (std::process::Child, String) {
    let mut ui = env
        .cmd(&["ui", "--no-open"])
        .current_dir(&env.dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(ui.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "{url:?}"
    );
    (ui, url)
}

/// tests/e2e/ui_browser.py against that page (its mode and inputs still to add).
fn browser(py: &std::path::Path, url: &str, env: &Env) -> Command {
    let mut driver = Command::new(py);
    driver
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ui_browser.py"))
        .env("ASDO_UI_URL", url)
        .env("ASDO_BIN", env!("CARGO_BIN_EXE_asdo"))
        .env("ASDO_KUBECONFIG", &env.kubeconfig)
        .env("ASDO_NS", NS)
        .env("ASDO_SECRET", PASSWORD);
    if let Some(dir) = std::env::var_os("ASDO_SCREENSHOTS") {
        driver.env("ASDO_SCREENSHOTS", dir);
    }
    driver
}

/// Runs the browser checks, then ends `asdo ui` with Ctrl-C: both must pass, and
/// neither prints the server password.
fn drive(driver: Command, ui: std::process::Child) -> Run {
    let run = run_with_timeout(driver, Duration::from_secs(600));
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert_eq!(
        run.code, 0,
        "browser checks failed:\n{run:?}\n--- asdo ui\n{served:?}"
    );
    assert_eq!(served.code, 0, "Ctrl-C ends asdo ui cleanly: {served:?}");
    assert!(!served.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
    run
}

#[test]
fn ui_in_a_real_browser() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    env.server.insert_pod(task_pod(
        "T100",
        "Succeeded",
        Some(0),
        Duration::from_secs(600),
    ));
    let mut oom: serde_json::Value = serde_json::to_value(task_pod(
        "T101",
        "Failed",
        Some(137),
        Duration::from_secs(300),
    ))
    .unwrap();
    oom["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = json!("OOMKilled");
    env.server.insert_pod(serde_json::from_value(oom).unwrap());
    let mut stuck: serde_json::Value =
        serde_json::to_value(task_pod("T102", "Pending", None, Duration::from_secs(60))).unwrap();
    stuck["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CreateContainerError", "message": "no such secret: api-key"}});
    stuck["status"]["containerStatuses"][0]["ready"] = json!(false);
    env.server
        .insert_pod(serde_json::from_value(stuck).unwrap());

    // A running task that writes a marker and a step, waits for `<gate>.lines` (made once its
    // page is open, so a loaded machine cannot let the lines run ahead of the page), writes 40
    // numbered lines, then waits for the gate; its log streams are cut every 1000 bytes (more than a second of its log, so each resume makes progress), so the page resumes many times.
    let gate = env.dir.0.join("gate");
    env.spawn_script(
        "T110",
        &format!(
            "echo 'asdo: running opencode'; echo '· write src/a.rs'; while [ ! -e '{g}.lines' ]; do sleep 0.1; done; i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.25; done; while [ ! -e '{g}' ]; do sleep 0.1; done; echo 'asdo: done 0123abcd'",
            g = gate.display()
        ),
    );
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t110", "Running", Duration::from_secs(30))
    );
    env.server.set_log_drop_after_bytes(Some(1000));
    let later = env.script_values("echo 'asdo: done no-commit-needed'");

    // Outside any git clone: the diff box says so instead of fetching from the repo URL.
    let (ui, url) = start_ui(&env);
    let mut driver = browser(&py, &url, &env);
    driver
        .env("ASDO_SPAWN_VALUES", &later)
        .env("ASDO_GATE", &gate);
    drive(driver, ui);
    // One watch of the task pods, not a request per task.
    let watches = env
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.ends_with("/pods") && r.query.contains("watch=true")
        })
        .count();
    assert!(watches >= 1, "the page is fed by a watch");
}

/// Issue 23: the follow-up box reaches the real OpenCode of a real agent in a pod (the
/// set-up of `visibility::send_steers_a_running_agent_and_its_file_is_pushed`): typed
/// and sent in the browser while the agent's first turn waits on a gate, its answer
/// streams into the page, and the file it asked for is on the pushed branch.
#[test]
fn ui_send_box_steers_the_real_agent() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    let agent = crate::visibility::steerable_agent(&env, "T230", "e2e-ui-steer");
    let (ui, url) = start_ui(&env);
    let mut driver = browser(&py, &url, &env);
    driver
        .env("ASDO_UI_MODE", "steer")
        .env("ASDO_POD", "agent-t230")
        .env("ASDO_GATE", &agent.gate);
    let run = drive(driver, ui);
    assert!(run.stdout.contains("all browser checks passed"), "{run:?}");
    agent.assert_steered(&env, "T230");
}

#[test]
fn ui_refuses_a_bad_address_and_warns_off_loopback() {
    let env = Env::new();
    let r = env.asdo(&["ui", "--address", "not-an-ip", "--no-open"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(env.server.requests().is_empty(), "checked before any call");
    let mut ui = env.start(&["ui", "--address", "0.0.0.0", "--no-open"]);
    let mut out = BufReader::new(ui.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    assert!(url.starts_with("http://0.0.0.0:"), "{url:?}");
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert!(
        served.stderr.contains("is not a loopback address"),
        "{served:?}"
    );
}

/// The scale figures of the README: 500 task pods, the page's render time for the
/// snapshot, the time from a task's exit to its new phase in the page (an upper bound: it
/// includes the fake kubelet noticing the exit), and asdo ui's peak RSS. Not a pass/fail
/// test (no timed assertions); run by hand:
///   cargo test --release --test e2e ui::ui_bench_500_task_pods -- --ignored --nocapture
#[test]
#[ignore]
fn ui_bench_500_task_pods() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    for i in 0..500 {
        let (phase, code) = if i % 7 == 0 {
            ("Failed", 1)
        } else {
            ("Succeeded", 0)
        };
        env.server.insert_pod(task_pod(
            &format!("T{i:03}"),
            phase,
            Some(code),
            Duration::from_secs(3600 - i as u64 * 5),
        ));
    }
    let gate = env.dir.0.join("gate");
    env.spawn_script(
        "T999",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done; echo 'asdo: done 0123abcd'",
            gate.display()
        ),
    );
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t999", "Running", Duration::from_secs(30))
    );
    let (ui, url) = start_ui(&env);
    let mut driver = Command::new(py);
    driver
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ui_bench.py"))
        .env("ASDO_UI_URL", &url)
        .env("ASDO_NS", NS)
        .env("ASDO_GATE", &gate);
    let run = run_with_timeout(driver, Duration::from_secs(400));
    let status = std::fs::read_to_string(format!("/proc/{}/status", ui.id())).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert_eq!(run.code, 0, "{run:?}\n{served:?}");
    println!(
        "ui bench (500 finished task pods + 1 running): {} asdo ui peak RSS {}",
        run.stdout.trim(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
}

/// A plain HTTP/1.0 client for `asdo ui`'s API, as the page's fetch and EventSource use it
/// (the cookie the token becomes; Origin on state changes). HTTP/1.0, so a streamed body
/// ends with the connection, with no chunked framing to undo.
struct PageClient {
    port: u16,
    token: String,
}

/// One Server-Sent Event: its type, id and data.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

impl PageClient {
    fn of(url: &str) -> PageClient {
        let rest = url.trim_start_matches("http://127.0.0.1:");
        let (port, token) = rest.split_once("/?token=").expect("the printed URL");
        PageClient {
            port: port.parse().unwrap(),
            token: token.to_string(),
        }
    }

    /// Sends one request; the response's status, and a reader at its body.
    fn open(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, BufReader<std::net::TcpStream>) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{p}\r\nCookie: asdo-ui-{p}={t}\r\nContent-Length: {n}\r\n",
            p = self.port,
            t = self.token,
            n = body.len()
        );
        if method != "GET" {
            head.push_str(&format!("Origin: http://127.0.0.1:{}\r\n", self.port));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {status:?}"));
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
        }
        (code, r)
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let (code, mut r) = self.open(method, path, &[], body);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut r, &mut text).unwrap();
        (code, text)
    }

    /// An event stream, read in a thread: each event as it comes, until the stream ends.
    fn events(&self, path: &str, last_id: Option<u64>) -> std::sync::mpsc::Receiver<Sse> {
        let id = last_id.map(|n| n.to_string());
        let extra: Vec<(&str, &str)> = id.iter().map(|n| ("Last-Event-ID", n.as_str())).collect();
        let (code, mut r) = self.open("GET", path, &extra, b"");
        assert_eq!(code, 200, "{path}");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ev = Sse {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if !ev.data.is_empty() && tx.send(ev.clone()).is_err() {
                        return;
                    }
                    ev = Sse {
                        event: "message".into(),
                        id: None,
                        data: String::new(),
                    };
                } else if let Some(v) = l.strip_prefix("event:") {
                    ev.event = v.trim().into();
                } else if let Some(v) = l.strip_prefix("id:") {
                    ev.id = Some(v.trim().into());
                } else if let Some(v) = l.strip_prefix("data:") {
                    ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
                line.clear();
            }
        });
        rx
    }
}

/// Reads events until `want` says yes; panics, with what was seen, after `limit`.
fn until_event(
    rx: &std::sync::mpsc::Receiver<Sse>,
    limit: Duration,
    what: &str,
    mut want: impl FnMut(&Sse) -> bool,
) -> Sse {
    let end = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if want(&ev) => return ev,
            Ok(ev) => seen.push(format!("{}: {}", ev.event, ev.data)),
            Err(e) => panic!("{what}: {e}; seen:\n{}", seen.join("\n")),
        }
    }
}

/// `asdo --runtime local ui --no-open` with exactly `vars`, in `cwd`, and a client of it.
fn start_local_ui(
    vars: &[(String, String)],
    cwd: &std::path::Path,
) -> (std::process::Child, PageClient) {
    let mut ui = crate::runtimes::local_cmd(vars, &["ui", "--no-open"]);
    ui.current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut ui = ui.spawn().unwrap();
    let mut out = BufReader::new(ui.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    let page = PageClient::of(url.trim());
    (ui, page)
}

/// A local task `id` on the fixture's repository, through the CLI.
fn spawn_local(vars: &[(String, String)], f: &crate::agent_fixture::Fixture, id: &str) {
    let r = run_with_timeout(
        crate::runtimes::local_cmd(
            vars,
            &[
                "spawn",
                "--task-id",
                id,
                "--branch",
                crate::agent_fixture::BRANCH,
                "--repo",
                &f.repo_url(),
                "--prompt",
                "Add a greeting file",
                "--model",
                "stub/stub-model",
            ],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(r.code, 0, "{r:?}");
}

/// A local task `id` under `asdo --runtime local ui`, Running and in its OpenCode session
/// (not still starting), held there by a first model step that never ends by itself.
struct HeldLocalTask {
    task: asdo::runtime::local::TaskDir,
    ui: std::process::Child,
    page: PageClient,
    /// `/api/events`, read up to the task's first Running row.
    events: std::sync::mpsc::Receiver<Sse>,
    /// That event.
    running: Sse,
    /// The task's log, read up to its session's line.
    log: std::sync::mpsc::Receiver<Sse>,
    _model: crate::support::model_server::ModelServer,
    _f: crate::agent_fixture::Fixture,
}

fn held_local_task(tag: &str, id: &str) -> HeldLocalTask {
    use crate::support::model_server::{ModelServer, Step};

    let f = crate::agent_fixture::Fixture::new(tag);
    let state = f.path("state");
    let task = asdo::runtime::local::Store {
        root: state.clone(),
    }
    .task(id);
    let model = ModelServer::start(vec![Step::bash(
        "while [ ! -e .git/never ]; do sleep 0.2; done",
    )]);
    let vars = crate::runtimes::local_vars(&f, &state, &model);
    let (ui, page) = start_local_ui(&vars, &f.path("seed"));
    let events = page.events("/api/events", None);
    spawn_local(&vars, &f, id);
    let key = format!("local/agent-{}", id.to_lowercase());
    let running = until_event(
        &events,
        Duration::from_secs(300),
        &format!("{id} Running"),
        |e| row_in(e, &key).is_some_and(|r| r["phase"] == "Running"),
    );
    let log = page.events(&format!("/api/tasks/{key}/log"), None);
    until_event(&log, Duration::from_secs(300), "the session's line", |e| {
        e.event == "line" && e.data.contains("asdo: opencode session ses")
    });
    HeldLocalTask {
        task,
        ui,
        page,
        events,
        running,
        log,
        _model: model,
        _f: f,
    }
}

/// The row of `key` in a `row` or `snapshot` event.
fn row_in(e: &Sse, key: &str) -> Option<serde_json::Value> {
    let rows: Vec<serde_json::Value> = match e.event.as_str() {
        "row" => vec![serde_json::from_str(&e.data).ok()?],
        "snapshot" => serde_json::from_str::<serde_json::Value>(&e.data).ok()?["rows"]
            .as_array()?
            .clone(),
        _ => return None,
    };
    rows.into_iter().find(|r| r["key"] == key)
}

/// Issue 25: `asdo --runtime local ui` serves the local runtime's tasks with the same
/// page and API: a local task run by the real opencode 1.18.33 against the scripted
/// model shows on /api/events going Running → Succeeded with its commit; its log route
/// streams its lines to the end (and resumes after Last-Event-ID); the diff route gives
/// its --stat; the send route's message reaches the task's session and its answer streams
/// back; delete
/// removes the ended task's directory and the row goes. HTTP-level: the page's script is
/// the same for both runtimes and is driven in a real browser by the tests above.
#[test]
fn ui_serves_the_local_runtime() {
    use crate::agent_fixture::{BRANCH, Fixture};
    use crate::runtimes::local_vars;
    use crate::support::model_server::{ModelServer, Step};

    const ID: &str = "T303";
    let f = Fixture::new("ui-local");
    let state = f.path("state");
    let store = asdo::runtime::local::Store {
        root: state.clone(),
    };
    let task = store.task(ID);
    // Inside the clone's .git: visible in the sandbox, never committed.
    let gate = task.workspace().join(".git/ui-gate");
    let model = ModelServer::start(vec![
        Step::bash("while [ ! -e .git/ui-gate ]; do sleep 0.2; done; echo released"),
        Step::write(&task.workspace().join("hello.txt"), "hello\n"),
        Step::text("Wrote hello.txt."),
    ]);
    let vars = local_vars(&f, &state, &model);

    // In a clone of the task's repository, so the diff route can fetch its branch.
    let (ui, page) = start_local_ui(&vars, &f.path("seed"));

    let events = page.events("/api/events", None);
    let first = until_event(&events, Duration::from_secs(60), "the snapshot", |e| {
        e.event == "snapshot"
    });
    let snap: serde_json::Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(snap["runtime"], "local", "{snap}");
    let tasks_dir = state.join("tasks").display().to_string();
    assert_eq!(
        snap["serving"],
        format!("the local tasks in {tasks_dir}"),
        "{snap}"
    );

    spawn_local(&vars, &f, ID);

    let key = "local/agent-t303";
    let row_of = |e: &Sse| row_in(e, key);
    let phase_is = |e: &Sse, phase: &str| row_of(e).is_some_and(|r| r["phase"] == phase);
    // Held on the gate: Running for as long as the test wants.
    until_event(&events, Duration::from_secs(300), "T303 Running", |e| {
        phase_is(e, "Running")
    });

    // The task page's log, followed from the start while the task runs.
    let log = page.events(&format!("/api/tasks/{key}/log"), None);
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut take = |e: &Sse| {
        if e.event == "line" {
            let text: String = serde_json::from_str(&e.data).unwrap();
            lines.push((e.id.as_deref().unwrap().parse().unwrap(), text));
        }
    };
    until_event(&log, Duration::from_secs(300), "the session's line", |e| {
        take(e);
        e.event == "line" && e.data.contains("asdo: opencode session ses")
    });

    // Send, as the follow-up box does: into the task's own OpenCode server (its 127.0.0.1
    // port, its password file) while the first turn is held; the reply streams back.
    let (code, mut reply) = page.open(
        "POST",
        &format!("/api/tasks/{key}/send"),
        &[],
        br#"{"message": "Also say hi"}"#,
    );
    assert_eq!(code, 200);
    let mut sent = String::new();
    reply.read_line(&mut sent).unwrap();
    let sent: serde_json::Value =
        serde_json::from_str(&sent).unwrap_or_else(|e| panic!("{e}: {sent:?}"));
    assert!(
        sent["sent"].as_str().is_some_and(|s| s.starts_with("ses")),
        "{sent}"
    );
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reply, &mut rest).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(rest.lines().last().expect("the reply's end")).unwrap();
    assert!(
        last["done"].is_string(),
        "the follow-up is answered: {rest}"
    );
    assert!(
        model
            .turns()
            .iter()
            .any(|t| t.text().contains("Also say hi")),
        "the model saw the follow-up"
    );

    let done = until_event(&events, Duration::from_secs(300), "T303 Succeeded", |e| {
        phase_is(e, "Succeeded") && row_of(e).is_some_and(|r| r["commit"].is_string())
    });
    let row = row_of(&done).unwrap();
    let sha = f.remote_branch(BRANCH).expect("branch pushed");
    assert_eq!(row["commit"], sha.as_str(), "{row}");
    assert_eq!(row["status"], "Succeeded", "{row}");
    assert_eq!(row["namespace"], "local", "{row}");

    // The log to its end: every line once, numbered, then how the task ended.
    let end = until_event(&log, Duration::from_secs(300), "the log's end", |e| {
        take(e);
        e.event == "end" || e.event == "failure"
    });
    assert_eq!(end.event, "end", "{end:?}");
    assert_eq!(end.data, "\"Succeeded, exit code 0\"", "{end:?}");
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    assert!(texts.contains(&"· write hello.txt"), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("· bash while [ ! -e .git/ui-gate ]")),
        "{texts:?}"
    );
    assert!(
        texts.contains(&format!("asdo: done {sha}").as_str()),
        "{texts:?}"
    );
    let ids: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        ids,
        (1..=lines.len() as u64).collect::<Vec<_>>(),
        "each line once, in order"
    );
    let n = lines.last().unwrap().0;
    // A page reconnecting with the id of its last-but-two line gets exactly the last two.
    let resumed = page.events(&format!("/api/tasks/{key}/log"), Some(n - 2));
    let mut again = Vec::new();
    until_event(&resumed, Duration::from_secs(120), "the resumed end", |e| {
        if e.event == "line" {
            again.push((
                e.id.as_deref().unwrap().parse::<u64>().unwrap(),
                serde_json::from_str::<String>(&e.data).unwrap(),
            ));
        }
        e.event == "end"
    });
    assert_eq!(again, lines[lines.len() - 2..].to_vec());

    // The diff route, in this clone: the task's one file.
    let (code, body) = page.call("GET", &format!("/api/tasks/{key}/diff"), b"");
    assert_eq!(code, 200, "{body}");
    let diff: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        diff["stat"]
            .as_str()
            .is_some_and(|s| s.contains("hello.txt") && s.contains("1 file changed")),
        "{diff}"
    );

    // Delete, aimed at that run: the ended task's directory goes, and so does its row.
    let uid = row["uid"].as_str().unwrap();
    assert!(task.dir.exists());
    let (code, body) = page.call(
        "DELETE",
        &format!("/api/tasks/{key}?uid=deadbeef-0000"),
        b"",
    );
    assert_eq!(code, 409, "another run's uid is refused: {body}");
    assert!(task.dir.exists(), "left alone");
    let (code, body) = page.call("DELETE", &format!("/api/tasks/{key}?uid={uid}"), b"");
    assert_eq!(code, 200, "{body}");
    let deleted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(deleted["deleted"], true, "{body}");
    assert!(!task.dir.exists(), "the task's directory is removed");
    until_event(&events, Duration::from_secs(60), "the row removed", |e| {
        e.event == "remove" && e.data == format!("\"{key}\"")
    });

    // Ctrl-C with the page's event stream still open: the server ends it and exits.
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert_eq!(served.code, 0, "{served:?}");
    loop {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(e) => assert_ne!(e.event, "row", "nothing after the stop: {e:?}"),
            Err(e) => {
                assert_eq!(e, std::sync::mpsc::RecvTimeoutError::Disconnected);
                break;
            }
        }
    }
    assert!(
        served
            .stderr
            .contains(&format!("asdo ui: serving the local tasks in {tasks_dir}")),
        "{served:?}"
    );
}

/// The page's Delete on a running local task: the first asks it to stop (its agent, in the
/// sandbox, ends 143 as on a pod's deletion), the row shows it ended, and the second
/// removes its directory.
#[test]
fn ui_delete_cancels_a_running_local_task_then_removes_it() {
    let held = held_local_task("ui-local-cancel", "T304");
    let (task, page) = (&held.task, &held.page);
    let key = "local/agent-t304";
    let uid = row_in(&held.running, key).unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, body) = page.call("DELETE", &format!("/api/tasks/{key}?uid={uid}"), b"");
    assert_eq!(code, 200, "{body}");
    let said: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&said["cancelled"], &said["deleted"]),
        (&json!(true), &json!(false)),
        "{body}"
    );
    let ended = until_event(&held.events, Duration::from_secs(300), "T304 ended", |e| {
        row_in(e, key).is_some_and(|r| r["phase"] == "Failed")
    });
    let row = row_in(&ended, key).unwrap();
    assert_eq!(row["exit_code"], 143, "{row}");
    assert!(
        task.dir.exists(),
        "a cancelled task stays until deleted again"
    );
    let end = until_event(&held.log, Duration::from_secs(120), "the log's end", |e| {
        e.event == "end" || e.event == "failure"
    });
    assert_eq!(end.data, "\"Failed, exit code 143\"", "{end:?}");

    let (code, body) = page.call("DELETE", &format!("/api/tasks/{key}?uid={uid}"), b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["deleted"],
        true
    );
    assert!(!task.dir.exists(), "removed once ended");
    until_event(
        &held.events,
        Duration::from_secs(60),
        "the row removed",
        |e| e.event == "remove" && e.data == format!("\"{key}\""),
    );
    unsafe { libc::kill(held.ui.id() as i32, libc::SIGINT) };
    let served = wait_output(held.ui, Duration::from_secs(30));
    assert_eq!(served.code, 0, "{served:?}");
}

/// The page's script on the local runtime, in a real browser: a running local task (the
/// real opencode, held by its model) shows the local words and commands, and Delete asks
/// it to stop, then, once it ended 143, removes it (tests/e2e/ui_browser.py, mode local).
#[test]
fn ui_local_task_in_a_real_browser() {
    let Some(py) = python() else {
        return;
    };
    let held = held_local_task("ui-local-browser", "T305");
    let (task, page) = (&held.task, &held.page);
    let mut driver = Command::new(&py);
    driver
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ui_browser.py"))
        .env(
            "ASDO_UI_URL",
            format!("http://127.0.0.1:{}/?token={}", page.port, page.token),
        )
        .env("ASDO_UI_MODE", "local")
        .env("ASDO_POD", "agent-t305")
        .env("ASDO_TASK", "T305")
        .env("ASDO_TASK_DIR", &task.dir);
    let run = drive(driver, held.ui);
    assert!(run.stdout.contains("all browser checks passed"), "{run:?}");
}
