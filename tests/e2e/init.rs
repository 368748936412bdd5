//! `asdo init opencode`, then the real OpenCode (1.18.33) reading what it wrote: it
//! connects to `asdo mcp` as an MCP client and lists the asdo subagent.

use std::process::Command;
use std::time::Duration;

use crate::agent_fixture::opencode_bin;
use crate::common::*;

fn init(env: &Env, dir: &std::path::Path) -> Run {
    env.asdo(&[
        "init",
        "opencode",
        "--dir",
        path_str(dir),
        "--command",
        env!("CARGO_BIN_EXE_asdo"),
        "--kubeconfig",
        path_str(&env.kubeconfig),
        "mcp",
    ])
}

fn opencode(dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Run {
    let mut c = Command::new(opencode_bin());
    c.args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("PWD", dir)
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1");
    run_with_timeout(c, Duration::from_secs(180))
}

#[test]
fn init_opencode_registers_asdo_mcp_and_real_opencode_connects() {
    let env = Env::new();
    let project = TempDir::new("init");
    let home = TempDir::new("init-home");
    let r = init(&env, &project.0);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("created") && r.stdout.contains("asdo.md"),
        "{r:?}"
    );
    let again = init(&env, &project.0);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout.matches("unchanged").count(), 2, "{again:?}");

    let mcp = opencode(&project.0, &home.0, &["mcp", "list"]);
    let text = format!("{}{}", mcp.stdout, mcp.stderr);
    assert!(
        text.contains("asdo") && text.contains("connected"),
        "{mcp:?}"
    );
    let agents = opencode(&project.0, &home.0, &["agent", "list"]);
    assert!(
        format!("{}{}", agents.stdout, agents.stderr).contains("asdo"),
        "{agents:?}"
    );
}

#[test]
fn init_opencode_merges_into_a_users_config_and_refuses_a_different_entry() {
    let env = Env::new();
    let project = TempDir::new("init-merge");
    let config = project.0.join("opencode.json");
    let user = "{\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"other\": {\"type\": \"remote\", \"url\": \"http://127.0.0.1:9\"}\n  }\n}\n";
    std::fs::write(&config, user).unwrap();
    let r = init(&env, &project.0);
    assert_eq!(r.code, 0, "{r:?}");
    let merged = std::fs::read_to_string(&config).unwrap();
    assert!(merged.starts_with("{\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"asdo\": {"));
    assert!(merged.ends_with(
        "\n    \"other\": {\"type\": \"remote\", \"url\": \"http://127.0.0.1:9\"}\n  }\n}\n"
    ));

    let other =
        "{\"mcp\": {\"asdo\": {\"type\": \"local\", \"command\": [\"/opt/asdo\", \"mcp\"]}}}\n";
    std::fs::write(&config, other).unwrap();
    let r = init(&env, &project.0);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("already set to something else") && r.stderr.contains("/opt/asdo"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        other,
        "left alone"
    );
}

/// The real OpenCode as the MCP client: the scripted model calls `asdo_spawn_task`,
/// and the pod appears in the fake API server.
#[test]
fn real_opencode_spawns_a_task_through_asdo_mcp() {
    use crate::support::model_server::{ModelServer, Step};
    let env = Env::new();
    let project = TempDir::new("init-run");
    let home = TempDir::new("init-run-home");
    assert_eq!(init(&env, &project.0).code, 0);
    let model = ModelServer::start(vec![
        Step::tool(
            "asdo_spawn_task",
            serde_json::json!({"task_id": "T401", "branch": "specs/1/T401-async",
                "repo": "git@github.com:org/repo.git", "prompt": "Add a greeting"}),
        ),
        Step::text("Spawned T401."),
    ]);
    let mut c = Command::new(opencode_bin());
    c.args(["run", "-m", "stub/stub-model", "Run T401 through asdo"])
        .current_dir(&project.0)
        .env("HOME", &home.0)
        .env("PWD", &project.0)
        .env("OPENCODE_CONFIG_CONTENT", model.opencode_config())
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1");
    let r = run_with_timeout(c, Duration::from_secs(240));
    assert_eq!(r.code, 0, "{r:?}");
    let pod = env
        .server
        .pod(NS, "agent-t401")
        .expect("the pod spawn_task created");
    assert_eq!(pod.metadata.labels.unwrap()["task-id"], "T401");
    let turns = model.turns();
    assert!(
        turns[0].tools().iter().any(|t| t == "asdo_spawn_task"),
        "{:?}",
        turns[0].tools()
    );
    // The tool's result reached the model.
    assert!(
        turns[1].text().contains("task T401: pod agent-t401"),
        "{}",
        turns[1].text()
    );
}

/// opencode.json holds provider keys: a mode-600 file stays 600 (and its owner), CRLF
/// line ends stay CRLF (the inserted line too), and a symlinked config is written
/// through to its target instead of being replaced by a plain file.
#[test]
fn init_opencode_keeps_a_secret_configs_mode_line_ends_and_symlink() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let project = TempDir::new("init-secret");
    let config = project.0.join("opencode.json");
    let user = "{\r\n  \"provider\": {\"openai\": {\"options\": {\"apiKey\": \"sk-secret\"}}},\r\n  \"mcp\": {\r\n    \"other\": {\"type\": \"remote\", \"url\": \"http://127.0.0.1:9\"}\r\n  }\r\n}\r\n";
    std::fs::write(&config, user).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = std::fs::metadata(&config).unwrap().uid();
    let r = init(&env, &project.0);
    assert_eq!(r.code, 0, "{r:?}");
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "mode {:o}", meta.mode() & 0o777);
    assert_eq!(meta.uid(), owner);
    let merged = std::fs::read_to_string(&config).unwrap();
    assert!(merged.contains("\"asdo\""), "{merged}");
    assert_eq!(
        merged.matches('\n').count(),
        merged.matches("\r\n").count(),
        "every line ends CRLF: {merged:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&project.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.') && n.contains("opencode.json"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A symlinked config (dotfiles repos do this): the target gets the entry.
    let project = TempDir::new("init-link");
    let dotfiles = TempDir::new("init-dotfiles");
    let real = dotfiles.0.join("opencode.json");
    std::fs::write(&real, "{\"theme\": \"dark\"}\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = project.0.join("opencode.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let r = init(&env, &project.0);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_symlink(),
        "the link was replaced by a plain file"
    );
    let through = std::fs::read_to_string(&real).unwrap();
    assert!(
        through.contains("\"asdo\"") && through.contains("\"theme\""),
        "{through}"
    );
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o640);
}
