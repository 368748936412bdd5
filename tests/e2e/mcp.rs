//! `asdo mcp` driven by the official MCP Python SDK (tests/e2e/mcp_client.py, PyPI
//! `mcp` from .ci/py-tools.sh) against the fake API server: tools create and read
//! real pods, bad input is a tool error with the CLI's message, never a crash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// The interpreter of .ci/py-tools.sh's venv (or $ASDO_TEST_PYTHON).
fn test_python() -> PathBuf {
    let p = std::env::var_os("ASDO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/py-tests/bin/python")
        });
    assert!(
        p.exists(),
        "{} is missing: run `bash .ci/py-tools.sh` (installs the PyPI clients the tests use)",
        p.display()
    );
    p
}

/// Runs the calls in one MCP session; the client's JSON summary.
fn mcp_session(env: &Env, calls: Value) -> Value {
    mcp_session_with(env, calls, None)
}

/// Same, the server's TMPDIR set to `tmp` when given.
fn mcp_session_with(env: &Env, calls: Value, tmp: Option<&Path>) -> Value {
    python_client(env, "mcp_client.py", calls, tmp, Duration::from_secs(240))
}

/// Runs one of the Python MCP clients in tests/e2e on `steps` against `asdo mcp` (its
/// TMPDIR set to `tmp` when given); the client's JSON summary.
fn python_client(
    env: &Env,
    script: &str,
    steps: Value,
    tmp: Option<&Path>,
    timeout: Duration,
) -> Value {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let steps_file = env.write(&format!("mcp-steps-{n}.json"), &steps.to_string());
    let server = [
        "--kubeconfig".to_string(),
        path_str(&env.kubeconfig).to_string(),
        "mcp".to_string(),
    ];
    let mut c = client_command(script, &steps_file, &server);
    isolate(&mut c);
    if let Some(t) = tmp {
        c.env("TMPDIR", t);
    }
    client_summary(c, timeout)
}

/// The Python client `script` on the steps in `steps_file`, serving them with `asdo
/// <server…>`.
fn client_command(script: &str, steps_file: &Path, server: &[String]) -> Command {
    let mut c = Command::new(test_python());
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/e2e")
            .join(script),
    )
    .arg(format!("@{}", steps_file.display()))
    .arg("--")
    .arg(env!("CARGO_BIN_EXE_asdo"))
    .args(server);
    c
}

/// Runs the client to its end; its JSON summary.
fn client_summary(c: Command, timeout: Duration) -> Value {
    let r = run_with_timeout(c, timeout);
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

#[test]
fn python_mcp_sdk_drives_asdo_mcp_against_the_fake_api_server() {
    let env = Env::new();
    let out = mcp_session(
        &env,
        json!([
            ["spawn_task", {"task_id": "T301", "branch": "specs/1/T301-async",
                "repo": "git@github.com:org/repo.git", "prompt": "Add a greeting",
                "set": ["pod.command={sh,-c,echo working; echo 'asdo: done abc1234'}"]}],
            ["spawn_task", {"task_id": "bad_id!", "branch": "b", "repo": "git@github.com:o/r.git"}],
            ["spawn_task", {"task_id": "T302", "branch": "a..b", "repo": "git@github.com:o/r.git"}],
            ["spawn_task", {"task_id": "T301", "branch": "specs/1/T301-async", "repo": "git@github.com:org/repo.git"}],
            ["wait_tasks", {"task_ids": ["T301"], "timeout": "60s"}],
            ["list_tasks", {}],
            ["task_logs", {"task_id": "T301", "tail": 10}],
            ["task_logs", {"task_id": "T301", "max_bytes": 8}],
            ["task_status", {"task_id": "T301"}],
            ["task_status", {"task_id": "T999"}],
            ["wait_tasks", {"task_ids": ["T301"], "timeout": "soon"}],
            ["send_message", {"task_id": "T301", "message": "one more thing"}],
            ["cleanup_tasks", {"dry_run": true}],
            ["cleanup_tasks", {}],
            ["list_tasks", {}],
            ["spawn_task", {"task_id": "T303", "branch": "specs/1/T303", "repo": "git@github.com:org/repo.git",
                "dry_run": true}],
        ]),
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "answer_task",
            "cleanup_tasks",
            "list_tasks",
            "send_message",
            "spawn_task",
            "task_logs",
            "task_status",
            "wait_tasks"
        ]
    );
    let r = |i: usize| &out["results"][i];
    let ok = |i: usize| {
        assert_eq!(r(i)["is_error"], false, "call {i}: {}", r(i));
        r(i)
    };
    let err = |i: usize, want: &str| {
        assert_eq!(r(i)["is_error"], true, "call {i}: {}", r(i));
        let text = r(i)["text"].as_str().unwrap();
        assert!(text.contains(want), "call {i}: {text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
    };

    // Every tool declares an object outputSchema, and every successful call's
    // structuredContent fits it (checked in the client with jsonschema; the SDK checks
    // it too and would have failed the call).
    for (name, schema) in out["schemas"].as_object().unwrap() {
        assert_eq!(schema["type"], "object", "{name}: {schema}");
    }
    for (i, res) in out["results"].as_array().unwrap().iter().enumerate() {
        if res["is_error"] == false {
            assert_eq!(res["schema_error"], Value::Null, "call {i}: {res}");
            assert_eq!(res["task_schema_error"], Value::Null, "call {i}: {res}");
        }
    }
    // spawn_task created the pod in the fake API server, as `asdo spawn` does; its
    // result is `spawn -o json`'s task object.
    assert_eq!(ok(0)["structured"]["pod"], "agent-t301");
    assert_eq!(ok(0)["structured"]["id"], "T301");
    assert_eq!(ok(0)["structured"]["branch"], "specs/1/T301-async");
    assert_eq!(ok(0)["structured"]["namespace"], NS);
    assert!(ok(0)["text"].as_str().unwrap().contains("pod agent-t301"));
    // (The session ends with cleanup, so the pod is checked through the recorded calls.)
    let creates: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST" && q.path == format!("/api/v1/namespaces/{NS}/pods"))
        .map(|q| q.status)
        .collect();
    assert_eq!(
        creates,
        [201, 409],
        "one create, one AlreadyExists; bad input sent nothing"
    );
    // Bad input: the CLI's one-line messages, as tool errors; the server lived on.
    err(1, "invalid task id");
    err(2, "invalid branch");
    err(3, "already exists");
    assert_eq!(r(3)["structured"]["exit_code"], 1);

    assert_eq!(ok(4)["structured"]["all_succeeded"], true);
    assert!(r(4)["text"].as_str().unwrap().contains("T301 Succeeded"));
    let ended = &r(4)["structured"]["tasks"][0];
    assert_eq!(ended["id"], "T301");
    assert_eq!(ended["phase"], "Succeeded");
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["commit"], "abc1234");
    let tasks = &ok(5)["structured"]["tasks"];
    assert_eq!(tasks[0]["id"], "T301");
    assert_eq!(tasks[0]["phase"], "Succeeded");
    assert_eq!(tasks[0]["exit_code"], 0);
    assert!(
        ok(6)["structured"]["log"]
            .as_str()
            .unwrap()
            .contains("working\n")
    );
    // Bounded: 8 bytes keep only whole newest lines.
    assert_eq!(ok(7)["structured"]["truncated"], true);
    assert!(r(7)["text"].as_str().unwrap().len() <= 8);
    assert!(ok(8)["text"].as_str().unwrap().contains("Succeeded"));
    let status = &r(8)["structured"];
    assert_eq!(status["id"], "T301");
    assert_eq!(status["pod"], "agent-t301");
    assert_eq!(status["namespace"], NS);
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["exit_code"], 0);
    assert_eq!(status["branch"], "specs/1/T301-async");
    assert!(
        status["last_marker"]
            .as_str()
            .unwrap()
            .contains("done abc1234"),
        "{status}"
    );
    err(9, "agent-t999");
    err(10, "invalid duration");
    err(11, "phase Succeeded");
    assert_eq!(ok(12)["structured"]["tasks"][0]["pod"], "agent-t301");
    assert_eq!(r(12)["structured"]["dry_run"], true);
    assert_eq!(ok(13)["structured"]["tasks"][0]["pod"], "agent-t301");
    assert_eq!(r(13)["structured"]["dry_run"], false);
    assert_eq!(ok(14)["structured"]["tasks"], json!([]));
    // A dry run's result is the task the rendered pod would be (the manifest in the
    // text), and nothing was created.
    assert_eq!(ok(15)["structured"]["id"], "T303");
    assert_eq!(ok(15)["structured"]["pod"], "agent-t303");
    assert_eq!(ok(15)["structured"]["uid"], Value::Null);
    assert!(
        r(15)["text"]
            .as_str()
            .unwrap()
            .contains("\"kind\": \"Pod\"")
    );
    assert!(env.server.pod(NS, "agent-t303").is_none());
    assert!(env.server.pod(NS, "agent-t301").is_none());
}

/// The tools return the CLI's task object: for the same finished task, the
/// structuredContent of spawn_task, wait_tasks, list_tasks and task_status is what
/// `asdo spawn|wait|list|status -o json` prints, and each fits src/task.schema.json
/// (checked in the client with jsonschema against the file itself).
#[test]
fn tool_results_are_the_task_objects_the_cli_prints() {
    let env = Env::new();
    let out = mcp_session(
        &env,
        json!([
            ["spawn_task", {"task_id": "T311", "branch": "specs/1/T311", "repo": "git@github.com:org/repo.git",
                "set": ["pod.command={sh,-c,echo 'asdo: done abc1234'}"]}],
            ["wait_tasks", {"task_ids": ["T311"], "timeout": "120s"}],
            ["list_tasks", {}],
            ["task_status", {"task_id": "T311"}],
        ]),
    );
    let r = |i: usize| {
        let res = &out["results"][i];
        assert_eq!(res["is_error"], false, "call {i}: {res}");
        assert_eq!(res["schema_error"], Value::Null, "call {i}: {res}");
        assert_eq!(res["task_schema_error"], Value::Null, "call {i}: {res}");
        &res["structured"]
    };
    let cli = |args: &[&str]| -> Value {
        let run = env.asdo(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
    };
    let status = cli(&["status", "T311", "-o", "json"]);
    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(status["commit"], "abc1234", "{status}");
    // The task is over: nothing in its object moves with time any more, so the
    // objects are compared whole.
    assert_eq!(r(3), &status, "task_status is `status -o json`");
    assert_eq!(
        r(2)["tasks"],
        cli(&["list", "-o", "json"]),
        "list_tasks is `list -o json`"
    );
    let waited = cli(&["wait", "T311", "--timeout", "60s", "-o", "json"]);
    assert_eq!(
        r(1)["tasks"],
        json!([waited]),
        "wait_tasks' tasks are `wait -o json`'s lines"
    );
    assert_eq!(r(1)["all_succeeded"], true);
    assert_eq!(r(1)["exit_code"], 0);
    // spawn_task's object is the task as it was created (Pending): the same task,
    // its identity and inputs the same as now.
    let spawned = r(0);
    assert_eq!(
        spawned.as_object().unwrap().len(),
        status.as_object().unwrap().len()
    );
    for key in [
        "id",
        "pod",
        "namespace",
        "uid",
        "branch",
        "repo",
        "base",
        "spec_dir",
        "environment",
        "image",
        "created",
    ] {
        assert_eq!(spawned[key], status[key], "{key}: {spawned} vs {status}");
    }
}

/// Asserts step `i` is a refused tool call: isError, one line naming `want`, exit 2.
fn assert_refused(out: &Value, i: usize, want: &str) {
    let r = &out["results"][i];
    assert_eq!(r["is_error"], true, "call {i}: {r}");
    let text = r["text"].as_str().unwrap();
    assert!(text.contains(want), "call {i}: {text}");
    assert_eq!(text.lines().count(), 1, "call {i}, one line: {text}");
    assert!(text.len() < 400, "call {i}, short: {text}");
    assert_eq!(r["structured"]["exit_code"], 2, "call {i}: {r}");
}

/// A prompt-injected main session must gain no shell, no other cluster, no other file
/// and no other pod's log through a tool argument: every such value is refused before
/// any child runs or any API call is made.
#[test]
fn hostile_tool_arguments_are_refused_before_anything_runs() {
    let env = Env::new();
    // A finished task, so an injected --on-done would have a reason to run.
    let setup = mcp_session(
        &env,
        json!([
            ["spawn_task", {"task_id": "M1", "branch": "specs/1/M1", "repo": "git@github.com:org/repo.git",
                "set": ["pod.command={sh,-c,echo 'asdo: done abc1234'}"]}],
            ["wait_tasks", {"task_ids": ["M1"], "timeout": "120s"}],
        ]),
    );
    assert_eq!(
        setup["results"][1]["structured"]["all_succeeded"], true,
        "{setup}"
    );
    let marker = env.dir.0.join("INJECTED");
    let report = env.dir.0.join("report");
    let other_kubeconfig = env.dir.0.join("other-kubeconfig");
    let m = path_str(&marker);
    let before = env.server.requests().len();
    let long_id = "T".repeat(200_000);
    let out = mcp_session(
        &env,
        json!([
            ["wait_tasks", {"task_ids": ["M1", "--on-done", format!("id > {m}; echo injected")]}],
            ["wait_tasks", {"task_ids": ["M1", format!("--on-done=touch {m}")]}],
            ["wait_tasks", {"task_ids": ["M1", "--report-dir", path_str(&report)]}],
            ["wait_tasks", {"task_ids": [format!("--kubeconfig={}", path_str(&other_kubeconfig))]}],
            ["wait_tasks", {"task_ids": ["M1"], "timeout": format!("1s --on-done touch {m}")}],
            ["task_logs", {"task_id": "--all"}],
            ["task_logs", {"task_id": "M1", "since": "--all"}],
            ["task_status", {"task_id": "--help"}],
            ["task_status", {"task_id": "M1", "namespace": "--all-namespaces"}],
            ["task_status", {"task_id": "M1", "environment": "--kubeconfig=/tmp/x"}],
            ["task_status", {"task_id": long_id}],
            ["spawn_task", {"task_id": "--help", "branch": "b", "repo": "git@github.com:o/r.git"}],
            ["spawn_task", {"task_id": "M2", "branch": "b", "repo": "git@github.com:o/r.git", "model": "--help"}],
            ["spawn_task", {"task_id": "M2", "branch": "b", "repo": "git@github.com:o/r.git", "context_dir": "/etc"}],
            ["spawn_task", {"task_id": "M2", "branch": "b", "repo": "git@github.com:o/r.git", "set": ["--dry-run"]}],
            ["send_message", {"task_id": "--password-file=/etc/passwd", "message": "hi"}],
            ["list_tasks", {"selector": "--all-namespaces"}],
            ["cleanup_tasks", {"task_id": "--all"}],
            ["cleanup_tasks", {"older_than": "--force"}],
            ["answer_task", {"task_id": "M1", "request_id": "--help", "answers": ["once"]}],
            ["answer_task", {"task_id": "--all", "request_id": "per_1", "answers": ["once"]}],
            ["answer_task", {"task_id": "M1", "request_id": "per_1", "answers": ["--always"]}],
        ]),
    );
    for (i, want) in [
        (0, "task_ids: invalid task id \"--on-done\""),
        (1, "task_ids: invalid task id"),
        (2, "task_ids: invalid task id \"--report-dir\""),
        (3, "task_ids: invalid task id \"--kubeconfig="),
        (4, "timeout: invalid duration"),
        (5, "task_id: invalid task id \"--all\""),
        (6, "since: invalid duration"),
        (7, "task_id: invalid task id \"--help\""),
        (8, "namespace: invalid namespace"),
        (9, "environment: unknown environment"),
        (10, "task_id: 200000 bytes is too long"),
        (11, "task_id: invalid task id \"--help\""),
        (12, "model: must not"),
        (13, "context_dir: \"/etc\" is outside the project"),
        (14, "set: must not"),
        (15, "task_id: invalid task id"),
        (16, "selector: invalid label selector"),
        (17, "task_id: invalid task id \"--all\""),
        (18, "older_than: invalid duration"),
        (19, "answers: \"--help\" is not a request id"),
        (20, "task_id: invalid task id \"--all\""),
        (21, "answers: a permission is answered with once or reject"),
    ] {
        assert_refused(&out, i, want);
    }
    // Nothing ran: no command, no report directory, no API call at all.
    assert!(!marker.exists(), "an injected --on-done ran");
    assert!(!report.exists(), "an injected --report-dir was used");
    let after = env.server.requests();
    assert_eq!(
        after.len(),
        before,
        "refused calls reached the fake API server: {:?}",
        &after[before..]
    );
}

/// Prompts and messages are text of any size and shape: they go to the child on
/// stdin, so a 200 KB prompt and a prompt starting with '-' both arrive as written,
/// and no file is written for a message (a symlink planted at the old predictable
/// temp name is left alone).
#[test]
fn prompts_and_messages_reach_the_child_on_stdin_whatever_their_size_or_text() {
    let env = Env::new();
    let tmp = TempDir::new("mcp-tmp");
    let victim = env.dir.0.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let big: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    // The old code wrote the message to $TMPDIR/asdo-mcp-message-<server pid>-<n>.txt.
    let plant = format!(
        "pid=$(pgrep -P $PPID -x asdo) && for n in 0 1 2 3; do ln -s '{}' \"$TMPDIR/asdo-mcp-message-$pid-$n.txt\"; done && echo $pid",
        path_str(&victim)
    );
    let out = mcp_session_with(
        &env,
        json!([
            ["spawn_task", {"task_id": "P1", "branch": "specs/1/P1", "repo": "git@github.com:org/repo.git",
                "prompt": "- add tests", "set": ["pod.command={sh,-c,sleep 600}"]}],
            ["spawn_task", {"task_id": "P2", "branch": "specs/1/P2", "repo": "git@github.com:org/repo.git",
                "prompt": big, "set": ["pod.command={sh,-c,sleep 600}"]}],
            ["!sh", plant],
            ["send_message", {"task_id": "S404", "message": "overwrite the victim"}],
            ["send_message", {"task_id": "S404", "message": "- a message starting with a dash"}],
        ]),
        Some(&tmp.0),
    );
    let r = |i: usize| &out["results"][i];
    assert_eq!(r(0)["is_error"], false, "{}", r(0));
    assert_eq!(r(1)["is_error"], false, "{}", r(1));
    assert_eq!(r(2)["code"], 0, "planted: {}", r(2));
    // The pods carry exactly the prompts given.
    let pod = env.server.pod(NS, "agent-p1").expect("pod agent-p1");
    let prompt_env = pod.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .find(|e| e.name == "TASK_PROMPT")
        .and_then(|e| e.value);
    assert_eq!(prompt_env.as_deref(), Some("- add tests"));
    let cm = env.kubectl(&[
        "get",
        "configmap",
        "agent-p2-prompt",
        "-n",
        NS,
        "-o",
        "json",
    ]);
    assert_eq!(cm.code, 0, "{cm:?}");
    let cm: Value = serde_json::from_str(&cm.stdout).unwrap();
    assert_eq!(cm["data"]["prompt"].as_str().map(str::len), Some(big.len()));
    assert!(
        cm["data"]["prompt"] == big.as_str(),
        "the 200 KB prompt arrived whole"
    );
    // send_message: the task is unknown (a tool error), and no file was written for it.
    for i in [3, 4] {
        assert_eq!(r(i)["is_error"], true, "{}", r(i));
        assert!(
            r(i)["text"].as_str().unwrap().contains("agent-s404"),
            "{}",
            r(i)
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let left: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.is_symlink())
        .collect();
    assert!(left.is_empty(), "files written in TMPDIR: {left:?}");
}

/// `notifications/cancelled` for a running wait_tasks ends its child asdo (and its
/// process group); the server lives on and answers the next call.
#[test]
fn cancelling_wait_tasks_kills_its_child() {
    let env = Env::new();
    let out = mcp_session(
        &env,
        json!([
            ["spawn_task", {"task_id": "C501", "branch": "specs/1/C501", "repo": "git@github.com:org/repo.git",
                "set": ["pod.command={sh,-c,sleep 600}"]}],
            ["!cancel", "wait_tasks", {"task_ids": ["C501"], "timeout": "10m"}, "C501"],
            ["task_status", {"task_id": "C501"}],
        ]),
    );
    let r = |i: usize| &out["results"][i];
    assert_eq!(r(0)["is_error"], false, "{}", r(0));
    assert!(r(1)["pid"].is_u64(), "the wait child never ran: {}", r(1));
    assert_eq!(
        r(1)["gone"],
        true,
        "the cancelled wait child still runs: {}",
        r(1)
    );
    assert_eq!(r(2)["is_error"], false, "{}", r(2));
    assert!(
        r(2)["text"].as_str().unwrap().contains("Running"),
        "{}",
        r(2)
    );
}

/// Malformed JSON-RPC from a client no SDK checks: wrong types, unknown tools and
/// fields, garbage lines. Each is an error answer; the server keeps serving.
#[test]
fn malformed_json_rpc_is_answered_with_errors_and_the_server_lives_on() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new();
    let before = env.server.requests().len();
    let mut c = env.cmd(&["mcp"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "task_status", "arguments": {"task_id": 42}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "wait_tasks", "arguments": {"task_ids": "M1 --on-done id"}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "task_status", "arguments": {"task_id": "M1\u{0}--help"}}}).to_string(),
        "{not json".to_string(),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "task_logs", "arguments": {"task_id": "M1", "tail": -7}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}).to_string(),
    ];
    for l in &lines {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 7 {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            break;
        };
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = v["id"].as_i64() {
            answers.insert(id, v);
        }
    }
    drop(stdin);
    let _ = child.wait();
    let text = |id: i64| {
        let a = &answers[&id];
        a["result"]["content"][0]["text"]
            .as_str()
            .or(a["error"]["message"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let is_err = |id: i64| {
        let a = &answers[&id];
        a["result"]["isError"] == true || a.get("error").is_some()
    };
    for id in 1..=5 {
        assert!(answers.contains_key(&id), "no answer to {id}: {answers:?}");
        assert!(is_err(id), "{id}: {}", answers[&id]);
    }
    assert!(text(4).contains("control characters"), "{}", text(4));
    assert!(text(5).contains("tail"), "{}", text(5));
    assert_eq!(
        answers[&6]["result"]["tools"].as_array().map(Vec::len),
        Some(8),
        "the server still serves: {}",
        answers[&6]
    );
    assert_eq!(env.server.requests().len(), before, "no API call");
}

/// Live processes running the asdo binary with `word` among their arguments (zombies,
/// already dead, do not count).
fn asdo_children_with(word: &str) -> Vec<u32> {
    let exe = env!("CARGO_BIN_EXE_asdo");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(cmdline), Ok(stat)) = (
            std::fs::read(e.path().join("cmdline")),
            std::fs::read_to_string(e.path().join("stat")),
        ) else {
            continue;
        };
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next());
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if matches!(state, Some(Some('Z' | 'X'))) || argv.first() != Some(&exe.as_bytes()) {
            continue;
        }
        if argv[1..].contains(&word.as_bytes()) && !argv[1..].contains(&b"mcp".as_slice()) {
            found.push(pid);
        }
    }
    found
}

/// The client goes away (its end of stdin closes) while wait_tasks runs: the server
/// exits and takes the child with it.
#[test]
fn a_client_going_away_ends_the_running_tool_child() {
    use std::io::Write;
    let env = Env::new();
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "G701",
        "--branch",
        "specs/1/G701",
        "--repo",
        "git@github.com:org/repo.git",
        "--set",
        "pod.command={sh,-c,sleep 600}",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut c = env.cmd(&["mcp"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut server = c.spawn().unwrap();
    let mut stdin = server.stdin.take().unwrap();
    for l in [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "wait_tasks", "arguments": {"task_ids": ["G701"], "timeout": "10m"}}}),
    ] {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();
    assert!(
        eventually(Duration::from_secs(120), || !asdo_children_with("G701")
            .is_empty()),
        "the wait child never ran"
    );
    let child = asdo_children_with("G701");
    drop(stdin);
    let exited = eventually(Duration::from_secs(60), || {
        matches!(server.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = server.kill();
    }
    assert!(exited, "the server outlived its client");
    assert!(
        eventually(Duration::from_secs(60), || asdo_children_with("G701")
            .is_empty()),
        "the wait child {child:?} outlived the server"
    );
}

/// send_message through `send --file -`: the real OpenCode server in the pod stores the
/// message exactly as the MCP client gave it, a leading '-' and 100 KB included.
#[test]
fn send_message_reaches_the_real_opencode_session_whole() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    // The test makes the session through the forward and hands its id to the pod, which
    // announces it the way the agent does.
    let id_file = env.dir.0.join("session-id");
    let script = format!(
        "opencode serve --hostname 127.0.0.1 --port \"$FAKE_KUBELET_PORT_4096\" >/dev/null 2>&1 &
while [ ! -s '{id}' ]; do sleep 0.1; done
echo \"asdo: opencode session $(cat '{id}') on http://127.0.0.1:4096\"
wait",
        id = path_str(&id_file)
    );
    env.server
        .insert_pod(crate::visibility::server_pod(&env, "T602", &script));
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t602", "Running", Duration::from_secs(60))
    );
    let mut attach = env.start(&["attach", "T602", "--print-url"]);
    let mut stdout = BufReader::new(attach.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let authority = url
        .trim()
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = asdo::opencode::Client::new(&authority, Some(PASSWORD));
    let session = rt.block_on(async {
        for _ in 0..600 {
            if client.healthy().await.unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        client.create_session("mcp send_message").await.unwrap().id
    });
    std::fs::write(&id_file, &session).unwrap();
    assert!(
        eventually(Duration::from_secs(60), || {
            env.asdo(&["logs", "T602", "--no-follow"])
                .stdout
                .contains("asdo: opencode session ses")
        }),
        "no session: {:?}",
        env.asdo(&["logs", "T602", "--no-follow"])
    );
    let message = format!("- keep the tests\n{}", "0123456789abcdef\n".repeat(6_000));
    let out = mcp_session(
        &env,
        json!([["send_message", {"task_id": "T602", "message": message, "timeout": "20s"}]]),
    );
    // No model is configured, so the session may fail or time out: the message got there.
    let r = &out["results"][0];
    assert!(
        !r["text"].as_str().unwrap_or("").contains("invalid"),
        "refused: {r}"
    );
    let texts: Vec<String> = rt.block_on(async {
        client
            .messages(&session)
            .await
            .unwrap()
            .iter()
            .filter(|m| m["info"]["role"] == "user")
            .flat_map(|m| m["parts"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    });
    unsafe { libc::kill(attach.id() as i32, libc::SIGINT) };
    let _ = wait_output(attach, Duration::from_secs(30));
    assert!(
        texts.contains(&message),
        "the session holds {} user texts, none the message ({} bytes): {:?}",
        texts.len(),
        message.len(),
        texts
            .iter()
            .map(|t| t.chars().take(40).collect::<String>())
            .collect::<Vec<_>>()
    );
}

/// Runs the steps with mcp_tasks_client.py: a client of the MCP Tasks extension, on
/// the 2026-07-28 protocol; its JSON summary.
fn mcp_tasks_session(env: &Env, steps: Value) -> Value {
    python_client(
        env,
        "mcp_tasks_client.py",
        steps,
        None,
        Duration::from_secs(300),
    )
}

/// A client that declares the Tasks extension gets spawn_task and wait_tasks as MCP
/// tasks: a handle at once, `tasks/get` polled until the task completes, its status
/// message saying how far the wait got, and the tool's result (structuredContent
/// fitting the outputSchema) read from the completed task.
#[test]
fn spawn_and_wait_run_as_mcp_tasks_polled_to_their_results() {
    let env = Env::new();
    let out = mcp_tasks_session(
        &env,
        json!([
            ["task", "spawn_task", {"task_id": "K401", "branch": "specs/1/K401", "repo": "git@github.com:org/repo.git",
                "set": ["pod.command={sh,-c,echo working; echo 'asdo: done abc1234'}"]}],
            ["task", "wait_tasks", {"task_ids": ["K401"], "timeout": "120s"}],
            ["!get", "no-such-task"],
        ]),
    );
    assert_eq!(
        out["extension"], true,
        "the server advertises the extension: {out}"
    );
    assert_eq!(out["protocol"], "2026-07-28", "{out}");
    let r = |i: usize| &out["results"][i];
    for i in [0, 1] {
        assert_eq!(r(i)["handle"]["resultType"], "task", "{}", r(i));
        assert_eq!(r(i)["handle"]["status"], "working", "{}", r(i));
        assert_eq!(r(i)["final"], "completed", "{}", r(i));
        assert_eq!(r(i)["result"]["isError"], false, "{}", r(i));
        assert_eq!(r(i)["schema_error"], Value::Null, "{}", r(i));
    }
    assert_eq!(r(0)["result"]["structuredContent"]["pod"], "agent-k401");
    assert!(env.server.requests().iter().any(|q| q.method == "POST"
        && q.path == format!("/api/v1/namespaces/{NS}/pods")
        && q.status == 201));
    let waited = &r(1)["result"]["structuredContent"];
    assert_eq!(waited["all_succeeded"], true, "{waited}");
    assert_eq!(waited["tasks"][0]["id"], "K401");
    assert_eq!(waited["tasks"][0]["commit"], "abc1234");
    // How far the wait got, as tasks/get showed it.
    let messages: Vec<&str> = r(1)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("1 of 1 ended; last: K401 Succeeded")),
        "{messages:?}"
    );
    assert!(
        r(2)["error"]
            .as_str()
            .unwrap_or("")
            .contains("unknown task"),
        "{}",
        r(2)
    );
}

/// `tasks/cancel` of a running wait task kills its child asdo (and its process
/// group), and the task ends `cancelled`.
#[test]
fn cancelling_a_wait_task_kills_its_child() {
    let env = Env::new();
    let out = mcp_tasks_session(
        &env,
        json!([
            ["task", "spawn_task", {"task_id": "K501", "branch": "specs/1/K501", "repo": "git@github.com:org/repo.git",
                "set": ["pod.command={sh,-c,sleep 600}"]}],
            ["!cancel_task", "wait_tasks", {"task_ids": ["K501"], "timeout": "10m"}, "K501"],
        ]),
    );
    let r = |i: usize| &out["results"][i];
    assert_eq!(r(0)["final"], "completed", "{}", r(0));
    assert!(r(1)["pid"].is_u64(), "the wait child never ran: {}", r(1));
    assert_eq!(
        r(1)["gone"],
        true,
        "the cancelled wait child still runs: {}",
        r(1)
    );
    assert_eq!(r(1)["final"], "cancelled", "{}", r(1));
    assert!(asdo_children_with("K501").is_empty());
}

/// A wait_tasks call with a progressToken gets one notifications/progress per task,
/// as each ends: two tasks, the second ending only after the first has, give
/// progress 1 then 2 of 2, each naming the task that ended, in the order `asdo wait`
/// reported them.
#[test]
fn progress_notifications_arrive_as_each_waited_task_ends() {
    let env = Env::new();
    let first_done = env.dir.0.join("first-done");
    let f = path_str(&first_done);
    let out = mcp_session(
        &env,
        json!([
            ["spawn_task", {"task_id": "Q1", "branch": "specs/1/Q1", "repo": "git@github.com:org/repo.git",
                "set": [format!("pod.command={{sh,-c,touch {f}; echo 'asdo: done aaa1111'}}")]}],
            ["spawn_task", {"task_id": "Q2", "branch": "specs/1/Q2", "repo": "git@github.com:org/repo.git",
                "set": [format!("pod.command={{sh,-c,while [ ! -e {f} ]; do sleep 0.1; done; echo 'asdo: done bbb2222'}}")]}],
            ["!progress", "wait_tasks", {"task_ids": ["Q1", "Q2"], "timeout": "120s"}],
        ]),
    );
    let r = |i: usize| &out["results"][i];
    assert_eq!(r(0)["is_error"], false, "{}", r(0));
    assert_eq!(r(1)["is_error"], false, "{}", r(1));
    let wait = r(2);
    assert_eq!(wait["structured"]["all_succeeded"], true, "{wait}");
    let order: Vec<&str> = wait["structured"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, ["Q1", "Q2"], "{wait}");
    let progress = wait["progress"].as_array().expect("no progress recorded");
    assert_eq!(progress.len(), 2, "{wait}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["progress"], (i + 1) as f64, "{p}");
        assert_eq!(p["total"], 2.0, "{p}");
        let message = p["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "{} of 2 ended; last: {} Succeeded",
                i + 1,
                order[i]
            )),
            "{message}"
        );
    }
}

/// answer_task patches the person's answer onto the pod, as `asdo answer` does; a
/// wrong answer is refused with the CLI's message before any API call.
#[test]
fn answer_task_writes_the_answer_on_the_pod() {
    let env = Env::new();
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "A1",
        "--branch",
        "specs/1/A1",
        "--repo",
        "git@github.com:org/repo.git",
        "--set",
        "pod.command={sh,-c,sleep 600}",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let before = env.server.requests().len();
    let out = mcp_session(
        &env,
        json!([
            ["answer_task", {"task_id": "A1", "request_id": "per_2b", "answers": ["always"]}],
            ["answer_task", {"task_id": "A1", "request_id": "que_1a", "answers": ["Postgres", "- the second"]}],
            ["answer_task", {"task_id": "A404", "request_id": "que_1a", "answers": ["x"]}],
        ]),
    );
    assert_refused(
        &out,
        0,
        "answers: a permission is answered with once or reject",
    );
    let r = |i: usize| &out["results"][i];
    assert_eq!(r(1)["is_error"], false, "{}", r(1));
    assert_eq!(r(1)["schema_error"], Value::Null, "{}", r(1));
    assert_eq!(r(1)["structured"]["request_id"], "que_1a");
    assert!(
        r(1)["text"].as_str().unwrap().contains("answered que_1a"),
        "{}",
        r(1)
    );
    assert_eq!(r(2)["is_error"], true, "{}", r(2));
    assert!(
        r(2)["text"].as_str().unwrap().contains("agent-a404"),
        "{}",
        r(2)
    );
    let pod = env.server.pod(NS, "agent-a1").expect("pod agent-a1");
    let ann = pod.metadata.annotations.unwrap_or_default();
    let value = ann
        .get(&format!("{}que_1a", asdo::task::ANN_ANSWER_PREFIX))
        .expect("no answer annotation");
    let value: Value = serde_json::from_str(value).unwrap();
    assert_eq!(value["answers"], json!([["Postgres"], ["- the second"]]));
    // One patch for the answer given, one for the unknown task; none for the refusal.
    let patches: Vec<(String, u16)> = env.server.requests()[before..]
        .iter()
        .filter(|q| q.method == "PATCH")
        .map(|q| (q.path.clone(), q.status))
        .collect();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    assert_eq!(
        patches,
        [
            (format!("{pods}/agent-a1"), 200),
            (format!("{pods}/agent-a404"), 404)
        ]
    );
}

/// `asdo --runtime local mcp`, driven by the official MCP Python SDK: the child asdo of
/// every tool gets `--runtime=local`, so spawn_task starts a local task (the real
/// opencode in bubblewrap, the scripted model), wait_tasks follows it to its end, and
/// task_status, list_tasks and task_logs read it back from the same state directory, each
/// result the CLI's task object (namespace `local`), valid against the schema, and
/// send_message is told the task has ended, by the local runtime's words. No fake API
/// server and no kubeconfig: a child that fell back to a cluster would fail.
#[test]
fn python_mcp_sdk_drives_asdo_mcp_on_the_local_runtime() {
    use crate::agent_fixture::{BRANCH, Fixture};
    use crate::runtimes::{local_vars, model};

    let f = Fixture::new("mcp-local");
    let state = f.path("state");
    let store = asdo::runtime::local::Store {
        root: state.clone(),
    };
    let model = model(&store.task("M801").workspace());
    let steps = json!([
        ["spawn_task", {"task_id": "M801", "branch": BRANCH, "repo": f.repo_url(),
            "prompt": "Add a greeting file", "model": "stub/stub-model"}],
        ["wait_tasks", {"task_ids": ["M801"], "timeout": "5m"}],
        ["task_status", {"task_id": "M801"}],
        ["list_tasks", {}],
        ["task_logs", {"task_id": "M801", "tail": 5}],
        ["task_status", {"task_id": "M999"}],
        ["send_message", {"task_id": "M801", "message": "one more thing"}],
    ]);
    let steps_file = f.path("mcp-steps.json");
    std::fs::write(&steps_file, steps.to_string()).unwrap();
    let mut c = client_command(
        "mcp_client.py",
        &steps_file,
        &["--runtime".into(), "local".into(), "mcp".into()],
    );
    let vars = local_vars(&f, &state, &model);
    isolate(&mut c);
    c.envs(vars.iter().map(|(k, v)| (k, v))).env(
        "ASDO_MCP_SERVER_ENV",
        vars.iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let out = client_summary(c, Duration::from_secs(600));
    let r = |i: usize| &out["results"][i];
    for i in 0..5 {
        assert_eq!(r(i)["is_error"], false, "call {i}: {}", r(i));
        assert_eq!(r(i)["schema_error"], Value::Null, "call {i}: {}", r(i));
        assert_eq!(r(i)["task_schema_error"], Value::Null, "call {i}: {}", r(i));
    }
    let sha = f.remote_branch(BRANCH).expect("the task pushed its branch");
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");
    let spawned = &r(0)["structured"];
    assert_eq!(spawned["id"], "M801", "{spawned}");
    assert_eq!(spawned["namespace"], "local", "{spawned}");
    assert_eq!(r(1)["structured"]["all_succeeded"], true, "{}", r(1));
    let ended = &r(1)["structured"]["tasks"][0];
    assert_eq!(ended["phase"], "Succeeded", "{ended}");
    assert_eq!(ended["commit"], sha.as_str(), "{ended}");
    let status = &r(2)["structured"];
    assert_eq!(status["id"], "M801", "{status}");
    assert_eq!(status["namespace"], "local", "{status}");
    assert_eq!(status["status"], "Succeeded", "{status}");
    assert_eq!(status["exit_code"], 0, "{status}");
    assert_eq!(status["commit"], sha.as_str(), "{status}");
    assert_eq!(r(3)["structured"]["tasks"][0]["id"], "M801", "{}", r(3));
    assert!(
        r(4)["structured"]["log"]
            .as_str()
            .unwrap()
            .contains(&format!("asdo: done {sha}")),
        "{}",
        r(4)
    );
    assert_eq!(r(5)["is_error"], true, "{}", r(5));
    assert!(
        r(5)["text"]
            .as_str()
            .unwrap()
            .contains("no local task M999"),
        "{}",
        r(5)
    );
}
