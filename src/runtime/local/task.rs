//! One local task: its directory and files, the records spawn and the runner write
//! (spec, launch, state), its phase from those and its processes, and what a task
//! directory does (its log's tail and head, an answer, cancel, remove).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::proc;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// One task's directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDir {
    pub dir: PathBuf,
}

impl TaskDir {
    /// The clone the agent works in (TASK_CONTEXT_PATH); writable in the sandbox.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
    /// The agent's HOME; writable in the sandbox.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }
    /// What the agent reads and never writes (the prompt, a person's answers): read-only.
    pub fn input(&self) -> PathBuf {
        self.dir.join("input")
    }
    pub fn prompt(&self) -> PathBuf {
        self.input().join("prompt")
    }
    /// The downwardAPI-style annotations file `asdo answer` writes for a local task.
    pub fn answers(&self) -> PathBuf {
        self.input().join("annotations")
    }
    /// The OpenCode server password, 0600; never in argv or a log.
    pub fn password(&self) -> PathBuf {
        self.dir.join("password")
    }
    /// Present once `cleanup --force` cancelled the task while it was queued.
    pub fn cancel_requested(&self) -> PathBuf {
        self.dir.join("cancel")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn launch_file(&self) -> PathBuf {
        self.dir.join("launch.json")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The runner's own stderr (a runner that cannot even open the log says why here).
    pub fn runner_err(&self) -> PathBuf {
        self.dir.join("runner.err")
    }

    pub fn spec(&self) -> io::Result<Spec> {
        read_json(&self.spec_file())?.ok_or_else(|| io::Error::other("spec.json is missing"))
    }
    pub fn launch(&self) -> io::Result<Option<Launch>> {
        read_json(&self.launch_file())
    }
    pub fn state(&self) -> io::Result<Option<RunState>> {
        read_json(&self.state_file())
    }
    pub fn write_state(&self, s: &RunState) -> io::Result<()> {
        write_json(&self.state_file(), s)
    }

    /// The task as it stands now, the truth about its process included.
    pub fn view(&self) -> io::Result<LocalTask> {
        let spec = self.spec()?;
        let launch = self.launch()?;
        let state = self.state()?;
        let phase = phase(launch.as_ref(), state.as_ref(), &proc::alive_as);
        Ok(LocalTask {
            dir: self.clone(),
            spec,
            launch,
            state,
            phase,
        })
    }
}

/// What spawn decided; the runner reads it. No secrets (those are the password file and
/// the runner's inherited environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub id: String,
    /// Tells this run of the task apart from an earlier one under the same id (a pod's uid).
    #[serde(default)]
    pub uid: String,
    pub branch: String,
    pub repo: String,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The pod's env contract as literals (TASK_ID, GIT_REPO, budgets, policies …);
    /// the runner adds the per-machine ones (paths, port, password).
    pub env: Vec<(String, String)>,
    /// false: `--no-sandbox`, the agent runs with the user's rights.
    pub sandbox: bool,
    /// `--max-parallel`: this task runs when one of slots 0..max_parallel is free.
    pub max_parallel: usize,
    /// The asdo binary the runner runs `agent` with (the spawning one).
    pub asdo: PathBuf,
}

/// A process, told apart from a later one with the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessId {
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22: clock ticks after boot.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`: a reboot makes every recorded process gone.
    pub boot_id: String,
}

/// Written by spawn right after starting the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Launch {
    pub runner: ProcessId,
}

/// Written by the runner only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    pub runner: Option<ProcessId>,
    /// When the runner began waiting for a slot.
    #[serde(default)]
    pub queued_at: Option<String>,
    /// When the agent process started (the container's startedAt).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// OpenCode's server port on 127.0.0.1 (ASDO_OPENCODE_PORT), for attach/send.
    #[serde(default)]
    pub port: Option<u16>,
    /// The sandbox's (or, with --no-sandbox, the agent's) pid.
    #[serde(default)]
    pub agent_pid: Option<u32>,
    /// The runner could not start the agent: why (exit code 127).
    #[serde(default)]
    pub error: Option<String>,
}

/// Where a local task is, in the words `list` uses for pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Created; its runner has not reported yet, or waits for a parallel slot.
    Queued,
    Running,
    Succeeded,
    /// `exit_code`, or `lost`: the runner is gone and recorded no exit code.
    Failed {
        exit_code: Option<i32>,
        lost: bool,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued => "Queued",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed { .. } => "Failed",
        }
    }
    pub fn is_finished(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed { .. })
    }
}

/// The phase from the two records and whether their processes still run.
pub fn phase(
    launch: Option<&Launch>,
    state: Option<&RunState>,
    alive: &dyn Fn(&ProcessId) -> bool,
) -> Phase {
    if let Some(code) = state.and_then(|s| s.exit_code) {
        return if code == 0 {
            Phase::Succeeded
        } else {
            Phase::Failed {
                exit_code: Some(code),
                lost: false,
            }
        };
    }
    let runner = state
        .and_then(|s| s.runner.as_ref())
        .or(launch.map(|l| &l.runner));
    match runner {
        Some(p) if alive(p) => {
            if state.is_some_and(|s| s.started_at.is_some()) {
                Phase::Running
            } else {
                Phase::Queued
            }
        }
        // A spec without a launch: spawn was interrupted between the two, or is
        // writing it now; only a launch or state makes a process to judge.
        None => Phase::Queued,
        Some(_) => Phase::Failed {
            exit_code: None,
            lost: true,
        },
    }
}

/// One local task, read.
#[derive(Debug, Clone)]
pub struct LocalTask {
    pub dir: TaskDir,
    pub spec: Spec,
    pub launch: Option<Launch>,
    pub state: Option<RunState>,
    pub phase: Phase,
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn write_json<T: Serialize>(path: &Path, v: &T) -> io::Result<()> {
    let mut b = serde_json::to_vec_pretty(v).map_err(io::Error::other)?;
    b.push(b'\n');
    write_atomic(path, &b)
}

/// RFC 3339 with nanoseconds, always nine digits, UTC: the kubelet's `timestamps=true`
/// prefix (Go's RFC3339NanoFixed), which `follow::split_timestamp` parses.
pub fn rfc3339_nano(t: k8s_openapi::jiff::Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond()
    )
}

pub fn now() -> String {
    rfc3339_nano(k8s_openapi::jiff::Timestamp::now())
}

/// 32 random bytes from the OS, hex.
pub fn random_hex() -> io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A uid in the API server's format (8-4-4-4-12 hex), random.
pub(super) fn uid() -> io::Result<String> {
    let h = random_hex()?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

impl TaskDir {
    /// The last `lines` lines of the log, timestamps removed (the task model's tail).
    pub fn log_tail(&self, lines: usize) -> String {
        let raw = self.log_end();
        let all: Vec<&[u8]> = raw.split_inclusive(|b| *b == b'\n').collect();
        let mut out = String::new();
        for l in &all[all.len().saturating_sub(lines)..] {
            let body = crate::follow::split_timestamp(l).map_or(*l, |(_, rest)| rest);
            out.push_str(&String::from_utf8_lossy(body));
        }
        out
    }

    /// The log's last MiB at most, from a line's start: a tail never reads a long run's
    /// whole log (the web page re-reads it as the log grows), as the cluster's tail read
    /// is capped in bytes.
    fn log_end(&self) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(self.log()) else {
            return Vec::new();
        };
        let cap = crate::cluster::LOG_TAIL_MAX as u64;
        let len = f.metadata().map_or(0, |m| m.len());
        let from = len.saturating_sub(cap);
        let mut raw = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.take(cap).read_to_end(&mut raw).is_err() {
            return Vec::new();
        }
        if from > 0 {
            // Started inside a line: its end is not a whole line.
            let cut = raw
                .iter()
                .position(|b| *b == b'\n')
                .map_or(raw.len(), |i| i + 1);
            raw.drain(..cut);
        }
        raw
    }

    /// The first MiB of the log, its lines without their timestamps (what the API
    /// server's log endpoint gives without `timestamps=true`): where the agent announces
    /// its session, early.
    pub fn log_head(&self) -> String {
        use std::io::Read;
        let mut raw = Vec::new();
        if let Ok(f) = std::fs::File::open(self.log()) {
            let _ = f
                .take(crate::cluster::LOG_TAIL_MAX as u64)
                .read_to_end(&mut raw);
        }
        let mut out = String::with_capacity(raw.len());
        for l in raw.split_inclusive(|b| *b == b'\n') {
            let body = crate::follow::split_timestamp(l).map_or(l, |(_, rest)| rest);
            out.push_str(&String::from_utf8_lossy(body));
        }
        out
    }

    /// The log as the task object reads it: the tail, and the session the tail announces,
    /// else the head (a long run's announcement has scrolled out of the tail), as
    /// [`crate::cluster::agent_log`] reads a pod's.
    pub fn agent_log(&self) -> crate::cluster::AgentLog {
        let tail = self.log_tail(crate::marker::TAIL_LINES as usize);
        let mut session = crate::marker::last_session(&tail).map(str::to_string);
        if session.is_none() && tail.lines().count() >= crate::marker::TAIL_LINES as usize {
            session = crate::marker::session_announcement(&self.log_head()).and_then(Result::ok);
        }
        crate::cluster::AgentLog { tail, session }
    }

    /// A person's answer (`asdo answer`), as a pod's annotation is on a cluster: the line
    /// `key="value"` (Go-quoted, as the kubelet writes its downwardAPI file) in
    /// `input/annotations`, the file ASDO_ANSWERS_FILE names and the agent cannot write.
    /// An earlier answer to the same request is replaced. Written beside it and renamed,
    /// so the agent never reads half a file.
    pub fn answer(&self, key: &str, value: &str) -> io::Result<()> {
        let old = std::fs::read_to_string(self.answers()).unwrap_or_default();
        let prefix = format!("{key}=");
        let mut text: String = old
            .lines()
            .filter(|l| !l.starts_with(&prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!(
            "{key}={}\n",
            crate::agent::answers::quote_go(value)
        ));
        let tmp = self.input().join(".annotations.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.answers())
    }

    /// Asks a running task to stop as a pod's deletion does: SIGTERM to the agent (which
    /// pushes its work in progress and ends 143), never to the sandbox around it. Returns
    /// whether a process was signalled.
    pub fn cancel(&self) -> Result<bool> {
        let v = self
            .view()
            .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
        if v.phase == Phase::Queued {
            // Its runner waits for a slot and looks for this file before starting the agent.
            std::fs::write(self.cancel_requested(), b"")
                .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
            return Ok(true);
        }
        let st = v.state.unwrap_or_default();
        let (Phase::Running, Some(outer)) = (&v.phase, st.agent_pid) else {
            return Ok(false);
        };
        let target = if v.spec.sandbox {
            proc::below_bwrap(outer)
        } else {
            Some(outer)
        };
        let Some(pid) = target else { return Ok(false) };
        // SAFETY: kill(2) on a pid read from this task's own records while its runner runs.
        Ok(unsafe { libc::kill(pid as i32, libc::SIGTERM) } == 0)
    }

    /// Deletes the task's directory (clone, HOME, log) — only once its process is gone.
    pub fn remove(&self) -> Result<()> {
        let v = self
            .view()
            .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
        if !v.phase.is_finished() {
            return Err(Error::usage(format!(
                "local task {} is {}: it is removed once it has ended",
                v.spec.id,
                v.phase.name()
            )));
        }
        // Renamed first, so a concurrent reader never sees half a task.
        let gone = self.dir.with_file_name(format!(
            ".removing-{}-{}",
            self.dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(&self.dir, &gone)
            .and_then(|()| std::fs::remove_dir_all(&gone))
            .map_err(|e| Error::other(format!("removing {}: {e}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_logs_tail_is_read_from_its_last_mib_on_whole_lines() {
        let d = std::env::temp_dir().join(format!("asdo-localtail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = TaskDir { dir: d.clone() };
        // 3 MiB of stamped lines, then the ending: the cut at 1 MiB falls inside a line.
        let mut log = Vec::new();
        let mut i = 0;
        while log.len() < 3 * crate::cluster::LOG_TAIL_MAX {
            log.extend(super::super::logfile::stamped(
                format!("· bash step {i} {}\n", "x".repeat(97)).as_bytes(),
            ));
            i += 1;
        }
        log.extend(super::super::logfile::stamped(b"asdo: done 0123abcd\n"));
        std::fs::write(t.log(), &log).unwrap();
        let end = t.log_end();
        assert!(end.len() <= crate::cluster::LOG_TAIL_MAX, "{}", end.len());
        assert!(
            crate::follow::split_timestamp(&end).is_some(),
            "starts on a whole line"
        );
        let tail = t.log_tail(2);
        assert_eq!(
            tail,
            format!(
                "· bash step {} {}\nasdo: done 0123abcd\n",
                i - 1,
                "x".repeat(97)
            )
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn pid(n: u32) -> ProcessId {
        ProcessId {
            pid: n,
            start_ticks: 1,
            boot_id: "b".into(),
        }
    }

    #[test]
    fn phase_tells_queued_running_done_and_lost() {
        let launch = Launch { runner: pid(7) };
        let yes = |_: &ProcessId| true;
        let no = |_: &ProcessId| false;
        assert_eq!(phase(None, None, &no), Phase::Queued);
        assert_eq!(phase(Some(&launch), None, &yes), Phase::Queued);
        let lost = Phase::Failed {
            exit_code: None,
            lost: true,
        };
        assert_eq!(phase(Some(&launch), None, &no), lost);
        let mut s = RunState {
            runner: Some(pid(7)),
            queued_at: Some(now()),
            ..Default::default()
        };
        assert_eq!(phase(Some(&launch), Some(&s), &yes), Phase::Queued);
        s.started_at = Some(now());
        assert_eq!(phase(Some(&launch), Some(&s), &yes), Phase::Running);
        // The runner gone mid-run (killed, reboot): lost, never Running.
        assert_eq!(phase(Some(&launch), Some(&s), &no), lost);
        s.exit_code = Some(0);
        assert_eq!(phase(Some(&launch), Some(&s), &no), Phase::Succeeded);
        s.exit_code = Some(12);
        assert_eq!(
            phase(Some(&launch), Some(&s), &no),
            Phase::Failed {
                exit_code: Some(12),
                lost: false
            }
        );
    }

    #[test]
    fn timestamps_are_the_kubelets() {
        let t: k8s_openapi::jiff::Timestamp = "2026-12-04T14:00:07.5Z".parse().unwrap();
        let s = rfc3339_nano(t);
        assert_eq!(s, "2026-12-04T14:00:07.500000000Z");
        let line = format!("{s} hello\n");
        let (ts, rest) = crate::follow::split_timestamp(line.as_bytes()).unwrap();
        assert_eq!(ts, t);
        assert_eq!(rest, b"hello\n");
    }
}
