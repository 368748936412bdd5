//! What every end-to-end test needs: a fake API server with the chart's objects
//! in place, a kubeconfig pointing at it, and the real `asdo` binary to run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::support::FakeApiServer;

pub const NS: &str = "agent-orchestrator-dev";
pub const PASSWORD_SECRET: &str = "agentic-sdlc-orchestrator-dev-server-password";
/// A value no output may ever contain.
pub const PASSWORD: &str = "pw-0f1e2d3c-never-print-me";

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "asdo-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Env {
    pub server: FakeApiServer,
    pub dir: TempDir,
    pub kubeconfig: PathBuf,
}

/// Result of one asdo run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Env {
    /// The dev environment as the chart installs it: namespace and password Secret.
    pub fn new() -> Env {
        Env::with_server(FakeApiServer::start())
    }

    /// The same, served over TLS (HTTP/2 by ALPN; see FakeApiServer::start_tls).
    pub fn tls(max_concurrent_streams: Option<u32>) -> Env {
        Env::with_server(FakeApiServer::start_tls(max_concurrent_streams))
    }

    fn with_server(server: FakeApiServer) -> Env {
        server.create_namespace(NS);
        server.put_secret(NS, PASSWORD_SECRET, &[("server-password", PASSWORD)]);
        let dir = TempDir::new("env");
        let kubeconfig = server.write_kubeconfig(&dir.0, "default");
        Env {
            server,
            dir,
            kubeconfig,
        }
    }

    /// `asdo` with the fake's kubeconfig and a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_asdo"));
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        isolate(&mut c);
        c
    }

    /// `asdo` started in the background with piped output, for commands that run until
    /// something happens; the test reads stdout as it comes, then `wait_output`.
    pub fn start(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn asdo(&self, args: &[&str]) -> Run {
        run_with_timeout(self.cmd(args), Duration::from_secs(60))
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_with_timeout(c, Duration::from_secs(60))
    }

    pub fn kubectl_pod(&self, name: &str) -> serde_json::Value {
        let r = self.kubectl(&["get", "pod", name, "-n", NS, "-o", "json"]);
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str(&r.stdout).unwrap()
    }

    /// A values file making the task pod run `script` with sh on this machine.
    pub fn script_values(&self, script: &str) -> PathBuf {
        self.write(
            &format!("values-{}.yaml", fastrand_suffix()),
            &format!("pod:\n  command: [\"sh\", \"-c\", {}]\n", json!(script)),
        )
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Spawn task `id` running `script`; panics unless asdo exits 0.
    pub fn spawn_script(&self, id: &str, script: &str) -> String {
        let values = self.script_values(script);
        let r = self.asdo(&[
            "spawn",
            "--task-id",
            id,
            "--branch",
            &format!("specs/001-auth/{id}-async"),
            "--repo",
            "git@github.com:org/repo.git",
            "-f",
            values.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        format!("agent-{}", id.to_lowercase())
    }

    /// Stops the fake API server (its store and pods are lost) and starts a fresh one on
    /// the same port after `down`: an API server restart as clients see it.
    pub fn restart_server(&mut self, down: Duration) {
        let port: u16 = self
            .server
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let rv = self.server.resource_version();
        drop(std::mem::replace(&mut self.server, FakeApiServer::start()));
        std::thread::sleep(down);
        self.server = FakeApiServer::start_on(port);
        self.server.advance_resource_version(rv);
        self.server.create_namespace(NS);
        self.server
            .put_secret(NS, PASSWORD_SECRET, &[("server-password", PASSWORD)]);
    }

    /// Number of recorded requests with this method whose path contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path))
            .count()
    }
}

fn fastrand_suffix() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Env vars that would change asdo's defaults must not leak in from the developer's shell.
pub fn isolate(c: &mut Command) {
    for v in [
        "NAMESPACE",
        "ENVIRONMENT",
        "RELEASE_NAME",
        "SSH_SECRET_NAME",
        "KUBECONFIG",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("NO_COLOR", "1");
}

pub fn run_with_timeout(mut c: Command, limit: Duration) -> Run {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("run command");
    wait_output(child, limit)
}

/// Collect a child's output; kill it and fail the test if it outlives `limit`.
pub fn wait_output(child: Child, limit: Duration) -> Run {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Run::from(out.unwrap()),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("command did not finish within {limit:?}");
        }
    }
}

/// A finished (or running) task pod as the cluster would hold it, for list/cleanup tests.
pub fn task_pod(task: &str, phase: &str, exit_code: Option<i32>, age: Duration) -> Pod {
    let created = jiff_ago(age + Duration::from_secs(5));
    let finished = jiff_ago(age);
    let state = match exit_code {
        Some(code) => {
            json!({"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                              "startedAt": created, "finishedAt": finished}})
        }
        None => json!({"running": {"startedAt": created}}),
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("agent-{}", task.to_lowercase()), "namespace": NS,
            "creationTimestamp": created,
            "labels": {"app": "agent-orchestrator", "task-id": task},
            "annotations": {"agentic-sdlc/branch": format!("specs/1/{task}-async"), "agentic-sdlc/repo": "git@github.com:o/r.git"}},
        "spec": {"nodeName": "fake-node", "containers": [{"name": "agent", "image": "agentic-sdlc/opencode:0.1.0-dev"}]},
        "status": {"phase": phase, "startTime": created,
            "containerStatuses": [{"name": "agent", "image": "agentic-sdlc/opencode:0.1.0-dev", "imageID": "",
                "ready": exit_code.is_none(), "restartCount": 0, "state": state}]}
    }))
    .unwrap()
}

fn jiff_ago(d: Duration) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    let t = now - k8s_openapi::jiff::SignedDuration::try_from(d).unwrap();
    t.round(k8s_openapi::jiff::Unit::Second)
        .unwrap()
        .to_string()
}

/// Poll `f` until true or the deadline; for states reached asynchronously.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The repository and branch `spawn_args` spawns with.
pub const REPO: &str = "git@github.com:org/repo.git";
pub const BRANCH: &str = "specs/001-auth/T001-async";

/// `asdo spawn --task-id ID --branch BRANCH --repo REPO` and then `extra`.
pub fn spawn_args<'a>(id: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["spawn", "--task-id", id, "--branch", BRANCH, "--repo", REPO];
    v.extend_from_slice(extra);
    v
}
