//! `asdo attach` and `asdo send` against task pods in the fake API server, reached
//! through its pods/portforward (tests/support/fake_apiserver/portforward.rs), with
//! the real `opencode serve` as the pod's server.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::agent_fixture::opencode_dir;
use crate::common::*;

/// The pod as `asdo spawn` renders it, then run as `script` with the real opencode on
/// PATH, a scratch HOME, and the `opencode` containerPort declared (the fake maps it
/// to a free local port, `$FAKE_KUBELET_PORT_4096`).
pub(crate) fn server_pod(env: &Env, id: &str, script: &str) -> Pod {
    let home = env.dir.0.join(format!("home-{id}"));
    std::fs::create_dir_all(&home).unwrap();
    let path = format!(
        "{}:{}",
        opencode_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let values = env.write(
        &format!("server-{id}.yaml"),
        &json!({"pod": {
        "command": ["sh", "-c", script],
        "env": [
            {"name": "HOME", "value": home},
            {"name": "PATH", "value": path},
            {"name": "OPENCODE_DISABLE_MODELS_FETCH", "value": "1"},
            {"name": "OPENCODE_DISABLE_AUTOUPDATE", "value": "1"},
        ]}})
        .to_string(),
    );
    rendered_pod(env, id, &values)
}

/// The task pod `asdo spawn --dry-run` renders from the values file `values` (the
/// password from the chart's Secret, the `opencode` containerPort), in the test namespace.
pub(crate) fn rendered_pod(env: &Env, id: &str, values: &std::path::Path) -> Pod {
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        id,
        "--branch",
        "specs/1/x",
        "--repo",
        "git@github.com:o/r.git",
        "-f",
        path_str(values),
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut pod: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let c = &mut pod["spec"]["containers"][0];
    if c["ports"].is_null() {
        c["ports"] = json!([{"name": "opencode", "containerPort": 4096}]);
    }
    pod["metadata"]["namespace"] = json!(NS);
    serde_json::from_value(pod).unwrap()
}

pub(crate) const SERVE: &str =
    "exec opencode serve --hostname 127.0.0.1 --port \"$FAKE_KUBELET_PORT_4096\" --print-logs";

#[test]
fn attach_print_url_serves_the_api_with_the_password_only() {
    attach_print_url(Env::new());
}

/// The same over TLS: asdo's API requests go over HTTP/2, the port-forward WebSocket
/// upgrades over HTTP/1.1 connections of their own (HTTP/2 has no Upgrade).
#[test]
fn attach_print_url_over_tls_upgrades_on_http1_beside_http2() {
    let env = Env::tls(None);
    attach_print_url(env);
}

fn attach_print_url(env: Env) {
    env.server.insert_pod(server_pod(&env, "T201", SERVE));
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t201", "Running", Duration::from_secs(30))
    );
    let mut child = env.start(&["attach", "T201", "--print-url"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    let authority = url
        .strip_prefix("http://127.0.0.1:")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("not a local URL: {url:?}"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use asdo::opencode::{Client, Error};
        for wrong in [None, Some("not-the-password")] {
            let r = Client::new(&authority, wrong).healthy().await;
            assert!(
                matches!(r, Err(Error::Status { status: 401, .. })),
                "{wrong:?}: {r:?}"
            );
        }
        let c = Client::new(&authority, Some(PASSWORD));
        assert!(c.healthy().await.unwrap());
        // The whole API, not just health: a session made through the forward.
        let s = c.create_session("through the forward").await.unwrap();
        assert!(s.id.starts_with("ses"), "{}", s.id);
        assert!(c.messages(&s.id).await.unwrap().is_empty());
    });

    // Ctrl-C ends the forward cleanly.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let run = wait_output(child, Duration::from_secs(30));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("password from Secret"), "{run:?}");
    assert!(!run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
    assert!(env.count("GET", "/pods/agent-t201/portforward") >= 3);
    if env.server.url().starts_with("https://") {
        let (h2_conns, h2_streams) = env.server.h2_counts();
        assert!(h2_streams >= 1, "API requests over HTTP/2");
        assert!(
            env.server.accepted_connections() > h2_conns,
            "the upgrades had HTTP/1.1 connections of their own"
        );
    }
}

#[test]
fn attach_and_send_to_a_finished_pod_fail_with_its_phase() {
    let env = Env::new();
    env.spawn_script("T202", "echo done");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t202", "Succeeded", Duration::from_secs(30))
    );
    for args in [
        vec!["attach", "T202", "--print-url"],
        vec!["send", "T202", "one more thing"],
    ] {
        let r = env.asdo(&args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        let line = r.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{r:?}");
        assert!(
            line.contains("phase Succeeded") && line.contains("asdo logs T202"),
            "{r:?}"
        );
    }
    assert_eq!(env.count("GET", "/portforward"), 0);
}

#[test]
fn attach_without_local_opencode_says_how_to_install_it() {
    let env = Env::new();
    let mut c = env.cmd(&["attach", "T203"]);
    c.env("PATH", "/nonexistent");
    let r = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("npm install -g opencode-ai@"), "{r:?}");
    assert!(env.server.requests().is_empty(), "checked before any call");
}

#[test]
fn bad_send_input_is_refused_before_any_call() {
    let env = Env::new();
    for (args, want) in [
        (vec!["send", "T204", "  "], "the message is empty"),
        (
            vec!["send", "T204", "--file", "/nonexistent/msg.md"],
            "cannot read --file",
        ),
        (vec!["send", "bad_id!", "hi"], "invalid task id"),
        (
            vec!["attach", "T204", "--password-file", "/nonexistent/pw"],
            "cannot read --password-file",
        ),
    ] {
        let r = env.asdo(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {r:?}");
    }
    assert!(env.server.requests().is_empty());
}

/// A task pod running the real agent (this build's `asdo agent`, the real opencode, the
/// scripted model server), its first turn held on `gate` by a bash step: a message sent
/// now is answered by writing second.txt and "Wrote first.txt and second.txt.".
pub(crate) struct SteeredAgent {
    pub f: crate::agent_fixture::Fixture,
    pub gate: std::path::PathBuf,
    pub model: crate::support::model_server::ModelServer,
}

/// Spawns that agent as task `id` ("Write first.txt") and waits until its log announces
/// its OpenCode session, so a message can be sent into it.
pub(crate) fn steerable_agent(env: &Env, id: &str, tag: &str) -> SteeredAgent {
    use crate::agent_fixture::{BRANCH, Fixture};
    use crate::support::model_server::{ModelServer, steered_script};

    let f = Fixture::new(tag);
    let gate = f.path("gate");
    let ws = f.workspace();
    // The first turn is held until the test has sent its message.
    let model = ModelServer::start(steered_script(&ws, &gate));
    let pod_env = json!([
        {"name": "HOME", "value": f.path("home")},
        {"name": "PATH", "value": format!("{}:{}", opencode_dir().display(), f.path_var())},
        {"name": "GIT_CONFIG_NOSYSTEM", "value": "1"},
        {"name": "ASDO_KILL_GRACE", "value": "1"},
        {"name": "ASDO_OPENCODE_PORT", "value": "$(FAKE_KUBELET_PORT_4096)"},
        {"name": "OPENCODE_CONFIG_CONTENT", "value": model.opencode_config()},
        {"name": "OPENCODE_DISABLE_MODELS_FETCH", "value": "1"},
    ]);
    let values = env.write(
        &format!("steer-{id}.yaml"),
        &json!({
            "pod": {"command": [env!("CARGO_BIN_EXE_asdo"), "agent"], "env": pod_env},
            "task": {"contextDir": ws},
        })
        .to_string(),
    );
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        id,
        "--branch",
        BRANCH,
        "--repo",
        &f.repo_url(),
        "--prompt",
        "Write first.txt",
        "--model",
        "stub/stub-model",
        "-f",
        path_str(&values),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    // The agent announces its session in the log once it exists.
    assert!(
        eventually(Duration::from_secs(180), || {
            env.asdo(&["logs", id, "--no-follow"])
                .stdout
                .contains("asdo: opencode session ses")
        }),
        "no session: {:?}",
        env.asdo(&["logs", id, "--no-follow"])
    );
    SteeredAgent { f, gate, model }
}

impl SteeredAgent {
    /// Task `id` ends done, first.txt and second.txt are on the pushed branch, and the
    /// model saw the steering message before it wrote second.txt.
    pub(crate) fn assert_steered(&self, env: &Env, id: &str) {
        use crate::agent_fixture::BRANCH;
        let w = env.asdo(&["wait", id, "--timeout", "5m"]);
        assert_eq!(
            w.code,
            0,
            "{w:?}\n{:?}",
            env.asdo(&["logs", id, "--no-follow"])
        );
        assert_eq!(self.f.remote_file(BRANCH, "first.txt"), "first");
        assert_eq!(self.f.remote_file(BRANCH, "second.txt"), "second");
        let turns = self.model.turns();
        let wrote_second = turns
            .iter()
            .position(|t| t.text().contains("Also write second.txt"))
            .expect("the model saw the second message");
        assert!(
            wrote_second <= 2,
            "seen at turn {wrote_second} of {}",
            turns.len()
        );
    }
}

/// The real agent in a pod: `asdo send` steers it while its first turn is held on a
/// gate, and the file the second message asks for is on the pushed branch.
#[test]
fn send_steers_a_running_agent_and_its_file_is_pushed() {
    let env = Env::new();
    let agent = steerable_agent(&env, "T210", "e2e-steer");

    let mut send = env.start(&["send", "T210", "Also write second.txt", "--timeout", "5m"]);
    let mut stderr = BufReader::new(send.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("sent to task T210 (session ses"),
        "{line:?}"
    );
    std::fs::write(&agent.gate, "").unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    let out = wait_output(send, Duration::from_secs(300));
    assert_eq!(out.code, 0, "{out:?}\n{rest}");
    assert!(out.stdout.contains("second.txt"), "{out:?}");
    assert!(!out.stdout.contains(PASSWORD) && !rest.contains(PASSWORD));

    agent.assert_steered(&env, "T210");
}

#[test]
fn doctor_checks_the_rights_attach_and_send_need() {
    let env = Env::new();
    let r = env.asdo(&["doctor"]);
    for want in [
        "may create pods/portforward in",
        "may get pods/portforward in",
        "may get secrets agentic-sdlc-orchestrator-dev-server-password in",
    ] {
        assert!(r.stdout.contains(want), "{want}: {r:?}");
    }
}
