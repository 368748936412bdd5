//! asdo against the tools it replaces, on the same fake API server, in one run.
//! `cargo bench --bench compare` prints medians and asdo/peer ratios.
//!
//! Peers: `helm template | kubectl apply` (helm from PATH or .ci/cache/bin, as
//! .ci/chart-checks.sh installs it), `kubectl run`, `kubectl get`, `kubectl delete`,
//! `kubectl logs -f`. Knobs: ASDO_BENCH_RUNS (5), ASDO_BENCH_SPAWNS (50),
//! ASDO_BENCH_LIST (10000), ASDO_BENCH_CLEANUP (1000), ASDO_BENCH_LOG_MB (200),
//! ASDO_BENCH_FOLLOW (100), ASDO_BENCH_CATCHUP_LINES (200). Nothing here asserts: numbers go in README.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::{FakeApiServer, knob};

const NS: &str = "agent-orchestrator-dev";

/// Wall time and peak RSS of one child, from wait4's rusage.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: Duration,
    rss_kb: i64,
    /// User + system CPU time.
    cpu: Duration,
    /// Stdout lines, and when the last one came (only when counted, see `measure_lines`).
    lines: u64,
    last_line: Duration,
}

/// Set in the environment of the measurer process (see `Measurer`).
const MEASURER_ENV: &str = "ASDO_BENCH_MEASURER";

/// Linux carries a process's RSS high-water mark across fork and exec into `ru_maxrss`, so a
/// child of this process (which holds the fake API server, 10,000 pods and 200 MB of log) would
/// report at least our size. Commands are therefore started by a copy of this binary launched
/// at the very beginning, while it is still a few MB, talking JSON lines over a pipe.
struct Measurer {
    _child: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
}

static MEASURER: std::sync::OnceLock<std::sync::Mutex<Measurer>> = std::sync::OnceLock::new();

fn start_measurer() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(MEASURER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the measurer process");
    let m = Measurer {
        to: child.stdin.take().unwrap(),
        from: std::io::BufReader::new(child.stdout.take().unwrap()),
        _child: child,
    };
    let _ = MEASURER.set(std::sync::Mutex::new(m));
}

fn measure(cmd: Command) -> Sample {
    measure_for(&cmd, None)
}

/// Run `cmd` (through the measurer); with `limit`, stop it after that long (for commands that
/// follow forever).
fn measure_for(cmd: &Command, limit: Option<Duration>) -> Sample {
    measure_req(cmd, limit, false)
}

/// Like `measure_for`, also counting the command's stdout lines and when the last came;
/// the command may end before `limit` (kubectl does once every stream ends).
fn measure_lines(cmd: &Command, limit: Duration) -> Sample {
    measure_req(cmd, Some(limit), true)
}

fn measure_req(cmd: &Command, limit: Option<Duration>, count_lines: bool) -> Sample {
    use std::io::{BufRead, Write};
    let req = json!({
        "program": cmd.get_program().to_string_lossy(),
        "args": cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
        "env": cmd.get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect::<Vec<_>>(),
        "limit_ms": limit.map(|l| l.as_millis() as u64),
        "count_lines": count_lines,
    });
    let mut m = MEASURER.get().expect("measurer started").lock().unwrap();
    writeln!(m.to, "{req}").unwrap();
    let mut line = String::new();
    m.from.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("measurer reply");
    Sample {
        wall: Duration::from_micros(v["wall_us"].as_u64().unwrap()),
        rss_kb: v["rss_kb"].as_i64().unwrap(),
        cpu: Duration::from_micros(v["cpu_us"].as_u64().unwrap()),
        lines: v["lines"].as_u64().unwrap_or(0),
        last_line: Duration::from_micros(v["last_line_us"].as_u64().unwrap_or(0)),
    }
}

/// The measurer process: one request per line, one reply per line.
fn measurer_loop() {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let req: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let mut cmd = Command::new(req["program"].as_str().unwrap());
        for a in req["args"].as_array().unwrap() {
            cmd.arg(a.as_str().unwrap());
        }
        for kv in req["env"].as_array().unwrap() {
            match kv[1].as_str() {
                Some(v) => cmd.env(kv[0].as_str().unwrap(), v),
                None => cmd.env_remove(kv[0].as_str().unwrap()),
            };
        }
        let count = req["count_lines"].as_bool().unwrap_or(false);
        cmd.stdin(Stdio::null())
            .stdout(if count { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn benchmark command");
        let pid = child.id() as libc::pid_t;
        // Counted on a thread: (lines, time of the last one).
        let counter = child.stdout.take().map(|so| {
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(so);
                let (mut n, mut last) = (0u64, Duration::ZERO);
                let mut buf = Vec::new();
                while r.read_until(b'\n', &mut buf).is_ok_and(|k| k > 0) {
                    n += 1;
                    last = start.elapsed();
                    buf.clear();
                }
                (n, last)
            })
        });
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid value; wait4 fills status and usage for our child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if let Some(ms) = req["limit_ms"].as_u64() {
            let deadline = start + Duration::from_millis(ms);
            // Poll so a command that ends by itself is not held to the limit.
            // SAFETY: pid is our unreaped child.
            while unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } == 0 {
                if Instant::now() >= deadline {
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        }
        std::mem::forget(child);
        let (lines, last) = counter.map_or((0, Duration::ZERO), |t| t.join().unwrap());
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let reply = json!({
            "wall_us": start.elapsed().as_micros() as u64,
            "rss_kb": usage.ru_maxrss,
            "cpu_us": tv(usage.ru_utime) + tv(usage.ru_stime),
            "lines": lines,
            "last_line_us": last.as_micros() as u64,
        });
        writeln!(out, "{reply}").unwrap();
        out.flush().unwrap();
    }
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by_key(|s| s.wall);
    let wall = v[v.len() / 2].wall;
    v.sort_by_key(|s| s.rss_kb);
    let rss_kb = v[v.len() / 2].rss_kb;
    v.sort_by_key(|s| s.cpu);
    Sample {
        wall,
        rss_kb,
        cpu: v[v.len() / 2].cpu,
        lines: v[v.len() / 2].lines,
        last_line: v[v.len() / 2].last_line,
    }
}

struct Bench {
    server: FakeApiServer,
    kubeconfig: PathBuf,
    asdo: PathBuf,
    helm: Option<PathBuf>,
    runs: usize,
    rows: Vec<String>,
}

impl Bench {
    fn asdo(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.asdo);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        for v in ["NAMESPACE", "ENVIRONMENT", "KUBECONFIG"] {
            c.env_remove(v);
        }
        c
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    fn row(&mut self, what: &str, asdo: Sample, peer_name: &str, peer: Sample) {
        let r = format!(
            "| {what} | {:.1} ms, {} MB | {peer_name}: {:.1} ms, {} MB | {:.2} | {:.2} |",
            asdo.wall.as_secs_f64() * 1e3,
            asdo.rss_kb / 1024,
            peer.wall.as_secs_f64() * 1e3,
            peer.rss_kb / 1024,
            asdo.wall.as_secs_f64() / peer.wall.as_secs_f64(),
            asdo.rss_kb as f64 / peer.rss_kb.max(1) as f64,
        );
        println!("{r}");
        self.rows.push(r);
    }

    fn clear_pods(&self) {
        let _ = self
            .asdo(&["cleanup", "--all", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn find_helm() -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/bin/helm");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("helm"))
            .find(|h| h.exists())
    })
}

fn task_pod(name: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app": "agent-orchestrator", "task-id": name},
            "annotations": {"agentic-sdlc/branch": "specs/bench/x-async"},
            "creationTimestamp": "2026-11-24T10:00:00Z"},
        "spec": {"nodeName": "fake-node", "containers": [{"name": "agent", "image": "agentic-sdlc/opencode:0.1.0"}]},
        "status": {"phase": phase, "startTime": "2026-11-24T10:00:01Z",
            "containerStatuses": [{"name": "agent", "image": "agentic-sdlc/opencode:0.1.0", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-24T10:05:00Z"}}}]}
    }))
    .unwrap()
}

fn main() {
    if std::env::var_os(MEASURER_ENV).is_some() {
        return measurer_loop();
    }
    start_measurer();
    // `cargo bench` passes --bench; nothing else is accepted.
    let server = FakeApiServer::start();
    server.create_namespace(NS);
    server.put_secret(
        NS,
        "agentic-sdlc-orchestrator-dev-server-password",
        &[("server-password", "bench")],
    );
    let dir = std::env::temp_dir().join(format!("asdo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.write_kubeconfig(&dir, NS);
    let mut b = Bench {
        server,
        kubeconfig,
        asdo: PathBuf::from(env!("CARGO_BIN_EXE_asdo")),
        helm: find_helm(),
        runs: knob("ASDO_BENCH_RUNS", 5usize),
        rows: vec![],
    };
    let values = dir.join("true.yaml");
    std::fs::write(&values, "pod:\n  command: [\"true\"]\n").unwrap();
    println!("| measure | asdo | peer | time ratio | RSS ratio |\n|---|---|---|---|---|");

    // Cold start and size.
    let start = median((0..20).map(|_| measure(b.asdo(&["--version"]))).collect());
    let size = std::fs::metadata(&b.asdo).map(|m| m.len()).unwrap_or(0);
    let kstart = median(
        (0..20)
            .map(|_| measure(b.kubectl(&["version", "--client"])))
            .collect(),
    );
    b.row(
        &format!(
            "cold start (`--version`), binary {:.1} MB",
            size as f64 / 1e6
        ),
        start,
        "kubectl version --client",
        kstart,
    );

    // 1. Spawn: N sequential creates, per spawn.
    let n = knob("ASDO_BENCH_SPAWNS", 50usize);
    let per = |s: Sample| Sample {
        wall: s.wall / n as u32,
        rss_kb: s.rss_kb,
        cpu: s.cpu / n as u32,
        ..s
    };
    let mut asdo_s = vec![];
    let mut run_s = vec![];
    let mut helm_s = vec![];
    let mut posts = 0;
    for r in 0..b.runs {
        b.server.clear_requests();
        let t = Instant::now();
        let mut rss = 0;
        for i in 0..n {
            let id = format!("S{r}x{i}");
            let s = measure(b.asdo(&[
                "spawn",
                "--task-id",
                &id,
                "--branch",
                "b",
                "--repo",
                "git@h:o/r.git",
                "-f",
                values.to_str().unwrap(),
            ]));
            rss = rss.max(s.rss_kb);
        }
        asdo_s.push(per(Sample {
            wall: t.elapsed(),
            rss_kb: rss,
            cpu: Duration::ZERO,
            ..Default::default()
        }));
        posts = b
            .server
            .requests()
            .iter()
            .filter(|q| q.method == "POST")
            .count();
        b.clear_pods();

        let t = Instant::now();
        let mut rss = 0;
        for i in 0..n {
            let s = measure(b.kubectl(&[
                "run",
                &format!("k{r}x{i}"),
                "-n",
                NS,
                "--image=x",
                "--restart=Never",
                "--command",
                "--",
                "true",
            ]));
            rss = rss.max(s.rss_kb);
        }
        run_s.push(per(Sample {
            wall: t.elapsed(),
            rss_kb: rss,
            cpu: Duration::ZERO,
            ..Default::default()
        }));
        let _ = b
            .kubectl(&["delete", "pods", "--all", "-n", NS, "--wait=false"])
            .stdout(Stdio::null())
            .status();

        if let Some(helm) = b.helm.clone() {
            let release = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("releases/agentic-sdlc-orchestrator-dev");
            if r == 0 {
                let _ = Command::new(&helm)
                    .args(["dependency", "build"])
                    .arg(&release)
                    .stdout(Stdio::null())
                    .status();
            }
            let t = Instant::now();
            let mut rss = 0;
            for i in 0..n {
                let script = format!(
                    "{h} template agentic-sdlc-orchestrator-dev {rel} -n {NS} --show-only charts/agentic-sdlc-orchestrator/templates/pod.yaml \
                     --set agentic-sdlc-orchestrator.task.id=H{r}x{i} --set agentic-sdlc-orchestrator.task.branch=b \
                     --set agentic-sdlc-orchestrator.task.repo=git@h:o/r.git | kubectl --kubeconfig {kc} apply -f -",
                    h = helm.display(),
                    rel = release.display(),
                    kc = b.kubeconfig.display()
                );
                let mut c = Command::new("bash");
                c.args(["-o", "pipefail", "-c", &script]);
                rss = rss.max(measure(c).rss_kb);
            }
            helm_s.push(per(Sample {
                wall: t.elapsed(),
                rss_kb: rss,
                cpu: Duration::ZERO,
                ..Default::default()
            }));
            b.clear_pods();
        }
    }
    let asdo_spawn = median(asdo_s);
    println!(
        "<!-- spawn: {:.2} API writes per asdo spawn -->",
        posts as f64 / n as f64
    );
    b.row(
        &format!("spawn, per pod ({n} sequential)"),
        asdo_spawn,
        "kubectl run",
        median(run_s),
    );
    if !helm_s.is_empty() {
        b.row(
            &format!("spawn, per pod ({n} sequential)"),
            asdo_spawn,
            "helm template | kubectl apply",
            median(helm_s),
        );
    } else {
        println!("<!-- helm not found: run bash .ci/chart-checks.sh once to install it -->");
    }

    // 2. List 10,000 task pods.
    let count = knob("ASDO_BENCH_LIST", 10_000_usize);
    for i in 0..count {
        b.server
            .insert_pod(task_pod(&format!("agent-l{i:05}"), "Succeeded"));
    }
    let a = median((0..b.runs).map(|_| measure(b.asdo(&["list"]))).collect());
    let k = median(
        (0..b.runs)
            .map(|_| measure(b.kubectl(&["get", "pods", "-n", NS, "-l", "app=agent-orchestrator"])))
            .collect(),
    );
    b.row(
        &format!("list {count} task pods"),
        a,
        "kubectl get pods -l",
        k,
    );
    b.clear_pods();

    // 3. Cleanup of 1,000 finished pods.
    let count = knob("ASDO_BENCH_CLEANUP", 1000usize);
    let mut a = vec![];
    let mut k = vec![];
    let mut deletes = (0, 0);
    for _ in 0..b.runs {
        for i in 0..count {
            b.server
                .insert_pod(task_pod(&format!("agent-c{i:05}"), "Succeeded"));
        }
        b.server.clear_requests();
        a.push(measure(b.asdo(&["cleanup"])));
        deletes.0 = b
            .server
            .requests()
            .iter()
            .filter(|q| q.method == "DELETE")
            .count();
        for i in 0..count {
            b.server
                .insert_pod(task_pod(&format!("agent-c{i:05}"), "Succeeded"));
        }
        b.server.clear_requests();
        k.push(measure(b.kubectl(&[
            "delete",
            "pods",
            "-n",
            NS,
            "-l",
            "app=agent-orchestrator",
            "--field-selector",
            "status.phase=Succeeded",
            "--wait=false",
        ])));
        deletes.1 = b
            .server
            .requests()
            .iter()
            .filter(|q| q.method == "DELETE")
            .count();
    }
    println!(
        "<!-- cleanup: asdo {} DELETE requests, kubectl {} -->",
        deletes.0, deletes.1
    );
    b.row(
        &format!(
            "cleanup {count} finished pods ({} vs {} API calls)",
            deletes.0, deletes.1
        ),
        median(a),
        "kubectl delete pods -l --field-selector",
        median(k),
    );

    // 4. Logs throughput.
    let mb = knob("ASDO_BENCH_LOG_MB", 200usize);
    let log_values = dir.join("log.yaml");
    let script = format!(
        "yes 'the agent is thinking about the next edit to make in src/lib.rs, line of about 100 bytes....' | head -c {}",
        mb * 1_000_000
    );
    std::fs::write(
        &log_values,
        format!("pod:\n  command: [\"sh\", \"-c\", {}]\n", json!(script)),
    )
    .unwrap();
    let _ = b
        .asdo(&[
            "spawn",
            "--task-id",
            "LOGS",
            "--branch",
            "b",
            "--repo",
            "git@h:o/r.git",
            "-f",
            log_values.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .status();
    b.server
        .wait_for_phase(NS, "agent-logs", "Succeeded", Duration::from_secs(600));
    let a = median(
        (0..b.runs)
            .map(|_| measure(b.asdo(&["logs", "LOGS"])))
            .collect(),
    );
    let k = median(
        (0..b.runs)
            .map(|_| measure(b.kubectl(&["logs", "-f", "agent-logs", "-n", NS])))
            .collect(),
    );
    let mbps = |s: Sample| mb as f64 / s.wall.as_secs_f64();
    b.row(
        &format!(
            "logs, {mb} MB (asdo {:.0} MB/s, {:.2} s CPU; kubectl {:.0} MB/s, {:.2} s CPU)",
            mbps(a),
            a.cpu.as_secs_f64(),
            mbps(k),
            k.cpu.as_secs_f64()
        ),
        a,
        "kubectl logs -f",
        k,
    );
    b.clear_pods();

    // 5. Following many task pods at once.
    let pods = knob("ASDO_BENCH_FOLLOW", 100usize);
    let chatty = dir.join("chatty.yaml");
    std::fs::write(&chatty, "pod:\n  command: [\"sh\", \"-c\", \"i=0; while [ $i -lt 100 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done\"]\n").unwrap();
    for i in 0..pods {
        let _ = b
            .asdo(&[
                "spawn",
                "--task-id",
                &format!("F{i}"),
                "--branch",
                "b",
                "--repo",
                "git@h:o/r.git",
                "-f",
                chatty.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .status();
    }
    let a = measure_for(&b.asdo(&["logs", "--all"]), Some(Duration::from_secs(8)));
    let kc = b.kubectl(&[
        "logs",
        "-f",
        "-n",
        NS,
        "-l",
        "app=agent-orchestrator",
        "--prefix",
        "--max-log-requests",
        &pods.to_string(),
    ]);
    let k = measure_for(&kc, Some(Duration::from_secs(8)));
    b.row(
        &format!("follow {pods} task pods for 8 s"),
        a,
        "kubectl logs -f -l --prefix",
        k,
    );
    b.clear_pods();

    // 6. Catching up on many finished task pods with small logs: lines/s to the last line,
    // peak RSS, and the fake API server's peak open connections while each command runs.
    let lines_per_pod = knob("ASDO_BENCH_CATCHUP_LINES", 200usize);
    let small = dir.join("small.yaml");
    std::fs::write(
        &small,
        format!("pod:\n  command: [\"sh\", \"-c\", \"i=0; while [ $i -lt {lines_per_pod} ]; do echo line $i; i=$((i+1)); done\"]\n"),
    )
    .unwrap();
    for n in [100, 500] {
        for i in 0..n {
            let _ = b
                .asdo(&[
                    "spawn",
                    "--task-id",
                    &format!("C{i}"),
                    "--branch",
                    "b",
                    "--repo",
                    "git@h:o/r.git",
                    "-f",
                    small.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .status();
        }
        for i in 0..n {
            b.server.wait_for_phase(
                NS,
                &format!("agent-c{i}"),
                "Succeeded",
                Duration::from_secs(600),
            );
        }
        let limit = Duration::from_secs(30 + n as u64 / 5);
        b.server.reset_peak_connections();
        // asdo at its default cap (--max-log-requests 50), kubectl allowed one stream per pod.
        let a = measure_lines(&b.asdo(&["logs", "--all"]), limit);
        let a_conns = b.server.connections().1;
        let kc = b.kubectl(&[
            "logs",
            "-f",
            "-n",
            NS,
            "-l",
            "app=agent-orchestrator",
            "--prefix",
            // With -l kubectl starts at the last 10 lines unless told otherwise.
            "--tail=-1",
            "--max-log-requests",
            &n.to_string(),
        ]);
        b.server.reset_peak_connections();
        let k = measure_lines(&kc, limit);
        let k_conns = b.server.connections().1;
        let rate = |s: Sample| s.lines as f64 / s.last_line.as_secs_f64().max(1e-3);
        let to_last = |s: Sample| Sample {
            wall: s.last_line,
            ..s
        };
        b.row(
            &format!(
                "logs --all, {n} finished pods x {lines_per_pod} lines, time to last line \
                 (asdo {} lines, {:.0} lines/s, peak {a_conns} connections; \
                 kubectl {} lines, {:.0} lines/s, peak {k_conns} connections)",
                a.lines,
                rate(a),
                k.lines,
                rate(k)
            ),
            to_last(a),
            &format!("kubectl logs -f -l --prefix --tail=-1 --max-log-requests {n}"),
            to_last(k),
        );
        b.clear_pods();
    }

    println!(
        "\n{} rows; machine: {} cores",
        b.rows.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
