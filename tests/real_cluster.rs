//! The same flows as tests/e2e, against a real cluster (kind, k3d, …). Ignored by
//! default: `cargo test --test real_cluster -- --ignored --test-threads 1` with
//! KUBECONFIG pointing at a disposable cluster. Task pods run busybox, so the
//! cluster needs to pull `busybox:1.36`. This is where real Kubernetes is tested: the
//! `real-cluster` job of .github/workflows/ci.yml runs it on kind, with the dev release
//! installed by helm and the agent image built and loaded.
//!
//! The agent test (a real task pod: the agent image, the real OpenCode, the scripted
//! model server on this machine, a git remote in a directory the nodes mount) needs:
//!   ASDO_REAL_AGENT_IMAGE  the agent image, loadable by the nodes (kind load docker-image)
//!   ASDO_REAL_HOST         this machine's address as pods see it (kind: the network gateway)
//!   ASDO_REAL_REMOTE_DIR   a directory mounted at the same path on every node
//! and the doctor test the dev release installed (`helm upgrade --install … -n agent-orchestrator-dev`).

#[path = "support/model_server/mod.rs"]
mod model_server;

use std::path::Path;
use std::process::{Command, Output};

struct Namespace(String);

impl Namespace {
    fn create() -> Namespace {
        let ns = format!("asdo-e2e-{}", std::process::id());
        kubectl(&["create", "namespace", &ns]);
        kubectl(&[
            "create",
            "secret",
            "generic",
            "agentic-sdlc-orchestrator-dev-server-password",
            "--from-literal=server-password=real-cluster-test",
            "-n",
            &ns,
        ]);
        Namespace(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.0, "--wait=false"])
            .output();
    }
}

fn kubectl(args: &[&str]) -> Output {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl on PATH");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn asdo(ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asdo"))
        .args(["-n", ns])
        .args(args)
        .env_remove("ENVIRONMENT")
        .env_remove("NAMESPACE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: see the top of tests/real_cluster.rs (the ci.yml real-cluster job sets it)")
    })
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(ns: &Namespace, id: &str, script: &str) {
    let values = std::env::temp_dir().join(format!("asdo-real-{id}-{}.yaml", std::process::id()));
    std::fs::write(
        &values,
        format!("pod:\n  command: [\"sh\", \"-c\", {script:?}]\n"),
    )
    .unwrap();
    let (code, out, err) = asdo(
        &ns.0,
        &[
            "spawn",
            "--task-id",
            id,
            "--branch",
            &format!("specs/e2e/{id}-async"),
            "--repo",
            "https://github.com/org/repo.git",
            "--image",
            "busybox:1.36",
            "-f",
            values.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
#[ignore = "needs a real cluster (KUBECONFIG)"]
fn spawn_logs_wait_list_cleanup() {
    let ns = Namespace::create();
    spawn(&ns, "R1", "echo hello; sleep 2; echo bye; exit 3");
    let (code, out, err) = asdo(&ns.0, &["logs", "R1"]);
    assert_eq!((code, out.as_str()), (3, "hello\nbye\n"), "{err}");

    let (code, out, _) = asdo(&ns.0, &["list", "-o", "name"]);
    assert_eq!((code, out.as_str()), (0, "pod/agent-r1\n"));

    let (code, out, _) = asdo(&ns.0, &["wait", "R1", "--timeout", "60s"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("R1 Failed exit=3"), "{out}");

    let (code, out, _) = asdo(&ns.0, &["cleanup"]);
    assert_eq!((code, out.as_str()), (0, "pod/agent-r1 deleted\n"));
}

#[test]
#[ignore = "needs a real cluster (KUBECONFIG)"]
fn logs_survive_a_long_silence() {
    // Long enough for an idle proxy between you and the API server to matter where one exists.
    let ns = Namespace::create();
    spawn(&ns, "R2", "echo before; sleep 90; echo after");
    let (code, out, err) = asdo(&ns.0, &["logs", "R2"]);
    assert_eq!((code, out.as_str()), (0, "before\nafter\n"), "{err}");
}

/// A real task pod: the agent image runs the real OpenCode against the scripted model
/// server on this machine, commits and pushes to a git remote the node mounts; asdo
/// spawns it, follows its log, waits for it, diffs its result in a clone, cleans it up.
#[test]
#[ignore = "needs a real cluster, the agent image and ASDO_REAL_* (see the top of this file)"]
fn agent_task_with_a_scripted_model_spawn_logs_wait_diff_cleanup() {
    use model_server::{ModelServer, Step};
    let image = need("ASDO_REAL_AGENT_IMAGE");
    let host = need("ASDO_REAL_HOST");
    let remotes = std::path::PathBuf::from(need("ASDO_REAL_REMOTE_DIR"));
    let ns = Namespace::create();

    // The remote: a bare repository with one commit on main, writable by the agent's uid.
    let base = remotes.join(&ns.0);
    let seed = base.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&base, &["init", "--bare", "-b", "main", "repo.git"]);
    git(&seed, &["init", "-b", "main"]);
    std::fs::write(seed.join("README.md"), "app\n").unwrap();
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-m", "init"]);
    let remote = base.join("repo.git");
    git(&seed, &["push", remote.to_str().unwrap(), "main"]);
    let chmod = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(chmod.success());
    let repo_url = format!("file://{}", remote.display());

    let model = ModelServer::start_on(
        "0.0.0.0",
        Some(&host),
        vec![
            Step::write(Path::new("/workspace/hello.txt"), "hello\n"),
            Step::text("Wrote hello.txt."),
        ],
    );
    let mount = remotes.display().to_string();
    let values = serde_json::json!({
        "pod": {
            "extraVolumes": [{"name": "remotes", "hostPath": {"path": mount, "type": "Directory"}}],
            "extraVolumeMounts": [{"name": "remotes", "mountPath": mount}],
            "env": [
                {"name": "OPENCODE_CONFIG_CONTENT", "value": model.opencode_config()},
                {"name": "OPENCODE_DISABLE_MODELS_FETCH", "value": "1"},
                // The remote belongs to the runner's user, not the agent's uid.
                {"name": "GIT_CONFIG_COUNT", "value": "1"},
                {"name": "GIT_CONFIG_KEY_0", "value": "safe.directory"},
                {"name": "GIT_CONFIG_VALUE_0", "value": "*"}
            ]
        }
    });
    let file = std::env::temp_dir().join(format!("asdo-real-agent-{}.json", std::process::id()));
    std::fs::write(&file, values.to_string()).unwrap();
    let branch = "specs/e2e/R3-async";
    let (code, out, err) = asdo(
        &ns.0,
        &[
            "spawn",
            "--task-id",
            "R3",
            "--branch",
            branch,
            "--repo",
            &repo_url,
            "--image",
            &image,
            "--prompt",
            "Add a greeting file",
            "--model",
            "stub/stub-model",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = asdo(&ns.0, &["logs", "R3", "--start-timeout", "5m"]);
    assert_eq!(code, 0, "{out}{err}");
    let sha = git(&base, &["--git-dir", "repo.git", "rev-parse", branch]);
    let sha = sha.trim();
    assert!(out.contains(&format!("asdo: done {sha}")), "{out}");

    let (code, out, err) = asdo(&ns.0, &["wait", "R3", "--timeout", "5m"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("R3 Succeeded exit=0") && out.contains(sha),
        "{out}"
    );

    let clone = base.join("clone");
    git(
        &base,
        &["clone", remote.to_str().unwrap(), clone.to_str().unwrap()],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_asdo"))
        .args(["-n", &ns.0, "diff", "R3", "--stat"])
        .current_dir(&clone)
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stat}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stat.contains("hello.txt"), "{stat}");

    let (code, out, _) = asdo(&ns.0, &["cleanup"]);
    assert_eq!((code, out.as_str()), (0, "pod/agent-r3 deleted\n"));
    let _ = std::fs::remove_file(&file);
}

/// The dev release as helm installs it: asdo doctor finds the namespace, the chart's
/// ConfigMap and password Secret, and the RBAC it needs (as cluster admin here).
#[test]
#[ignore = "needs a real cluster with the dev release installed (see the top of this file)"]
fn doctor_passes_against_the_dev_release_installed_by_helm() {
    let out = Command::new(env!("CARGO_BIN_EXE_asdo"))
        .args(["doctor", "-e", "dev"])
        .env_remove("NAMESPACE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ConfigMap agentic-sdlc-orchestrator-dev-config exists"),
        "{text}"
    );
}
