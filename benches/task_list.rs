//! `asdo spawn -f tasks.yaml` of a 100-entry task list against the fake API server, in
//! one run: the first run (100 creates), the re-run (all `unchanged`), the reads of the
//! chart's ConfigMap, and a kubectl-style peer: `kubectl apply -f` of the same 100 pods
//! (rendered by `asdo spawn --dry-run`), first and again. Nothing here asserts: the
//! numbers go in the README. `cargo bench --bench task_list`; knobs ASDO_BENCH_TASKS (100)
//! and ASDO_BENCH_LATENCY_MS (0: the fake's own speed; e.g. 10 for a remote API server,
//! added to every answer).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{FakeApiServer, knob};

const NS: &str = "agent-orchestrator-dev";
const CONFIGMAP: &str = "agentic-sdlc-orchestrator-dev-config";

fn run(mut c: Command) -> (Duration, Output) {
    c.stdin(Stdio::null());
    let t = Instant::now();
    let out = c.output().expect("run the command");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out)
}

fn main() {
    let n = knob("ASDO_BENCH_TASKS", 100u64);
    let latency = Duration::from_millis(knob("ASDO_BENCH_LATENCY_MS", 0u64));
    let server = FakeApiServer::start();
    server.create_namespace(NS);
    server.put_secret(
        NS,
        "agentic-sdlc-orchestrator-dev-server-password",
        &[("server-password", "bench")],
    );
    // The chart's ConfigMap, as an installed release publishes it.
    server.put_configmap(
        NS,
        CONFIGMAP,
        &[(
            "values.yaml",
            "environment: dev\npod:\n  activeDeadlineSeconds: 3600\n",
        )],
    );
    // Scheduled and run only after the bench: the kubelet's work is not what is measured.
    server.set_schedule_delay(Duration::from_secs(3600));
    let dir = std::env::temp_dir().join(format!("asdo-bench-tasks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.write_kubeconfig(&dir, NS);
    let asdo = PathBuf::from(env!("CARGO_BIN_EXE_asdo"));
    let tasks = dir.join("tasks.yaml");
    let mut list = String::from(
        "repo: git@github.com:org/app.git\nbranch: \"specs/{feature}/{id}-async\"\nfeature: 001-bench\ntasks:\n",
    );
    for i in 0..n {
        list.push_str(&format!("  - {{id: T{i:03}}}\n"));
    }
    std::fs::write(&tasks, list).unwrap();
    let values = dir.join("true.yaml");
    std::fs::write(&values, "pod:\n  command: [\"true\"]\n").unwrap();
    let spawn = |extra: &[&str]| {
        let mut c = Command::new(&asdo);
        c.arg("--kubeconfig").arg(&kubeconfig).args([
            "spawn",
            "-e",
            "dev",
            "-f",
            path(&values),
            "-f",
            path(&tasks),
            "--if-exists",
            "skip",
        ]);
        c.args(extra);
        for v in ["NAMESPACE", "ENVIRONMENT", "KUBECONFIG", "ASDO_IF_EXISTS"] {
            c.env_remove(v);
        }
        c
    };
    let configmap_reads = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/configmaps/{CONFIGMAP}")))
            .count()
    };
    let writes = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    };
    server.set_response_delay(latency);

    server.clear_requests();
    let (first, out) = run(spawn(&[]));
    let created = String::from_utf8_lossy(&out.stdout).lines().count();
    let (first_reads, first_writes, first_requests) =
        (configmap_reads(), writes(), server.requests().len());
    let (connections_peak, _) = (server.connections().1, ());
    server.clear_requests();
    let (again, out) = run(spawn(&[]));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let unchanged = stdout.lines().filter(|l| l.contains("unchanged")).count();
    let (again_reads, again_writes, again_requests) =
        (configmap_reads(), writes(), server.requests().len());

    // The peer: the same pods rendered once, then `kubectl apply -f` (client-side apply:
    // a GET and a create per pod, the re-run a GET and a no-op per pod).
    server.set_response_delay(Duration::ZERO);
    let (_, rendered) = run(spawn(&["--dry-run", "-o", "yaml"]));
    let manifest = dir.join("pods.yaml");
    std::fs::write(&manifest, &rendered.stdout).unwrap();
    let kubectl = |ns: &str| {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "-n", ns, "-f", path(&manifest)]);
        c
    };
    // Another namespace, so the peer creates the same 100 pods anew.
    let peer_ns = "bench-peer";
    server.create_namespace(peer_ns);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            &format!("namespace: {NS}"),
            &format!("namespace: {peer_ns}"),
        ),
    )
    .unwrap();
    server.set_response_delay(latency);
    let (peer_first, _) = run(kubectl(peer_ns));
    let (peer_again, _) = run(kubectl(peer_ns));
    server.set_response_delay(Duration::ZERO);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "task list of {n} (added latency {} ms per answer, release build):",
        latency.as_millis()
    );
    println!(
        "| run | asdo spawn -f tasks.yaml | kubectl apply -f (same {n} pods) | time ratio |\n|---|---|---|---|"
    );
    println!(
        "| first ({created} created) | {:.0} ms; {first_requests} requests, {first_writes} writes, {first_reads} ConfigMap read(s), peak {connections_peak} connections | {:.0} ms | {:.2} |",
        ms(first),
        ms(peer_first),
        ms(first) / ms(peer_first)
    );
    println!(
        "| again ({unchanged} unchanged) | {:.0} ms; {again_requests} requests, {again_writes} writes, {again_reads} ConfigMap read(s) | {:.0} ms | {:.2} |",
        ms(again),
        ms(peer_again),
        ms(again) / ms(peer_again)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
