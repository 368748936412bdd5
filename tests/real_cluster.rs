//! The same flows as tests/e2e, against a real cluster (kind, k3d, …). Ignored by
//! default: `cargo test --test real_cluster -- --ignored --test-threads 1` with
//! KUBECONFIG pointing at a disposable cluster. Task pods run busybox, so the
//! cluster needs to pull `busybox:1.36`.

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
