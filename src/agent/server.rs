//! `opencode serve`, started in the work tree and stopped with the run. It listens on
//! 127.0.0.1 only (a port named `opencode` in the pod spec, so a main session can reach
//! it with `kubectl port-forward`), behind `OPENCODE_SERVER_PASSWORD`.
//!
//! Its stdout and stderr are relayed like any child's; with `--print-logs --log-level
//! WARN` OpenCode's own warnings and errors (the cause behind an "UnknownError") reach
//! the pod log instead of a file under HOME that goes with the pod.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::child::{self, Relay, Signals, Sink};
use crate::opencode::Client;

/// How long a fresh HOME may take before the server listens (measured: 1–12 s on a loaded
/// 2-core machine, most of it OpenCode unpacking and migrating its database).
pub const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Between SIGTERM to the server and SIGKILL, at most: OpenCode exits within a second of
/// SIGTERM, and the partial push after it needs the rest of the pod's grace period.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Options {
    pub program: String,
    /// 0 lets the system pick (tests running many agents at once).
    pub port: u16,
    /// The work tree: both the cwd and `PWD`, since OpenCode takes its project from `PWD`.
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub remove_env: Vec<&'static str>,
    pub password: String,
    /// Between SIGTERM and SIGKILL when stopping it.
    pub stop_grace: Duration,
}

#[derive(Debug)]
pub enum StartError {
    Spawn(std::io::Error),
    /// It exited before listening: how, plus its last stderr lines.
    Exited(String),
    Timeout,
    Signal(i32),
}

pub struct Server {
    child: Child,
    pgid: Option<i32>,
    pub client: Client,
    status: Option<ExitStatus>,
    pumps: Vec<JoinHandle<Vec<String>>>,
    tail: Arc<Mutex<Vec<String>>>,
    stop_grace: Duration,
}

impl Server {
    pub async fn start(
        o: &Options,
        relay: &Arc<Relay>,
        signals: &mut Signals,
    ) -> Result<Server, StartError> {
        let mut cmd = Command::new(&o.program);
        cmd.args(["serve", "--hostname", "127.0.0.1", "--port"])
            .arg(o.port.to_string())
            .args(["--print-logs", "--log-level", "WARN"])
            .current_dir(&o.dir)
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .env("PWD", &o.dir)
            .env("OPENCODE_SERVER_PASSWORD", &o.password)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for k in &o.remove_env {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let pgid = child.id().map(|p| p as i32);
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut pumps = vec![];
        for (stream, sink) in [
            (
                Box::new(child.stdout.take().expect("piped"))
                    as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                Sink::Stdout,
            ),
            (Box::new(child.stderr.take().expect("piped")), Sink::Stderr),
        ] {
            let tx = tx.clone();
            let tail = tail.clone();
            pumps.push(tokio::spawn(child::pump_seeing(
                stream,
                sink,
                relay.clone(),
                move |line| {
                    if let Some(url) = line.split("listening on http://").nth(1) {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                    }
                    let mut t = tail.lock().unwrap();
                    if t.len() == 10 {
                        t.remove(0);
                    }
                    t.push(line.to_string());
                },
            )));
        }
        drop(tx);
        let mut server = Server {
            child,
            pgid,
            client: Client::new("", None),
            status: None,
            pumps,
            tail,
            stop_grace: o.stop_grace,
        };
        let authority = tokio::select! {
            url = rx.recv() => url,
            status = server.child.wait() => {
                server.status = status.ok();
                None
            }
            _ = tokio::time::sleep(START_TIMEOUT) => {
                server.stop().await;
                return Err(StartError::Timeout);
            }
            sig = signals.recv() => {
                server.stop().await;
                return Err(StartError::Signal(sig));
            }
        };
        let Some(authority) = authority else {
            let why = server.exit_reason().await;
            return Err(StartError::Exited(why));
        };
        server.client = Client::new(authority, Some(&o.password));
        Ok(server)
    }

    /// Resolves when the server process ends (it should not, while a session runs).
    pub async fn exited(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let s = self
            .child
            .wait()
            .await
            .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
        self.status = Some(s);
        s
    }

    /// "exited 1: <its last lines>", once it has ended.
    pub async fn exit_reason(&mut self) -> String {
        let status = self.exited().await;
        // Let the pumps deliver its last words.
        for p in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let f = child::Finished {
            status,
            stdout: String::new(),
            stderr_tail: vec![],
        };
        let tail = self.tail.lock().unwrap().join(" | ");
        if tail.is_empty() {
            f.describe_status()
        } else {
            format!("{}: {tail}", f.describe_status())
        }
    }

    /// SIGTERM to its whole process group (tools it started too), SIGKILL if it lingers.
    pub async fn stop(&mut self) {
        if self.status.is_none()
            && let Some(pgid) = self.pgid
        {
            child::kill_group(pgid, libc::SIGTERM);
            if let Ok(s) = tokio::time::timeout(self.stop_grace, self.child.wait()).await {
                self.status = s.ok();
            }
        }
        if let Some(pgid) = self.pgid {
            child::kill_group(pgid, libc::SIGKILL);
        }
        let _ = self.exited().await;
        for p in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
    }
}
