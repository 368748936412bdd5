//! Following a task pod: wait for it to start, stream its log to the end through
//! any number of dropped connections, and report how it ended.
//!
//! Why this exists: API servers, load balancers and kubelets cut log streams that
//! stay silent (an agent thinking for ten minutes is silent), and `kubectl logs -f`
//! then stops. Here every line is read with its kubelet timestamp; after a cut we
//! reconnect with `sinceTime` (whole seconds, floored) and a [`Cursor`] drops what
//! was already printed, so no line is lost or printed twice.

use std::io::Write;
use std::pin::pin;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::Api;
use kube::api::LogParams;
use kube::runtime::{WatchStreamExt, watcher};

use crate::error::{Error, Result};
use crate::task::CONTAINER;

/// Container waiting reasons that will not fix themselves: stop waiting and say why.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn agent_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)
}

/// The agent container's exit code, once it has terminated.
pub fn exit_code(pod: &Pod) -> Option<i32> {
    agent_status(pod)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed") || exit_code(pod).is_some()
}

/// Why a pod is not running yet, in the words `kubectl describe` would use.
pub fn waiting_reason(pod: &Pod) -> Option<(String, String)> {
    if let Some(w) = agent_status(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
    {
        return Some((
            w.reason.clone().unwrap_or_default(),
            w.message.clone().unwrap_or_default(),
        ));
    }
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// How a task ended, from its pod.
pub fn outcome(pod: &Pod) -> (String, i32) {
    let phase = phase(pod).to_string();
    let code = exit_code(pod).unwrap_or(if phase == "Succeeded" { 0 } else { 1 });
    (phase, code)
}

/// Wait (by watching, not polling) until the pod's container has started or the pod finished.
/// Progress goes to stderr; an unrecoverable waiting reason is an error.
pub async fn wait_started(api: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    let wait = async {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = pin!(
            watcher(api.clone(), cfg)
                .default_backoff()
                .applied_objects()
        );
        let mut last_reason = None;
        while let Some(ev) = events.next().await {
            let pod = match ev {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!("watch of pod {name} interrupted: {e}; resuming");
                    continue;
                }
            };
            if has_started(&pod) || is_finished(&pod) {
                return Ok(pod);
            }
            if let Some((reason, message)) = waiting_reason(&pod) {
                if FATAL_WAITING.contains(&reason.as_str()) {
                    return Err(Error::Task {
                        message: format!(
                            "pod {name} cannot start: {reason}: {message}; check the image name and pull secrets (pod.image, pod.imagePullSecrets) or the Secrets it reads, then `asdo spawn --replace`"
                        ),
                        code: crate::error::exit::FAILURE,
                    });
                }
                if last_reason.as_ref() != Some(&reason) {
                    eprintln!("waiting for pod {name}: {reason}: {message}");
                    last_reason = Some(reason);
                }
            }
        }
        Err(Error::Api(format!(
            "the watch of pod {name} ended unexpectedly"
        )))
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        Error::Other(format!(
            "pod {name} did not start within {}; see why with `kubectl describe pod {name}`",
            crate::humantime::short(timeout)
        ))
    })?
}

/// Wait until the pod is gone (after a delete with a grace period).
pub async fn wait_deleted(api: &Api<Pod>, name: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Other(format!(
                    "pod {name} still exists after {}; try again later",
                    crate::humantime::short(timeout)
                )));
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(Error::from_kube(&format!("get pod {name}"), e)),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// What to print and from where.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<i64>,
    pub since: Option<Duration>,
}

/// Remembers the newest timestamp printed and how many lines carried it, so a
/// replay after reconnecting is skipped exactly up to where we were.
#[derive(Debug, Default)]
pub struct Cursor {
    last: Option<Timestamp>,
    emitted_at_last: usize,
    replayed_at_last: usize,
}

impl Cursor {
    /// A new connection replays from the start of `last`'s second.
    pub fn reconnected(&mut self) {
        self.replayed_at_last = 0;
    }

    /// Should a line stamped `ts` be printed?
    pub fn admit(&mut self, ts: Timestamp) -> bool {
        match self.last {
            Some(last) if ts < last => false,
            Some(last) if ts == last => {
                self.replayed_at_last += 1;
                if self.replayed_at_last <= self.emitted_at_last {
                    false
                } else {
                    self.emitted_at_last += 1;
                    true
                }
            }
            _ => {
                self.last = Some(ts);
                self.emitted_at_last = 1;
                self.replayed_at_last = 1;
                true
            }
        }
    }

    /// `sinceTime` for the next connection: floored to the second, because the API
    /// takes whole seconds (kube rounds to nearest, which could skip lines).
    pub fn since_time(&self) -> Option<Timestamp> {
        self.last.map(|t| {
            let secs = t.as_second();
            let floored = Timestamp::from_second(secs).unwrap_or(t);
            // round() is then a no-op in kube.
            floored.round(Unit::Second).unwrap_or(floored)
        })
    }

    pub fn has_position(&self) -> bool {
        self.last.is_some()
    }

    /// Changes whenever a line is admitted: how progress is noticed.
    fn position(&self) -> (Option<Timestamp>, usize) {
        (self.last, self.emitted_at_last)
    }
}

/// Split the kubelet's `RFC3339Nano ` prefix off a log line.
pub fn split_timestamp(line: &[u8]) -> Option<(Timestamp, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let ts: Timestamp = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    Some((ts, &line[space + 1..]))
}

/// Where followed lines go: stdout for one pod, a prefixing writer for many.
pub trait LineSink: Send {
    /// `line` includes its newline (except possibly the very last line of a log).
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Plain stdout, optionally with the timestamps kept.
pub struct Stdout {
    out: std::io::BufWriter<std::io::Stdout>,
    timestamps: bool,
}

impl Stdout {
    pub fn new(timestamps: bool) -> Self {
        Stdout {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            timestamps,
        }
    }
}

impl LineSink for Stdout {
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        if let (true, Some(ts)) = (self.timestamps, ts) {
            self.out.write_all(ts)?;
            self.out.write_all(b" ")?;
        }
        self.out.write_all(line)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// How one connection ended.
enum StreamEnd {
    /// The server closed the stream properly.
    Clean,
    /// Cut mid-way (EOF without the final chunk, reset, timeout…).
    Cut(String),
}

/// Stream the pod's log to `sink` until the container has ended (or once, without
/// follow). Returns the pod as last seen, so the caller can report how it ended.
///
/// A clean end of a follow stream proves nothing (a proxy may close politely), so
/// once the pod is seen finished, one last non-follow read from the cursor drains
/// whatever was written after the cut.
pub async fn stream_logs(
    api: &Api<Pod>,
    name: &str,
    opts: &LogOptions,
    sink: &mut dyn LineSink,
) -> Result<Pod> {
    let mut cursor = Cursor::default();
    let mut failures = 0u32;
    let mut pending_tail: Vec<u8> = Vec::new();
    let mut draining = !opts.follow;
    loop {
        let mut lp = LogParams {
            container: Some(CONTAINER.into()),
            follow: !draining,
            timestamps: true,
            ..Default::default()
        };
        if cursor.has_position() {
            lp.since_time = cursor.since_time();
        } else {
            lp.tail_lines = opts.tail;
            lp.since_seconds = opts.since.map(|d| d.as_secs().max(1) as i64);
        }
        cursor.reconnected();
        pending_tail.clear();
        let before = cursor.position();

        let end = match api.log_stream(name, &lp).await {
            Ok(reader) => pump(reader, &mut cursor, sink, &mut pending_tail).await?,
            Err(kube::Error::Api(s)) if s.code == 400 => {
                // "container … is waiting to start": wait for it, then read from the start.
                // Any other 400 (the container has started) is a real error.
                let pod = api
                    .get_opt(name)
                    .await
                    .map_err(|e| Error::from_kube(&format!("get pod {name}"), e))?
                    .ok_or_else(|| gone(name))?;
                if has_started(&pod) {
                    return Err(Error::Api(format!(
                        "cannot read logs of pod {name}: {}",
                        s.message
                    )));
                }
                wait_started(api, name, Duration::from_secs(24 * 3600)).await?;
                continue;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(gone(name)),
            Err(e @ kube::Error::Api(_)) if matches!(api_code(&e), Some(401 | 403)) => {
                return Err(Error::from_kube(&format!("read logs of pod {name}"), e));
            }
            Err(e) => StreamEnd::Cut(e.to_string()),
        };
        if cursor.position() != before {
            failures = 0;
        }

        let pod = match api.get_opt(name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(gone(name)),
            Err(e) => {
                failures += 1;
                if failures > 12 {
                    return Err(Error::from_kube(&format!("follow pod {name}"), e));
                }
                backoff(failures).await;
                continue;
            }
        };
        match end {
            StreamEnd::Clean if draining => {
                // The kubelet sends a last line without newline as-is; now it is final.
                if !pending_tail.is_empty() {
                    emit(&pending_tail, &mut cursor, sink).map_err(write_err)?;
                    sink.flush().map_err(write_err)?;
                }
                return Ok(pod);
            }
            _ if is_finished(&pod) => draining = true,
            StreamEnd::Clean => {
                tracing::info!("log stream of {name} ended while the pod runs; resuming");
            }
            StreamEnd::Cut(why) => {
                tracing::info!("log stream of {name} cut ({why}); resuming");
            }
        }
        if cursor.position() == before && !draining {
            // No progress: don't hammer the API server.
            failures += 1;
            backoff(failures).await;
        }
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn has_started(pod: &Pod) -> bool {
    agent_status(pod)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
}

fn gone(name: &str) -> Error {
    Error::Other(format!(
        "pod {name} was deleted while its logs were followed; its task did not finish here"
    ))
}

fn write_err(e: std::io::Error) -> Error {
    Error::Other(format!("cannot write logs: {e}"))
}

/// 100 ms doubling to 3 s; the first retry after progress is immediate.
async fn backoff(attempt: u32) {
    if attempt <= 1 {
        return;
    }
    let ms = 100u64 << (attempt - 2).min(5);
    tokio::time::sleep(Duration::from_millis(ms.min(3000))).await;
}

/// Read one connection to its end, printing complete lines the cursor admits.
/// An incomplete last line is held in `tail`: after a cut it is re-sent whole.
async fn pump(
    reader: impl futures::AsyncBufRead,
    cursor: &mut Cursor,
    sink: &mut dyn LineSink,
    tail: &mut Vec<u8>,
) -> Result<StreamEnd> {
    let mut reader = pin!(reader);
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) => return Ok(StreamEnd::Clean),
            Ok(buf) => buf,
            Err(e) => return Ok(StreamEnd::Cut(e.to_string())),
        };
        let n = buf.len();
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
            let end = start + i + 1;
            if tail.is_empty() {
                emit(&buf[start..end], cursor, sink).map_err(write_err)?;
            } else {
                tail.extend_from_slice(&buf[start..end]);
                let line = std::mem::take(tail);
                emit(&line, cursor, sink).map_err(write_err)?;
            }
            start = end;
        }
        tail.extend_from_slice(&buf[start..]);
        reader.consume_unpin(n);
        sink.flush().map_err(write_err)?;
    }
}

fn emit(line: &[u8], cursor: &mut Cursor, sink: &mut dyn LineSink) -> std::io::Result<()> {
    match split_timestamp(line) {
        Some((ts, text)) => {
            if cursor.admit(ts) {
                let space = line.len() - text.len() - 1;
                sink.line(Some(&line[..space]), text)?;
            }
            Ok(())
        }
        None => sink.line(None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn cursor_skips_replayed_lines_exactly() {
        let mut c = Cursor::default();
        let a = ts("2026-11-24T10:00:00.100Z");
        let b = ts("2026-11-24T10:00:00.500Z");
        assert!(c.admit(a));
        assert!(c.admit(b));
        assert!(c.admit(b), "two lines may share a timestamp");
        // Reconnect: the server replays the whole second.
        c.reconnected();
        assert!(!c.admit(a));
        assert!(!c.admit(b));
        assert!(!c.admit(b));
        assert!(c.admit(b), "a third line with that stamp is new");
        assert!(c.admit(ts("2026-11-24T10:00:01Z")));
    }

    #[test]
    fn since_time_is_floored() {
        let mut c = Cursor::default();
        assert!(c.since_time().is_none());
        c.admit(ts("2026-11-24T10:00:07.900Z"));
        assert_eq!(c.since_time().unwrap(), ts("2026-11-24T10:00:07Z"));
    }

    #[test]
    fn timestamps_split_off() {
        let (t, rest) = split_timestamp(b"2026-11-24T10:00:00.123456789Z hello world\n").unwrap();
        assert_eq!(t, ts("2026-11-24T10:00:00.123456789Z"));
        assert_eq!(rest, b"hello world\n");
        assert!(split_timestamp(b"no timestamp here\n").is_none());
    }

    struct Collect(Vec<u8>);
    impl LineSink for Collect {
        fn line(&mut self, _ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
            self.0.extend_from_slice(line);
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A reader that yields the given chunks, then a cut or a clean end.
    fn chunks(parts: Vec<&'static [u8]>, cut: bool) -> impl futures::AsyncBufRead {
        use futures::TryStreamExt;
        let mut items: Vec<std::io::Result<Vec<u8>>> =
            parts.into_iter().map(|p| Ok(p.to_vec())).collect();
        if cut {
            items.push(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "cut",
            )));
        }
        futures::stream::iter(items).into_async_read()
    }

    #[tokio::test]
    async fn resume_after_cut_mid_line_prints_each_line_once() {
        let mut c = Cursor::default();
        let mut sink = Collect(Vec::new());
        let mut tail = Vec::new();
        let first = chunks(
            vec![
                b"2026-11-24T10:00:00.1Z one\n2026-11-24T10:00:00.2Z tw",
                b"o\n2026-11-24T10:00:00.3Z thr",
            ],
            true,
        );
        let end = pump(first, &mut c, &mut sink, &mut tail).await.unwrap();
        assert!(matches!(end, StreamEnd::Cut(_)));
        assert_eq!(sink.0, b"one\ntwo\n", "the half line is held back");
        // The replay starts at the floored second.
        c.reconnected();
        tail.clear();
        let second = chunks(
            vec![b"2026-11-24T10:00:00.1Z one\n2026-11-24T10:00:00.2Z two\n2026-11-24T10:00:00.3Z three\n2026-11-24T10:00:01Z four"],
            false,
        );
        let end = pump(second, &mut c, &mut sink, &mut tail).await.unwrap();
        assert!(matches!(end, StreamEnd::Clean));
        assert_eq!(sink.0, b"one\ntwo\nthree\n");
        assert_eq!(
            tail, b"2026-11-24T10:00:01Z four",
            "a final line without newline waits for the verdict"
        );
    }
}
