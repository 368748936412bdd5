//! Every task pod, kept current by ONE watch of `app=agent-orchestrator` (the runtime's
//! [`Watch`]: a kube watch of the pods, or the local runtime's poll of its state
//! directory; no per-task polling), as [`Row`]s (the task object); changes are broadcast
//! to every open page.
//!
//! A row's log-derived facts (last step, totals, PR, the agent's failure step) come from
//! the log tail: read once when a pod is first seen or changes (bounded concurrency, a
//! finished pod's tail is final), and fed live by the log follower of any open task page.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast};

use crate::marker;
use crate::runtime::Runtime;
use crate::runtime::watch::{Change, Watch};
use crate::taskpod::{TaskPod, TaskState};

/// One task as the page gets it: the task object (`src/task.schema.json`) and the key the
/// page indexes it by (`namespace/pod`: unique across namespaces, stable across updates).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub key: String,
    #[serde(flatten)]
    pub task: TaskState,
}

/// The row for `pod`, with what its log tail says once it has been read, and the session
/// its log announced (a long run's announcement is older than the tail).
pub fn row(pod: &Pod, tail: Option<&str>, session: Option<&str>, now: Timestamp) -> Row {
    let mut task = TaskState::new(pod, tail, now);
    task.session_id = task.session_id.or(session.map(str::to_string));
    Row {
        key: format!("{}/{}", task.namespace, task.pod),
        task,
    }
}

/// Log tails read at once when many pods appear (500 finished pods at start-up).
const TAIL_READS: usize = 8;

/// What open pages are told.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Update {
    Row {
        row: Box<Row>,
    },
    Remove {
        key: String,
    },
    /// The watch cannot go on (RBAC, bad selector): said once, on the page too.
    Error {
        message: String,
    },
}

struct Entry {
    pod: Pod,
    tail: Option<String>,
    /// The uid whose tail was read last (a finished pod's is final).
    tail_uid: Option<String>,
    /// The session the log announced, kept when the announcement leaves the tail.
    session: Option<String>,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, Entry>,
    /// The initial list has been seen.
    synced: bool,
    error: Option<String>,
}

pub struct Board {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Update>,
    reading: Mutex<HashSet<String>>,
    tails: Semaphore,
}

/// What a page gets first: every row, whether the list is complete, and any error.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub synced: bool,
    pub error: Option<String>,
    pub rows: Vec<Row>,
}

fn key_of(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

impl Board {
    pub fn new() -> Arc<Board> {
        let (tx, _) = broadcast::channel(4096);
        Arc::new(Board {
            inner: Mutex::new(Inner::default()),
            tx,
            reading: Mutex::new(HashSet::new()),
            tails: Semaphore::new(TAIL_READS),
        })
    }

    /// Subscribe first, then take the snapshot: nothing between the two is missed (an
    /// update seen twice is harmless, rows are replaced by key).
    pub fn subscribe(&self) -> (broadcast::Receiver<Update>, Snapshot) {
        let rx = self.tx.subscribe();
        (rx, self.snapshot())
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap();
        let now = Timestamp::now();
        Snapshot {
            synced: inner.synced,
            error: inner.error.clone(),
            rows: inner
                .entries
                .values()
                .map(|e| row(&e.pod, e.tail.as_deref(), e.session.as_deref(), now))
                .collect(),
        }
    }

    /// One task's row, if the watch knows its pod.
    pub fn row(&self, key: &str) -> Option<Row> {
        let inner = self.inner.lock().unwrap();
        inner.entries.get(key).map(|e| {
            row(
                &e.pod,
                e.tail.as_deref(),
                e.session.as_deref(),
                Timestamp::now(),
            )
        })
    }

    pub fn pod(&self, key: &str) -> Option<Pod> {
        self.inner
            .lock()
            .unwrap()
            .entries
            .get(key)
            .map(|e| e.pod.clone())
    }

    fn publish(&self, key: &str) {
        if let Some(row) = self.row(key) {
            let _ = self.tx.send(Update::Row { row: Box::new(row) });
        }
    }

    /// A pod as the watch delivered it. Returns whether its tail should be (re)read.
    fn apply(&self, pod: Pod, publish: bool) -> bool {
        let key = key_of(&pod);
        let uid = pod.metadata.uid.clone();
        let finished = TaskPod(&pod).is_finished();
        let started = TaskPod(&pod).has_started();
        let read = {
            let mut inner = self.inner.lock().unwrap();
            let entry = inner.entries.entry(key.clone()).or_insert(Entry {
                pod: pod.clone(),
                tail: None,
                tail_uid: None,
                session: None,
            });
            if entry.pod.metadata.uid != uid {
                // Another run under the same name: nothing of the old log applies.
                entry.tail = None;
                entry.tail_uid = None;
                entry.session = None;
            }
            entry.pod = pod;
            // A finished pod's tail, once read, is final; a running one's is re-read on
            // each change the watch reports (never on a timer).
            (started || finished) && !(finished && entry.tail_uid == uid && entry.tail.is_some())
        };
        if publish {
            self.publish(&key);
        }
        read
    }

    fn remove(&self, pod: &Pod) {
        let key = key_of(pod);
        self.inner.lock().unwrap().entries.remove(&key);
        let _ = self.tx.send(Update::Remove { key });
    }

    /// A log line seen by an open task page's follower: markers and steps update the row
    /// (the tasks view then shows a running task's last step live, without another read).
    pub fn saw_line(&self, key: &str, uid: Option<&str>, line: &str) {
        if !(line.starts_with(marker::PREFIX) || line.starts_with(marker::STEP)) {
            return;
        }
        {
            let mut inner = self.inner.lock().unwrap();
            let Some(e) = inner.entries.get_mut(key) else {
                return;
            };
            if uid.is_some() && e.pod.metadata.uid.as_deref() != uid {
                return;
            }
            if let Some(id) = marker::last_session(line) {
                e.session = Some(id.to_string());
            }
            let tail = e.tail.get_or_insert_with(String::new);
            tail.push_str(line.trim_end_matches('\n'));
            tail.push('\n');
            let keep = marker::TAIL_LINES as usize;
            let n = tail.lines().count();
            if n > keep {
                let cut: usize = tail.lines().take(n - keep).map(|l| l.len() + 1).sum();
                tail.drain(..cut);
            }
        }
        self.publish(key);
    }

    fn set_tail(&self, key: &str, uid: Option<String>, log: crate::cluster::AgentLog) {
        {
            let mut inner = self.inner.lock().unwrap();
            let Some(e) = inner.entries.get_mut(key) else {
                return;
            };
            if e.pod.metadata.uid != uid {
                return;
            }
            e.tail = Some(log.tail);
            e.session = log.session.or(e.session.take());
            e.tail_uid = uid;
        }
        self.publish(key);
    }

    fn fail(&self, message: String) {
        eprintln!("error: {message}");
        self.inner.lock().unwrap().error = Some(message.clone());
        let _ = self.tx.send(Update::Error { message });
    }
}

/// Reads a pod's log tail in the background, at most [`TAIL_READS`] at once, one per pod.
fn read_tail(board: &Arc<Board>, runtime: &Runtime, pod: &Pod) {
    let key = key_of(pod);
    if !board.reading.lock().unwrap().insert(key.clone()) {
        return;
    }
    let (board, runtime, pod) = (board.clone(), runtime.clone(), pod.clone());
    tokio::spawn(async move {
        let permit = board.tails.acquire().await;
        let tail = runtime.agent_log(&pod).await;
        drop(permit);
        board.reading.lock().unwrap().remove(&key);
        match tail {
            Some(t) => board.set_tail(&key, pod.metadata.uid.clone(), t),
            None => tracing::debug!("the row of {key} has no log facts"),
        }
    });
}

/// Feeds the board from the runtime's watch of the task pods (`runtime.watch`) for as
/// long as the server runs; `runtime` reads the log tails.
pub async fn watch(board: Arc<Board>, runtime: Runtime, mut changes: Watch) {
    let mut listing = false;
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(change) = changes.next().await {
        match change {
            Ok(Change::Listing) => {
                listing = true;
                listed.clear();
            }
            Ok(Change::Apply(p)) => {
                if listing {
                    listed.insert(key_of(&p));
                }
                // Before the first complete list, pages get the rows with the snapshot.
                let synced = board.inner.lock().unwrap().synced;
                if board.apply(p.clone(), synced) {
                    read_tail(&board, &runtime, &p);
                }
            }
            Ok(Change::Listed) => {
                listing = false;
                // Pods gone while the watch was re-listing are gone for the page too.
                let gone: Vec<Pod> = {
                    let inner = board.inner.lock().unwrap();
                    inner
                        .entries
                        .iter()
                        .filter(|(k, _)| !listed.contains(*k))
                        .map(|(_, e)| e.pod.clone())
                        .collect()
                };
                for p in gone {
                    board.remove(&p);
                }
                let first = {
                    let mut inner = board.inner.lock().unwrap();
                    inner.error = None;
                    !std::mem::replace(&mut inner.synced, true)
                };
                if first {
                    // Pages opened before the list was complete get every row now.
                    let snapshot = board.snapshot();
                    for row in snapshot.rows {
                        let _ = board.tx.send(Update::Row { row: Box::new(row) });
                    }
                }
            }
            Ok(Change::Delete(p)) => board.remove(&p),
            Err(e) => {
                board.fail(e.to_string());
                return;
            }
        }
    }
}
