//! `asdo logs` for a local task: the stamped log file read the way the API server's log
//! endpoint is (`--tail`, `--since`, `--timestamps`, follow to the end), through the same
//! `follow::LineSink` and `follow::Cursor`, so output is identical on both runtimes.
//! Following is a read of the file from the last offset until the task has ended and
//! the file has nothing more; the file is local, so no stream can be cut.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{Phase, TaskDir};
use crate::error::{Error, Result, exit};
use crate::follow::{self, LineSink};
use crate::taskpod::TaskPod;

/// How often a followed local log is read again.
const POLL: Duration = Duration::from_millis(200);

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub follow: bool,
    pub tail: Option<i64>,
    pub since: Option<Duration>,
}

/// How a followed log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The task ended with this exit code (lost: 1).
    Finished { phase: Phase, exit_code: i32 },
    /// Not following, and the task has not ended.
    NotEnded,
}

/// The exit code `logs`/`wait` give a task that was lost (as for a pod deleted mid-run).
pub const EXIT_LOST: i32 = exit::FAILURE;

fn exit_of(p: &Phase) -> i32 {
    match p {
        Phase::Succeeded => 0,
        Phase::Failed {
            exit_code: Some(c), ..
        } => *c,
        _ => EXIT_LOST,
    }
}

/// Prints the task's log per `opts` into `sink`; with `follow`, until the task ends.
pub async fn print(t: &TaskDir, opts: &Options, sink: &mut dyn LineSink) -> Result<End> {
    let io = |e: std::io::Error| Error::other(format!("{}: {e}", t.log().display()));
    let min = opts
        .since
        .map(|d| Timestamp::now() - SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO));
    let mut offset = 0u64;
    let mut partial: Vec<u8> = Vec::new();
    // --tail N: the last N complete lines of what is there now (at or after --since).
    if let Some(n) = opts.tail {
        let text = read_from(t, 0).map_err(io)?;
        let complete = text.len() - text.iter().rev().take_while(|b| **b != b'\n').count();
        let lines: Vec<&[u8]> = text[..complete]
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| keep(l, min))
            .collect();
        let skip = lines.len().saturating_sub(n.max(0) as usize);
        for l in &lines[skip..] {
            emit(l, sink).map_err(write_err)?;
        }
        sink.flush().map_err(write_err)?;
        offset = complete as u64;
    }
    loop {
        // The phase before the read: a task seen ended has written its last line.
        let phase = t.view().map_err(io)?.phase;
        let chunk = read_from(t, offset).map_err(io)?;
        offset += chunk.len() as u64;
        partial.extend_from_slice(&chunk);
        let complete = partial.len() - partial.iter().rev().take_while(|b| **b != b'\n').count();
        for l in partial[..complete].split_inclusive(|b| *b == b'\n') {
            if keep(l, min) {
                emit(l, sink).map_err(write_err)?;
            }
        }
        partial.drain(..complete);
        sink.flush().map_err(write_err)?;
        if phase.is_finished() {
            if !partial.is_empty() {
                emit(&partial, sink).map_err(write_err)?;
                sink.flush().map_err(write_err)?;
            }
            let exit_code = exit_of(&phase);
            return Ok(End::Finished { phase, exit_code });
        }
        if !opts.follow {
            return Ok(End::NotEnded);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn read_from(t: &TaskDir, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match std::fs::File::open(t.log()) {
        Ok(f) => f,
        // Queued: no log yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn keep(line: &[u8], min: Option<Timestamp>) -> bool {
    match (min, follow::split_timestamp(line)) {
        (Some(min), Some((ts, _))) => ts >= min,
        _ => true,
    }
}

fn emit(line: &[u8], sink: &mut dyn LineSink) -> std::io::Result<()> {
    match line.iter().position(|b| *b == b' ') {
        Some(sp) if follow::split_timestamp(line).is_some() => {
            sink.line(Some(&line[..sp]), &line[sp + 1..])
        }
        _ => sink.line(None, line),
    }
}

fn write_err(e: std::io::Error) -> Error {
    Error::other(format!("writing the log: {e}"))
}

/// Why a task's process is not there, in one line (for `logs`, `wait`, `status`).
pub fn lost_words(id: &str) -> String {
    format!(
        "task {id} was lost: its local runner is gone without an exit code (killed, or the machine restarted); its log and clone are kept in the state directory"
    )
}

/// `asdo logs T001` on the local runtime: the header, the log (followed to the end),
/// the ending, and the task's exit code, as `follow::many::follow_one` does for a pod.
pub async fn follow_one(
    store: &super::Store,
    task_or_pod: &str,
    opts: &follow::LogOptions,
) -> Result<i32> {
    let Some((t, pod)) = store.pod(task_or_pod)? else {
        return Err(not_found(store, task_or_pod));
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let id = TaskPod(&pod).task_label().unwrap_or(&name).to_string();
    eprintln!("==> task {id}: local task {name} ({})", t.dir.display());
    if !opts.follow && !TaskPod(&pod).has_started() && !TaskPod(&pod).is_finished() {
        eprintln!("==> task {id}: {}", TaskPod(&pod).not_started());
        return Ok(exit::OK);
    }
    let mut sink = follow::Stdout::new(opts.timestamps);
    let o = Options {
        follow: opts.follow,
        tail: opts.tail,
        since: opts.since,
    };
    match print(&t, &o, &mut sink).await? {
        End::NotEnded => Ok(exit::OK),
        End::Finished { exit_code, .. } => {
            let pod = store.pod(task_or_pod)?.map(|(_, p)| p).unwrap_or(pod);
            eprintln!("==> task {id}: {}", TaskPod(&pod).ending());
            Ok(exit_code)
        }
    }
}

/// `asdo logs --all` / `-l` on the local runtime: every matching task, each line
/// prefixed with its task id; new tasks are picked up until Ctrl-C (without follow:
/// each task's log as it is now, once).
pub async fn follow_many(
    store: &super::Store,
    selector: &str,
    opts: &follow::LogOptions,
) -> Result<i32> {
    use follow::many::{Prefixed, colour_prefix};
    use std::io::IsTerminal;
    use std::sync::{Arc, Mutex};
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let o = Options {
        follow: opts.follow,
        tail: opts.tail,
        since: opts.since,
    };
    let sink_for = |pod: &k8s_openapi::api::core::v1::Pod| {
        let task = TaskPod(pod).task_label().unwrap_or_default().to_string();
        Prefixed {
            out: out.clone(),
            prefix: colour_prefix(&task, colour),
            timestamps: opts.timestamps,
        }
    };
    if !opts.follow {
        for pod in store.pods(selector)? {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if !TaskPod(&pod).has_started() && !TaskPod(&pod).is_finished() {
                eprintln!("==> {name}: {}", TaskPod(&pod).not_started());
                continue;
            }
            let t = store.task(TaskPod(&pod).task_label().unwrap_or_default());
            if let Err(e) = print(&t, &o, &mut sink_for(&pod)).await {
                eprintln!("{name}: {e}");
            }
        }
        return Ok(exit::OK);
    }
    eprintln!(
        "==> following local tasks ({selector}) in {}; Ctrl-C to stop",
        store.root.display()
    );
    let mut followed = std::collections::HashSet::new();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        for pod in store.pods(selector)? {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if !followed.insert(uid) {
                continue;
            }
            let id = TaskPod(&pod).task_label().unwrap_or_default().to_string();
            let t = store.task(&id);
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut sink = sink_for(&pod);
            let (o, store) = (o.clone(), store.clone());
            tokio::spawn(async move {
                match print(&t, &o, &mut sink).await {
                    // Each task's ending in the words the cluster's `logs --all` uses.
                    Ok(End::Finished { .. }) => match store.pod(&id) {
                        Ok(Some((_, p))) => eprintln!("==> {name}: {}", TaskPod(&p).ending()),
                        Ok(None) => eprintln!("==> {name}: removed"),
                        Err(e) => eprintln!("{name}: {e}"),
                    },
                    Ok(End::NotEnded) => {}
                    Err(e) => eprintln!("{}: {e}", t.dir.display()),
                }
            });
        }
        tokio::select! {
            _ = &mut interrupted => return Ok(exit::INTERRUPTED),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// `spawn --wait`: until the task runs (or has ended), at most `limit`.
pub async fn wait_started(store: &super::Store, id: &str, limit: Duration) -> Result<()> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let Some((_, pod)) = store.pod(id)? else {
            return Err(not_found(store, id));
        };
        if TaskPod(&pod).has_started() || TaskPod(&pod).is_finished() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::other(format!(
                "local task {id} did not start within {}: {}",
                crate::humantime::short(limit),
                TaskPod(&pod).not_started()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`crate::runtime::Runtime::not_found`] for code inside the local runtime.
pub fn not_found(store: &super::Store, task_or_pod: &str) -> Error {
    crate::runtime::Runtime::Local(store.clone()).not_found(task_or_pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>);
    impl LineSink for Collect {
        fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
            assert!(ts.is_some());
            self.0.push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn tail_and_end_of_a_finished_task() {
        let d = std::env::temp_dir().join(format!("asdo-locallogs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = TaskDir { dir: d.clone() };
        let mut log = Vec::new();
        for l in ["a\n", "b\n", "c\n"] {
            log.extend(super::super::logfile::stamped(l.as_bytes()));
        }
        std::fs::write(t.log(), &log).unwrap();
        std::fs::write(
            t.spec_file(),
            r#"{"id":"T1","branch":"b","repo":"r","createdAt":"x","env":[],"sandbox":true,"maxParallel":1,"asdo":"/a"}"#,
        )
        .unwrap();
        t.write_state(&super::super::RunState {
            exit_code: Some(12),
            ..Default::default()
        })
        .unwrap();
        let mut c = Collect(Vec::new());
        let opts = Options {
            follow: true,
            tail: Some(2),
            since: None,
        };
        let end = print(&t, &opts, &mut c).await.unwrap();
        assert_eq!(c.0, ["b\n", "c\n"]);
        assert_eq!(
            end,
            End::Finished {
                phase: Phase::Failed {
                    exit_code: Some(12),
                    lost: false
                },
                exit_code: 12
            }
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
