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
    let mut c = Command::new(test_python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/mcp_client.py"))
        .arg(calls.to_string())
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_asdo"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("mcp");
    isolate(&mut c);
    let r = run_with_timeout(c, Duration::from_secs(240));
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

    // spawn_task created the pod in the fake API server, as `asdo spawn` does.
    assert_eq!(ok(0)["structured"]["pod"], "agent-t301");
    assert!(
        ok(0)["text"]
            .as_str()
            .unwrap()
            .contains("pod/agent-t301 created")
    );
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
    let tasks = &ok(5)["structured"]["tasks"];
    assert_eq!(tasks[0]["task_id"], "T301");
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
    err(9, "agent-t999");
    err(10, "invalid duration");
    err(11, "phase Succeeded");
    assert_eq!(ok(12)["structured"]["pods"], json!(["agent-t301"]));
    assert_eq!(ok(13)["structured"]["pods"], json!(["agent-t301"]));
    assert_eq!(ok(14)["structured"]["tasks"], json!([]));
    assert!(env.server.pod(NS, "agent-t301").is_none());
}
