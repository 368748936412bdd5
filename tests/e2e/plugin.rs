//! asdo as a kubectl plugin: the binary linked as `kubectl-asdo` (as krew installs it)
//! on PATH, run by the real kubectl, against the fake API server.

use std::process::Command;
use std::time::Duration;

use crate::common::{Env, TempDir, isolate, path_str, run_with_timeout};

/// A PATH with only a `kubectl-asdo` link to the built asdo in front of the usual one.
fn plugin_path(dir: &TempDir) -> String {
    let link = dir.0.join("kubectl-asdo");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_asdo"), &link).unwrap();
    format!(
        "{}:{}",
        path_str(&dir.0),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn kubectl(path: &str, args: &[&str]) -> crate::common::Run {
    let mut c = Command::new("kubectl");
    c.args(args).env("PATH", path);
    isolate(&mut c);
    run_with_timeout(c, Duration::from_secs(60))
}

#[test]
fn kubectl_finds_and_runs_asdo_as_a_plugin() {
    let env = Env::new();
    let bin = TempDir::new("plugin");
    let path = plugin_path(&bin);

    let r = kubectl(&path, &["plugin", "list"]);
    assert!(r.stdout.contains("kubectl-asdo"), "{r:?}");

    // Help names the plugin form, so copied commands work.
    let r = kubectl(&path, &["asdo", "--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("Usage: kubectl asdo [OPTIONS] <COMMAND>"),
        "{r:?}"
    );

    // A real spawn through kubectl, seen by kubectl as an independent client.
    let kc = path_str(&env.kubeconfig);
    let r = kubectl(
        &path,
        &[
            "asdo",
            "--kubeconfig",
            kc,
            "spawn",
            "--task-id",
            "T301",
            "--branch",
            "specs/001-auth/T301-async",
            "--repo",
            "git@github.com:org/repo.git",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t301 created\n");
    let pod = env.kubectl_pod("agent-t301");
    assert_eq!(pod["metadata"]["labels"]["task-id"], "T301");

    let r = kubectl(&path, &["asdo", "--kubeconfig", kc, "list", "-o", "name"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t301\n");

    // Bad input still exits 2, pointing at the plugin's own help.
    let r = kubectl(&path, &["asdo", "spawn", "--no-such-flag"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("See 'kubectl asdo spawn --help'"),
        "{r:?}"
    );
}
