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
    /// The newest `level=ERROR` cause in OpenCode's log (e.g. why a model call failed).
    last_error: Arc<Mutex<Option<String>>>,
    stop_grace: Duration,
}

/// The cause in one of OpenCode's `level=ERROR` log lines (`error.error="…"`, else
/// `error="…"`); None for any other line, e.g. the models catalogue fetch failing offline,
/// which says nothing about the model.
pub fn error_cause(line: &str) -> Option<String> {
    if !line.contains("level=ERROR") {
        return None;
    }
    let field = |name: &str| {
        let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
        let rest = &line[start..];
        let mut end = rest.len();
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        Some(rest[..end].replace("\\\"", "\""))
    };
    field("error.error")
        .or_else(|| field("error"))
        .filter(|c| !c.trim().is_empty())
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
            .env(crate::contract::PASSWORD_ENV, &o.password)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for k in &o.remove_env {
            cmd.env_remove(k);
        }
        // A SIGKILLed agent must not leave the server running and holding the port.
        child::die_with_agent(&mut cmd);
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let pgid = child.id().map(|p| p as i32);
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let last_error = Arc::new(Mutex::new(None::<String>));
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
            let last_error = last_error.clone();
            pumps.push(tokio::spawn(child::pump_seeing(
                stream,
                sink,
                relay.clone(),
                move |line| {
                    if let Some(url) = line.split("listening on http://").nth(1) {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                    }
                    if let Some(cause) = error_cause(line) {
                        *last_error.lock().unwrap() = Some(cause);
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
            last_error,
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

    /// The newest error cause OpenCode logged, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
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

    /// "exited 1: <its last lines>" or "was killed by SIGKILL: …", once it has ended.
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
        let status = match f.describe_status() {
            s if s.starts_with("killed") => format!("was {s}"),
            s => s,
        };
        if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
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

/// Why `opencode serve` exited before listening, in words that say what to change.
/// OpenCode reports a taken port only as `Unexpected error | ServeError`.
pub fn explain_exit(why: &str, port: u16) -> String {
    if why.contains("ServeError") || why.contains("EADDRINUSE") || why.contains("in use") {
        return format!(
            "opencode serve could not listen on 127.0.0.1:{port} (is the port taken?); set ASDO_OPENCODE_PORT to a free port, or 0 for any ({why})"
        );
    }
    format!("opencode serve {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_the_env_to_change() {
        let e = explain_exit("exited 1: Error: Unexpected error | ServeError", 4096);
        assert!(
            e.starts_with("opencode serve could not listen on 127.0.0.1:4096 (is the port taken?); set ASDO_OPENCODE_PORT"),
            "{e}"
        );
        assert_eq!(
            explain_exit("exited 2: boom", 4096),
            "opencode serve exited 2: boom"
        );
    }

    #[test]
    fn error_causes_from_opencode_log_lines() {
        let line = r#"timestamp=2026-12-04T11:34:33.739Z level=ERROR run=57bbb7e9 message="stream error" providerID=stub error.error="AI_APICallError: Cannot connect to API: \"x\" (cause: y)""#;
        assert_eq!(
            error_cause(line).as_deref(),
            Some(r#"AI_APICallError: Cannot connect to API: "x" (cause: y)"#)
        );
        assert_eq!(
            error_cause(r#"level=ERROR message="Failed to fetch models.dev" cause="x""#),
            None
        );
        assert_eq!(error_cause(r#"level=WARN message="slow""#), None);
    }
}
