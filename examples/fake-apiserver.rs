//! Runs the fake API server on its own, for benchmarks, for poking at it with kubectl,
//! and for trying asdo without a cluster (README, "Try it without a cluster"):
//!
//! ```text
//! cargo run --example fake-apiserver -- --port 18081 --kubeconfig /tmp/kc
//! kubectl --kubeconfig /tmp/kc get pods
//! ```
//!
//! Its defaults fit `asdo` as the chart installs it for the dev environment: the
//! namespace `agent-orchestrator-dev`, the chart's password Secret, and the chart's
//! ConfigMap (`agentic-sdlc-orchestrator-dev-config`, which `asdo spawn` reads) setting
//! `pod.command` to a stand-in for the agent: the fake kubelet runs a pod's command as a
//! local process, and a real `asdo agent` would clone the task's repository. The stand-in
//! prints the task it was given, then the agent's `asdo: done no-changes`.
//! `--no-agent` leaves the ConfigMap out (pods then run `asdo agent` from PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

use support::FakeApiServer;

fn main() {
    let mut port = 0u16;
    let mut kubeconfig: Option<PathBuf> = None;
    let mut namespace = "agent-orchestrator-dev".to_string();
    let mut agent = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("--port must be a number"))
            }
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value("--kubeconfig"))),
            "--namespace" | "-n" => namespace = value("--namespace"),
            "--no-agent" => agent = false,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let server = FakeApiServer::start_on(port);
    if namespace != "default" {
        server.create_namespace(&namespace);
    }
    // What `asdo attach`/`send` read, as the chart's ExternalSecret would provide it.
    server.put_secret(
        &namespace,
        "agentic-sdlc-orchestrator-dev-server-password",
        &[("server-password", "fake-api-server-password")],
    );
    if agent {
        let values = format!(
            "pod:\n  command: [\"sh\", \"-c\", {}]\n",
            serde_json::Value::from(STAND_IN)
        );
        server.put_configmap(
            &namespace,
            "agentic-sdlc-orchestrator-dev-config",
            &[("values.yaml", &values)],
        );
    }
    println!("fake API server listening on {}", server.url());
    if let Some(path) = kubeconfig {
        // write_kubeconfig writes `<dir>/kubeconfig`; put it where the user asked.
        let dir =
            std::env::temp_dir().join(format!("fake-apiserver-kubeconfig-{}", std::process::id()));
        let written = server.write_kubeconfig(&dir, &namespace);
        std::fs::copy(&written, &path).expect("write the kubeconfig");
        let _ = std::fs::remove_dir_all(&dir);
        println!("kubeconfig written to {}", path.display());
    }
    wait_for_interrupt();
    println!("stopping");
}

/// The stand-in for the agent image: says what it was asked, then ends as an agent that
/// had nothing to change.
const STAND_IN: &str = "echo \"fake agent (no image runs here): task $TASK_ID, branch $GIT_BRANCH, repo $GIT_REPO\"; \
     sleep 2; echo 'asdo: done no-changes'";

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: fake-apiserver [--port PORT] [--kubeconfig FILE] [--namespace NS (default agent-orchestrator-dev)] [--no-agent]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

/// Blocks until Ctrl-C or SIGTERM; the server is then dropped, which kills its pods' processes.
fn wait_for_interrupt() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
