//! Runs the fake API server on its own, for benchmarks and for poking at it
//! with kubectl:
//!
//! ```text
//! cargo run --example fake-apiserver -- --port 18081 --kubeconfig /tmp/kc
//! kubectl --kubeconfig /tmp/kc get pods
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

use support::FakeApiServer;

fn main() {
    let mut port = 0u16;
    let mut kubeconfig: Option<PathBuf> = None;
    let mut namespace = "default".to_string();
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
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let server = FakeApiServer::start_on(port);
    if namespace != "default" {
        server.create_namespace(&namespace);
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

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!("usage: fake-apiserver [--port PORT] [--kubeconfig FILE] [--namespace NS]");
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
