//! One scenario, both runtimes, so the two never drift (issue 25): spawn → logs → wait →
//! list → status → cleanup, with the real opencode 1.18.33 and the scripted model server,
//! run once on the local runtime (`--runtime local`: detached runner, bubblewrap, a local
//! state directory) and once against the fake API server, whose process-backed kubelet
//! runs the same `asdo agent` as the task pod's command. Both must print the same task
//! object fields and end with the same exit codes.
//!
//! Here rather than in tests/local.rs: the fake API server and its kubelet live in this
//! binary (tests/local.rs runs without any), and the local runtime needs nothing more
//! than a state directory, so this is the one binary that can drive both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent_fixture::{BRANCH, Fixture, opencode_dir};
use crate::common::*;
use crate::support::model_server::{ModelServer, Step};

const ID: &str = "T301";

/// Where the scenario runs: how `asdo` is called, and the extra spawn flags.
enum Runtime {
    /// The fake API server; the task pod's values file.
    Fake { env: Env, values: PathBuf },
    /// `--runtime local` with exactly these variables (no kubeconfig anywhere).
    Local { vars: Vec<(String, String)> },
}

impl Runtime {
    fn run(&self, args: &[&str]) -> Run {
        let c = match self {
            Runtime::Fake { env, .. } => env.cmd(args),
            Runtime::Local { vars } => local_cmd(vars, args),
        };
        // The real opencode on a loaded 2-core machine can take minutes.
        run_with_timeout(c, Duration::from_secs(300))
    }

    fn spawn_flags(&self) -> Vec<String> {
        match self {
            Runtime::Fake { values, .. } => vec!["-f".into(), path_str(values).into()],
            Runtime::Local { .. } => vec![],
        }
    }
}

/// `asdo --runtime local <args>` with exactly `vars` (no kubeconfig anywhere), in /.
pub(crate) fn local_cmd(vars: &[(String, String)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_asdo"));
    c.current_dir("/")
        .args(["--runtime", "local"])
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)));
    c
}

/// The variables a local task runs the real opencode with against `model`, its state in
/// `state` (`ASDO_STATE_DIR`), HOME in the fixture.
pub(crate) fn local_vars(f: &Fixture, state: &Path, model: &ModelServer) -> Vec<(String, String)> {
    std::fs::create_dir_all(f.path("home")).unwrap();
    [
        (
            "PATH",
            format!(
                "{}:{}",
                opencode_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        ),
        ("HOME", f.path("home").display().to_string()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("NO_COLOR", "1".into()),
        ("OPENCODE_CONFIG_CONTENT", model.opencode_config()),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
        ("ASDO_STATE_DIR", state.display().to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

/// The model writes hello.txt in the task's workspace, then says so.
pub(crate) fn model(workspace: &Path) -> ModelServer {
    ModelServer::start(vec![
        Step::write(&workspace.join("hello.txt"), "hello\n"),
        Step::text("Wrote hello.txt."),
    ])
}

/// The fields both runtimes must agree on, from one task object.
fn shared(t: &Value) -> Value {
    let keys = [
        "id",
        "pod",
        "phase",
        "reason",
        "status",
        "exit_code",
        "branch",
        "repo",
        "commit",
        "failed_step",
        "last_step",
        "last_marker",
        "files",
        "tokens_in",
        "tokens_out",
        "log_read",
    ];
    Value::Object(
        keys.iter()
            .map(|k| (k.to_string(), t[*k].clone()))
            .collect(),
    )
}

fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// The scenario; panics on any difference from what both runtimes must do.
fn scenario(rt: &Runtime, f: &Fixture, scratch: &Path) {
    let repo = f.repo_url();
    let mut spawn: Vec<String> = [
        "spawn",
        "--task-id",
        ID,
        "--branch",
        BRANCH,
        "--repo",
        &repo,
        "--prompt",
        "Add a greeting file",
        "--model",
        "stub/stub-model",
    ]
    .map(String::from)
    .to_vec();
    spawn.extend(rt.spawn_flags());
    let spawn: Vec<&str> = spawn.iter().map(String::as_str).collect();
    let r = rt.run(&spawn);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t301 created\n", "{r:?}");

    // logs follows the task to its end and says how it ended.
    let r = rt.run(&["logs", ID]);
    assert_eq!(r.code, 0, "{r:?}");
    let sha = f.remote_branch(BRANCH).expect("branch pushed");
    assert_eq!(
        asdo::marker::last(&r.stdout),
        Some(asdo::marker::Marker::Done(sha.clone())),
        "{r:?}"
    );
    assert!(r.stdout.contains("\n· write hello.txt\n"), "{r:?}");
    assert!(
        r.stderr.contains("==> task T301: Succeeded, exit code 0"),
        "{r:?}"
    );
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");

    // wait, list and status print the same task object.
    let w = rt.run(&["wait", ID, "--timeout", "240s", "-o", "json"]);
    assert_eq!(w.code, 0, "{w:?}");
    assert_eq!(w.stdout.lines().count(), 1, "one object per line: {w:?}");
    let l = rt.run(&["list", "-o", "json"]);
    assert_eq!(l.code, 0, "{l:?}");
    let listed = json_of(&l);
    let listed = listed.as_array().expect("a list of tasks");
    assert_eq!(listed.len(), 1, "{l:?}");
    let s = rt.run(&["status", ID, "-o", "json"]);
    assert_eq!(s.code, 0, "{s:?}");
    let docs = [json_of(&w), listed[0].clone(), json_of(&s)];
    let want = json!({
        "id": ID,
        "pod": "agent-t301",
        "phase": "Succeeded",
        "reason": null,
        "status": "Succeeded",
        "exit_code": 0,
        "branch": BRANCH,
        "repo": repo,
        "commit": sha,
        "failed_step": null,
        "last_step": "says: Wrote hello.txt.",
        "last_marker": format!("asdo: done {sha}"),
        "files": 1,
        "tokens_in": 240,
        "tokens_out": 60,
        "log_read": true,
    });
    for t in &docs {
        assert_eq!(shared(t), want, "{t:#}");
        assert!(
            t["session_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("ses")),
            "{t:#}"
        );
        assert!(
            t["finished"].is_string() && t["started"].is_string(),
            "{t:#}"
        );
    }
    crate::support::task_schema::assert_valid(scratch, "runtimes", &docs);

    // cleanup removes the finished task; after it, the task is gone for every verb.
    let r = rt.run(&["cleanup"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t301 deleted"), "{r:?}");
    let l = rt.run(&["list", "-o", "json"]);
    assert_eq!(l.code, 0, "{l:?}");
    assert_eq!(json_of(&l), json!([]), "{l:?}");
    let s = rt.run(&["status", ID]);
    assert_eq!(s.code, 1, "{s:?}");
}

#[test]
fn one_scenario_on_the_fake_api_server() {
    let env = Env::new();
    let f = Fixture::new("rt-fake");
    let model = model(&f.workspace());
    let pod_env = json!([
        {"name": "HOME", "value": f.path("home")},
        {"name": "PATH", "value": format!("{}:{}", opencode_dir().display(), f.path_var())},
        {"name": "GIT_CONFIG_NOSYSTEM", "value": "1"},
        {"name": "ASDO_KILL_GRACE", "value": "1"},
        // Pods here are processes on one host: each opencode server on a free port.
        {"name": "ASDO_OPENCODE_PORT", "value": "0"},
        {"name": "OPENCODE_CONFIG_CONTENT", "value": model.opencode_config()},
        {"name": "OPENCODE_DISABLE_MODELS_FETCH", "value": "1"},
    ]);
    let values = env.write(
        "runtimes-values.yaml",
        &json!({
            "pod": {"command": [env!("CARGO_BIN_EXE_asdo"), "agent"], "env": pod_env},
            "task": {"contextDir": f.workspace()},
        })
        .to_string(),
    );
    let scratch = env.dir.0.clone();
    scenario(&Runtime::Fake { env, values }, &f, &scratch);
}

#[test]
fn one_scenario_on_the_local_runtime() {
    let f = Fixture::new("rt-local");
    let state = f.path("state");
    let store = asdo::runtime::local::Store {
        root: state.clone(),
    };
    let model = model(&store.task(ID).workspace());
    let vars = local_vars(&f, &state, &model);
    let scratch = f.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    scenario(&Runtime::Local { vars }, &f, &scratch);
}
