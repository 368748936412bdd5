//! `asdo cleanup --save-logs DIR`: keep a finished task's transcript before its pod goes.
//!
//! For each pod: the agent container's full log and a JSON summary (task, phase, exit code,
//! outcome marker, branch, repo, commit, times) are written to `DIR/<namespace>/`, each
//! through a temporary file that is synced and then renamed, so a file that exists is
//! complete. Only then may the caller delete the pod: `save` returning an error means "keep
//! it". Names carry the pod's UID prefix, so a re-run of the same task id never overwrites
//! the earlier run's archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::marker;
use crate::task::CONTAINER;
use crate::taskpod::{TaskPod, TaskState};

/// Where the archive goes; created (with parents) when opened.
pub struct Archive {
    dir: PathBuf,
}

/// What was written for one pod.
pub struct Saved {
    pub log: Option<PathBuf>,
    pub summary: PathBuf,
}

impl Archive {
    /// Create `dir` if needed and prove it is writable, before any pod is touched.
    pub fn open(dir: &Path) -> Result<Archive> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::usage(format!(
                "--save-logs {}: cannot create the directory: {e}",
                dir.display()
            ))
        })?;
        let probe = dir.join(format!(".asdo-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                Error::usage(format!(
                    "--save-logs {}: the directory is not writable: {e}",
                    dir.display()
                ))
            })?;
        Ok(Archive {
            dir: dir.to_path_buf(),
        })
    }

    /// Where a pod's files go: `<dir>/<namespace>/<pod>-<uid prefix>.*` (the uid keeps an
    /// earlier run of the same task from being overwritten). Returns (pod name, dir, stem).
    fn place(&self, pod: &Pod) -> Result<(String, std::path::PathBuf, String)> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let uid: String = pod
            .metadata
            .uid
            .as_deref()
            .unwrap_or("nouid")
            .chars()
            .take(8)
            .collect();
        let dir = self.dir.join(&ns);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::other(format!("create {}: {e}", dir.display())))?;
        let stem = format!("{name}-{uid}");
        Ok((name, dir, stem))
    }

    /// Save `pod`'s log and summary. An error means nothing may be deleted for this pod.
    pub async fn save(&self, api: &Api<Pod>, pod: &Pod) -> Result<Saved> {
        let (name, dir, stem) = self.place(pod)?;

        let params = LogParams {
            container: Some(CONTAINER.to_string()),
            ..Default::default()
        };
        let what = format!("read the log of pod {name}");
        let opened = crate::cluster::within_timeout(&what, api.log_stream(&name, &params)).await?;
        let (log, log_note) = match opened {
            Ok(reader) => {
                let p = dir.join(format!("{stem}.log"));
                (Some(stream_to_file(reader, &p).await?), None)
            }
            // The container never ran (e.g. the image could not be pulled): there is no log to
            // lose, and the summary says why.
            Err(kube::Error::Api(s)) if s.code == 400 && !TaskPod(pod).ever_ran() => (
                None,
                Some(format!("no log: the container never ran ({})", s.message)),
            ),
            Err(e) => return Err(Error::from_kube(&what, e)),
        };
        self.write_summary(pod, &dir, &stem, log, log_note)
    }

    /// Save a local task's log (its file's lines, timestamps removed, as a pod's log
    /// reads) and summary: the same files as for a pod.
    pub async fn save_local(&self, pod: &Pod, log: &[u8]) -> Result<Saved> {
        let (_, dir, stem) = self.place(pod)?;
        let mut plain = Vec::with_capacity(log.len());
        for line in log.split_inclusive(|b| *b == b'\n') {
            plain.extend_from_slice(crate::follow::split_timestamp(line).map_or(line, |(_, r)| r));
        }
        let p = dir.join(format!("{stem}.log"));
        let facts = stream_to_file(futures::io::Cursor::new(plain), &p).await?;
        self.write_summary(pod, &dir, &stem, Some(facts), None)
    }

    fn write_summary(
        &self,
        pod: &Pod,
        dir: &Path,
        stem: &str,
        log: Option<LogFacts>,
        log_note: Option<String>,
    ) -> Result<Saved> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let log_path = log.as_ref().map(|l| l.path.clone());
        let summary = summary(pod, log.as_ref(), log_note);
        let summary_path = dir.join(format!("{stem}.json"));
        let mut text = serde_json::to_vec_pretty(&summary)
            .map_err(|e| Error::other(format!("encode the summary of pod {name}: {e}")))?;
        text.push(b'\n');
        write_atomically(&summary_path, &text)?;
        Ok(Saved {
            log: log_path,
            summary: summary_path,
        })
    }
}

/// What the archive learnt from a log while copying it.
pub struct LogFacts {
    pub path: PathBuf,
    pub bytes: u64,
    /// The last [`marker::TAIL_LINES`] lines, read lossily: what the task object is built
    /// from (its final markers, totals, PR), as `wait` reads it from the API.
    pub tail: String,
    /// The newest session the whole log announced: the agent announces it once, early,
    /// so a long run's tail no longer holds it.
    pub session: Option<String>,
}

/// A line kept for the tail is cut here: markers are short, a tool's output may not be.
const TAIL_LINE_MAX: usize = 8 * 1024;

/// Copies the log byte for byte to `path` (through a `.partial` file, synced, then
/// renamed), one line in memory at a time, reading each line lossily for markers: a log
/// is bytes, and a stray non-UTF-8 byte must neither stop the archive nor hide a marker.
async fn stream_to_file(reader: impl futures::AsyncBufRead, path: &Path) -> Result<LogFacts> {
    use futures::AsyncBufReadExt;
    let tmp = path.with_extension("partial");
    let fail = |e: std::io::Error| Error::other(format!("write {}: {e}", path.display()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
    let mut reader = std::pin::pin!(reader);
    let mut line = Vec::new();
    let mut facts = LogFacts {
        path: path.to_path_buf(),
        bytes: 0,
        tail: String::new(),
        session: None,
    };
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    loop {
        line.clear();
        // A log that stops flowing mid-way is bounded like any request: no new bytes
        // within --request-timeout ends this pod's archive (and keeps the pod).
        let read = reader.read_until(b'\n', &mut line);
        let n = crate::cluster::within_timeout("read the rest of the log", read)
            .await?
            .map_err(|e| {
                Error::other(format!(
                    "reading the log for {}: {e}; nothing was deleted",
                    path.display()
                ))
            })?;
        if n == 0 {
            break;
        }
        f.write_all(&line).map_err(fail)?;
        facts.bytes += n as u64;
        let kept = &line[..line.len().min(TAIL_LINE_MAX)];
        let text = String::from_utf8_lossy(kept);
        if let Some(id) = marker::session(&text) {
            facts.session = Some(id.to_string());
        }
        if tail.len() == marker::TAIL_LINES as usize {
            tail.pop_front();
        }
        tail.push_back(text.trim_end_matches(['\n', '\r']).to_string());
    }
    for l in tail {
        facts.tail.push_str(&l);
        facts.tail.push('\n');
    }
    let mut f = f.into_inner().map_err(|e| fail(e.into_error()))?;
    f.flush().map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(facts)
}

/// The final name only ever holds complete content (the one atomic write, fsutil's).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(path, bytes)
        .map_err(|e| Error::other(format!("write {}: {e}", path.display())))
}

/// The JSON summary of one task pod: the task object (`src/task.schema.json`), as `asdo
/// list -o json` would have said it at the end, plus where its log went.
pub fn summary(pod: &Pod, log: Option<&LogFacts>, note: Option<String>) -> Value {
    #[derive(Serialize)]
    struct Summary {
        #[serde(flatten)]
        task: TaskState,
        /// The log file's name, beside this one.
        log: Option<String>,
        log_bytes: Option<u64>,
        note: Option<String>,
        saved_at: String,
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut task = TaskState::new(pod, log.map(|l| l.tail.as_str()), now);
    task.session_id = task
        .session_id
        .or_else(|| log.and_then(|l| l.session.clone()));
    let s = Summary {
        task,
        log: log
            .and_then(|l| l.path.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
        log_bytes: log.map(|l| l.bytes),
        note,
        saved_at: now.to_string(),
    };
    serde_json::to_value(&s).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-t1", "namespace": "ns", "uid": "0123456789ab",
                         "labels": {"task-id": "T1"},
                         "annotations": {"agentic-sdlc/branch": "b", "agentic-sdlc/repo": "r"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "agent", "ready": false,
                "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 12, "reason": "Error",
                    "startedAt": "2026-01-01T00:00:05Z", "finishedAt": "2026-01-01T00:10:00Z"}}}]}
        }))
        .unwrap()
    }

    async fn facts(log: &[u8]) -> (LogFacts, Vec<u8>) {
        let p = std::env::temp_dir().join(format!(
            "asdo-archive-{}-{}.log",
            std::process::id(),
            log.len()
        ));
        let f = stream_to_file(futures::io::Cursor::new(log.to_vec()), &p)
            .await
            .unwrap();
        let kept = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        (f, kept)
    }

    #[tokio::test]
    async fn summary_says_how_the_task_ended() {
        let log = "asdo: cloning\nasdo: failed push: rejected\nasdo: running hooks\n";
        let (f, kept) = facts(log.as_bytes()).await;
        assert_eq!(kept, log.as_bytes());
        let s = summary(&pod(), Some(&f), None);
        assert_eq!(s["id"], "T1");
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["exit_code"], 12);
        assert_eq!(s["status"], "Failed (push)");
        assert_eq!(s["failed_step"], "push");
        assert_eq!(s["message"], "rejected");
        assert_eq!(s["last_marker"], "asdo: running hooks");
        assert_eq!(s["commit"], Value::Null);
        assert_eq!(s["branch"], "b");
        assert_eq!(s["finished"], "2026-01-01T00:10:00Z");
        assert!(s["log"].as_str().unwrap().starts_with("asdo-archive-"));
        assert_eq!(s["log_bytes"], log.len());
        // The task object's keys, and the archive's own.
        let schema: Value = serde_json::from_str(include_str!("task.schema.json")).unwrap();
        for k in schema["required"].as_array().unwrap() {
            assert!(s.get(k.as_str().unwrap()).is_some(), "{k} missing: {s}");
        }
        assert!(s["saved_at"].is_string());
    }

    #[tokio::test]
    async fn a_log_is_bytes_kept_as_they_are_and_read_lossily_for_markers() {
        let log = b"asdo: cloning\n\xff\xfe binary \x80 output\nasdo: done abc123\nno newline \xc3";
        let (f, kept) = facts(log).await;
        assert_eq!(kept, log.to_vec(), "byte for byte");
        assert!(
            f.tail.ends_with("asdo: done abc123\nno newline \u{fffd}\n"),
            "{:?}",
            f.tail
        );
        assert_eq!(f.bytes, log.len() as u64);
        assert_eq!(summary(&pod(), Some(&f), None)["commit"], "abc123");
    }

    #[test]
    fn an_unwritable_directory_is_refused_up_front() {
        let file = std::env::temp_dir().join(format!("asdo-archive-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let e = Archive::open(&file.join("sub")).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--save-logs"), "{e}");
        std::fs::remove_file(&file).unwrap();
    }
}
