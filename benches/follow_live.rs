//! `asdo logs --all` against `kubectl logs -f -l … --prefix --max-log-requests=N`, both
//! following N *running* task pods live over TLS + HTTP/2, on the same fake API server in
//! one run (issue 24). `cargo bench --bench follow_live` prints one row per tool and N.
//!
//! Each pod prints `start`, blocks on a FIFO (the shell's `read`, no polling), and once
//! the bench opens the FIFO prints ASDO_BENCH_LIVE_LINES (200) lines at once, then sleeps.
//! Measured per command: TCP connections the server accepted while it ran, peak RSS
//! (VmHWM, read just before it is stopped), time until the first line of the last pod
//! arrived (every pod visible), and lines/s from the release to the last line.
//! Knobs: ASDO_BENCH_LIVE_PODS ("100,500"), ASDO_BENCH_LIVE_LINES (200),
//! ASDO_BENCH_MAX_STREAMS (100: kube-apiserver's streams per HTTP/2 connection).
//! Nothing here asserts: numbers go in README.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{FakeApiServer, knob};

const NS: &str = "agent-orchestrator-dev";

fn insert_pods(server: &FakeApiServer, n: usize, fifo: &Path, lines: usize) {
    let script = format!(
        "echo start; read _ < {fifo}; i=0; while [ $i -lt {lines} ]; do \
         echo \"line $i of a task pod's log, about as long as an agent's\"; i=$((i+1)); done; \
         exec sleep 3600",
        fifo = fifo.display()
    );
    for i in 0..n {
        let id = format!("L{i:03}");
        let pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("agent-{}", id.to_lowercase()), "namespace": NS,
                "labels": {"app": "agent-orchestrator", "task-id": id}},
            "spec": {"restartPolicy": "Never",
                "containers": [{"name": "agent", "image": "asdo-agent", "command": ["sh", "-c", &script]}]},
        }))
        .unwrap();
        server.insert_pod(pod);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for i in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            server.wait_for_phase(NS, &format!("agent-l{i:03}"), "Running", left),
            "pods run"
        );
    }
}

struct Row {
    connections: usize,
    peak_open: usize,
    rss_mb: f64,
    all_visible: Duration,
    lines_per_s: f64,
    lines: usize,
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run(server: &FakeApiServer, mut cmd: Command, n: usize, lines: usize, fifo: &Path) -> Row {
    let before = server.accepted_connections();
    server.reset_peak_connections();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the follower");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|k| k > 0) {
            let start_line = buf.ends_with(b"start\n");
            if tx.send((start_line, Instant::now())).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let limit = Duration::from_secs(300);
    let (mut starts, mut total) = (0, 0);
    while starts < n {
        let (s, _) = rx.recv_timeout(limit).expect("every pod's first line");
        starts += usize::from(s);
        total += 1;
    }
    let all_visible = start.elapsed();
    // Release: opening the FIFO for writing ends every pod's `read`.
    // Opened and closed again until no pod waits on it (then a non-blocking open fails).
    let f = fifo.to_path_buf();
    let writer = std::thread::spawn(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let mut open = std::fs::OpenOptions::new();
        open.write(true).custom_flags(libc::O_NONBLOCK);
        while open.open(&f).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let released = Instant::now();
    let mut last = released;
    while total < n * (lines + 1) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((_, at)) => {
                total += 1;
                last = at;
            }
            Err(_) => break,
        }
    }
    writer.join().unwrap();
    let rss_kb = vm_hwm_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Row {
        connections: server.accepted_connections() - before,
        peak_open: server.connections().1,
        rss_mb: rss_kb as f64 / 1024.0,
        all_visible,
        lines_per_s: (total - n) as f64 / last.duration_since(released).as_secs_f64().max(1e-3),
        lines: total,
    }
}

fn main() {
    let max_streams: u32 = knob("ASDO_BENCH_MAX_STREAMS", 100);
    let lines: usize = knob("ASDO_BENCH_LIVE_LINES", 200);
    let sizes: Vec<usize> = knob("ASDO_BENCH_LIVE_PODS", "100,500".to_string())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let server = FakeApiServer::start_tls(Some(max_streams));
    server.create_namespace(NS);
    let dir = std::env::temp_dir().join(format!("asdo-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.write_kubeconfig(&dir, NS);
    let asdo = env!("CARGO_BIN_EXE_asdo");
    println!(
        "fake API server over TLS, HTTP/2 with {max_streams} streams per connection; \
         {lines} lines per pod after the release\n"
    );
    println!(
        "| command | pods | TCP connections (peak open) | peak RSS | first line of the last pod | lines/s | lines |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let n_arg = n.to_string();
        for tool in ["asdo", "kubectl"] {
            let fifo = dir.join(format!("go-{tool}-{n}"));
            let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(status.success(), "mkfifo");
            insert_pods(&server, n, &fifo, lines);
            let (label, cmd) = if tool == "asdo" {
                let mut c = Command::new(asdo);
                c.arg("--kubeconfig").arg(&kubeconfig);
                c.args(["logs", "--all", "-n", NS]);
                for v in ["NAMESPACE", "ENVIRONMENT", "KUBECONFIG"] {
                    c.env_remove(v);
                }
                ("asdo logs --all".to_string(), c)
            } else {
                let mut c = Command::new("kubectl");
                c.arg("--kubeconfig").arg(&kubeconfig);
                c.args([
                    "logs",
                    "-f",
                    "-n",
                    NS,
                    "-l",
                    "app=agent-orchestrator",
                    "--prefix",
                ]);
                c.args(["--tail=-1", "--max-log-requests", &n_arg]);
                (
                    format!("kubectl logs -f -l … --prefix --max-log-requests={n}"),
                    c,
                )
            };
            let r = run(&server, cmd, n, lines, &fifo);
            println!(
                "| {label} | {n} | {} ({}) | {:.1} MB | {:.0} ms | {:.0} | {} |",
                r.connections,
                r.peak_open,
                r.rss_mb,
                r.all_visible.as_secs_f64() * 1e3,
                r.lines_per_s,
                r.lines
            );
            let _ = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args([
                    "delete",
                    "pods",
                    "-n",
                    NS,
                    "-l",
                    "app=agent-orchestrator",
                    "--wait=false",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // The pods' processes are gone once the pods are.
            while !server.pods(NS).is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
