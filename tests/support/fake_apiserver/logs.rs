//! Container logs: per-container line buffers stamped at write time, and the
//! `pods/{name}/log` endpoint with the kubelet's options, errors and streaming.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::Shared;
use super::routes::Target;
use super::server::{self, Request, Resp};
use super::status::ApiError;
use super::util;
use super::validation::FieldError;

/// Largest chunk sent at once; a follower gets whatever is there, up to this.
const CHUNK: usize = 64 * 1024;

pub(crate) struct LogBuf {
    data: Mutex<LogData>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct LogData {
    /// Every line, each ending in '\n'.
    bytes: Vec<u8>,
    lines: Vec<Line>,
    closed: bool,
}

struct Line {
    end: usize,
    nanos: i128,
}

impl LogBuf {
    pub fn new() -> Arc<LogBuf> {
        Arc::new(LogBuf {
            data: Mutex::default(),
            changed: watch::Sender::new(0),
        })
    }

    fn empty_closed() -> Arc<LogBuf> {
        let b = LogBuf::new();
        b.close();
        b
    }

    /// Appends complete lines (`text` ends in '\n'), all written at `nanos`.
    pub fn append(&self, text: &[u8], nanos: i128) {
        let mut d = self.data.lock().unwrap();
        let base = d.bytes.len();
        d.bytes.extend_from_slice(text);
        for (i, _) in text.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            d.lines.push(Line {
                end: base + i + 1,
                nanos,
            });
        }
        drop(d);
        self.changed.send_modify(|n| *n += 1);
    }

    /// No more lines will come: followers finish once they have sent everything.
    pub fn close(&self) {
        self.data.lock().unwrap().closed = true;
        self.changed.send_modify(|n| *n += 1);
    }

    /// Where a reader starts: the last `tail` lines, none written before `since`.
    fn start(&self, tail: Option<usize>, since: Option<i128>) -> usize {
        let d = self.data.lock().unwrap();
        let by_tail = tail.map_or(0, |t| d.lines.len().saturating_sub(t));
        let by_since = since.map_or(0, |s| d.lines.partition_point(|l| l.nanos < s));
        by_tail.max(by_since)
    }

    /// Lines from `cursor` on, up to about CHUNK bytes; true once closed and all read.
    /// `whole_seconds`: stamps truncated to the second, as a runtime with coarse clocks
    /// writes them (and as `sinceTime` counts), so a burst of lines shares one stamp.
    fn read(&self, cursor: &mut usize, timestamps: bool, whole_seconds: bool) -> (Vec<u8>, bool) {
        let d = self.data.lock().unwrap();
        let mut out = vec![];
        while *cursor < d.lines.len() && out.len() < CHUNK {
            let start = if *cursor == 0 {
                0
            } else {
                d.lines[*cursor - 1].end
            };
            let line = &d.lines[*cursor];
            if timestamps {
                let nanos = if whole_seconds {
                    line.nanos - line.nanos.rem_euclid(1_000_000_000)
                } else {
                    line.nanos
                };
                out.extend_from_slice(util::rfc3339_nano(nanos).as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&d.bytes[start..line.end]);
            *cursor += 1;
        }
        (out, d.closed && *cursor == d.lines.len())
    }
}

/// Log buffers by pod uid (only the first container runs, so one per pod).
#[derive(Default)]
pub(crate) struct Registry {
    bufs: Mutex<HashMap<String, Arc<LogBuf>>>,
}

impl Registry {
    pub fn insert(&self, uid: &str, buf: Arc<LogBuf>) {
        self.bufs.lock().unwrap().insert(uid.to_string(), buf);
    }

    fn get(&self, uid: &str) -> Option<Arc<LogBuf>> {
        self.bufs.lock().unwrap().get(uid).cloned()
    }

    /// A running container the kubelet did not start (an inserted pod) has an
    /// empty log that stays open until the pod goes away.
    fn get_or_open(&self, uid: &str) -> Arc<LogBuf> {
        self.bufs
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_insert_with(LogBuf::new)
            .clone()
    }

    pub fn close_and_forget(&self, uid: &str) {
        if let Some(b) = self.bufs.lock().unwrap().remove(uid) {
            b.close();
        }
    }
}

struct LogOptions {
    container: Option<String>,
    follow: bool,
    timestamps: bool,
    previous: bool,
    tail: Option<usize>,
    since: Option<i128>,
    limit_bytes: Option<usize>,
}

fn options(req: &Request, pod_name: &str) -> Result<LogOptions, ApiError> {
    let tail = req.int_param("tailLines")?;
    let since_seconds = req.int_param("sinceSeconds")?;
    let limit = req.int_param("limitBytes")?;
    let since_time = req.param("sinceTime").filter(|s| !s.is_empty());
    let mut errs = vec![];
    if let Some(t) = tail.filter(|t| *t < 0) {
        errs.push(FieldError::invalid_raw(
            "tailLines",
            t.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(s) = since_seconds.filter(|s| *s < 1) {
        errs.push(FieldError::invalid_raw(
            "sinceSeconds",
            s.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(l) = limit.filter(|l| *l < 1) {
        errs.push(FieldError::invalid_raw(
            "limitBytes",
            l.to_string(),
            "must be greater than 0",
        ));
    }
    if since_seconds.is_some() && since_time.is_some() {
        errs.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("PodLogOptions", pod_name, &errs));
    }
    let since = match (since_time, since_seconds) {
        // The apiserver passes sinceTime on to the kubelet formatted as RFC 3339
        // without fraction: the real cut-off is the whole second.
        (Some(t), _) => Some(
            i128::from(
                t.parse::<Timestamp>()
                    .map_err(|e| {
                        ApiError::bad_request(format!("parsing time {t:?} as RFC 3339: {e}"))
                    })?
                    .as_second(),
            ) * 1_000_000_000,
        ),
        (None, Some(s)) => Some((util::now() - SignedDuration::from_secs(s)).as_nanosecond()),
        (None, None) => None,
    };
    Ok(LogOptions {
        container: req
            .param("container")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        follow: req.flag("follow"),
        timestamps: req.flag("timestamps"),
        previous: req.flag("previous"),
        tail: tail.map(|t| t as usize),
        since,
        limit_bytes: limit.map(|l| l as usize),
    })
}

/// The apiserver's choice of container (validateContainer).
fn container_name(pod: &Pod, name: &str, wanted: Option<String>) -> Result<String, ApiError> {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    match wanted {
        Some(c) if names.contains(&c.as_str()) => Ok(c),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

enum Source {
    Empty,
    Buffer(Arc<LogBuf>),
}

/// The kubelet's validateContainerLogStatus: which containers have logs yet.
fn source(
    shared: &Shared,
    pod: &Pod,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<Source, ApiError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let status = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .find(|c| c.name == container)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "container {container:?} in pod {pod_name:?} is not available"
            ))
        })?;
    if previous {
        return Err(ApiError::bad_request(format!(
            "previous terminated container {container:?} in pod {pod_name:?} not found"
        )));
    }
    let state = status.state.clone().unwrap_or_default();
    if state.running.is_some() {
        return Ok(Source::Buffer(
            shared
                .logs
                .get(&uid)
                .unwrap_or_else(|| shared.logs.get_or_open(&uid)),
        ));
    }
    if let Some(t) = &state.terminated {
        if t.container_id.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {pod_name:?} is terminated"
            )));
        }
        return Ok(shared.logs.get(&uid).map_or(Source::Empty, Source::Buffer));
    }
    let reason = state.waiting.and_then(|w| w.reason).unwrap_or_default();
    let why = match reason.as_str() {
        "ErrImagePull" => "image can't be pulled".to_string(),
        "ImagePullBackOff" => "trying and failing to pull image".to_string(),
        "" => {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
            )));
        }
        r => r.to_string(),
    };
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
    )))
}

pub(crate) fn serve(shared: &Arc<Shared>, req: &Request, t: &Target) -> Result<Resp, ApiError> {
    let ns = t.namespace.as_deref().unwrap_or("");
    let name = t.name.as_deref().unwrap_or("");
    let opts = options(req, name)?;
    let pod = shared
        .store()
        .get::<Pod>(ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let container = container_name(&pod, name, opts.container.clone())?;
    // Not yet on a node: the real apiserver has nowhere to ask and answers an empty 200.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
    {
        return Ok(server::full(200, "text/plain", Bytes::new()));
    }
    let buf = match source(shared, &pod, name, &container, opts.previous)? {
        Source::Empty => LogBuf::empty_closed(),
        Source::Buffer(b) => b,
    };
    let mut cursor = buf.start(opts.tail, opts.since);
    let mut cuts = shared.faults.log_cuts();
    cuts.borrow_and_update();
    let mut changed = buf.changed.subscribe();
    let shared = shared.clone();
    let (tx, resp) = server::streamed(200, "text/plain");
    tokio::spawn(async move {
        let (mut sent, mut budget) = (0usize, opts.limit_bytes);
        loop {
            changed.borrow_and_update();
            let whole_seconds = shared.faults.log_stamps_whole_seconds();
            let (mut chunk, done) = buf.read(&mut cursor, opts.timestamps, whole_seconds);
            if !chunk.is_empty() {
                let mut last = false;
                if let Some(b) = budget.as_mut() {
                    if chunk.len() >= *b {
                        chunk.truncate(*b);
                        last = true;
                    }
                    *b -= chunk.len();
                }
                if let Some(n) = shared.faults.log_drop_after()
                    && sent + chunk.len() > n
                {
                    chunk.truncate(n.saturating_sub(sent));
                    if !chunk.is_empty() {
                        let _ = tx.send(Ok(chunk.into())).await;
                    }
                    server::cut(&tx).await;
                    return;
                }
                sent += chunk.len();
                tokio::select! {
                    r = tx.send(Ok(chunk.into())) => if r.is_err() { return },
                    _ = cuts.changed() => {
                        server::cut(&tx).await;
                        return;
                    }
                }
                if last {
                    return;
                }
                continue;
            }
            if done || !opts.follow {
                return;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = cuts.changed() => {
                    server::cut(&tx).await;
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}
