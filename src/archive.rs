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
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::follow;
use crate::marker::{self, Marker};
use crate::task::{ANN_BRANCH, ANN_ENVIRONMENT, ANN_REPO, ANN_SPEC_DIR, CONTAINER, LABEL_TASK_ID};

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

    /// Save `pod`'s log and summary. An error means nothing may be deleted for this pod.
    pub async fn save(&self, api: &Api<Pod>, pod: &Pod) -> Result<Saved> {
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
            Err(kube::Error::Api(s)) if s.code == 400 && !ever_ran(pod) => (
                None,
                Some(format!("no log: the container never ran ({})", s.message)),
            ),
            Err(e) => return Err(Error::from_kube(&what, e)),
        };
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
    /// The last outcome marker (not a progress line).
    pub outcome: Option<Marker>,
}

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
        outcome: None,
    };
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
        let text = String::from_utf8_lossy(&line);
        if let Some(mk) = marker::parse(text.trim_end_matches(['\n', '\r']))
            && mk.is_verdict()
        {
            facts.outcome = Some(mk);
        }
    }
    let mut f = f.into_inner().map_err(|e| fail(e.into_error()))?;
    f.flush().map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(facts)
}

/// Whether the agent container ever started (so a log exists, or existed).
fn ever_ran(pod: &Pod) -> bool {
    follow::agent_status(pod).is_some_and(|c| {
        c.last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some())
            || c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    })
}

/// Write, sync, then rename: the final name only ever holds complete content.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let fail = |e: std::io::Error| Error::other(format!("write {}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The JSON summary of one task pod: what `asdo list`/`wait` would say about it, kept.
pub fn summary(pod: &Pod, log: Option<&LogFacts>, note: Option<String>) -> Value {
    let m = &pod.metadata;
    let ann = |k: &str| m.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    let (phase, exit_code) = follow::outcome(pod);
    let terminated = follow::agent_status(pod).and_then(|c| c.state.as_ref()?.terminated.as_ref());
    let outcome = log.and_then(|l| l.outcome.clone());
    let commit = match &outcome {
        Some(Marker::Done(sha)) => Some(sha.clone()),
        _ => None,
    };
    json!({
        "task": m.labels.as_ref().and_then(|l| l.get(LABEL_TASK_ID)),
        "pod": m.name,
        "namespace": m.namespace,
        "uid": m.uid,
        "environment": ann(ANN_ENVIRONMENT),
        "branch": ann(ANN_BRANCH),
        "repo": ann(ANN_REPO),
        "specDir": ann(ANN_SPEC_DIR),
        "phase": phase,
        "exitCode": terminated.map(|t| t.exit_code).or((phase == "Succeeded").then_some(exit_code)),
        "reason": terminated.and_then(|t| t.reason.clone())
            .or_else(|| pod.status.as_ref().and_then(|s| s.reason.clone())),
        "outcome": outcome.map(|o| o.to_string()),
        "commit": commit,
        "created": m.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        "started": terminated.and_then(|t| t.started_at.as_ref()).map(|t| t.0.to_string()),
        "finished": terminated.and_then(|t| t.finished_at.as_ref()).map(|t| t.0.to_string()),
        "log": log.and_then(|l| l.path.file_name()).map(|n| n.to_string_lossy().into_owned()),
        "logBytes": log.map(|l| l.bytes),
        "note": note,
        "savedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s["task"], "T1");
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["exitCode"], 12);
        assert_eq!(s["outcome"], "asdo: failed push: rejected");
        assert_eq!(s["commit"], Value::Null);
        assert_eq!(s["branch"], "b");
        assert_eq!(s["finished"], "2026-01-01T00:10:00Z");
        assert!(s["log"].as_str().unwrap().starts_with("asdo-archive-"));
        assert_eq!(s["logBytes"], log.len());
    }

    #[tokio::test]
    async fn a_log_is_bytes_kept_as_they_are_and_read_lossily_for_markers() {
        let log = b"asdo: cloning\n\xff\xfe binary \x80 output\nasdo: done abc123\nno newline \xc3";
        let (f, kept) = facts(log).await;
        assert_eq!(kept, log.to_vec(), "byte for byte");
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
