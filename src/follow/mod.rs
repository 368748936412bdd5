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
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::Api;
use kube::api::LogParams;
use kube::runtime::{WatchStreamExt, watcher};

use crate::error::{Error, Result};
use crate::task::CONTAINER;
use crate::taskpod::{Phase, TaskPod};

pub mod many;
pub use many::{follow_many, follow_one};

/// Container waiting reasons that cannot fix themselves: stop waiting at once and say
/// why. Everything else (ErrImagePull, ImagePullBackOff, CreateContainerConfigError for a
/// Secret not synced yet, ContainerCreating…) is retried by the kubelet, so asdo keeps
/// waiting, saying so on stderr, until the start timeout.
const FATAL_WAITING: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];

/// The code of a kube error, when the API server answered.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// 400/401/403 never fix themselves by retrying: a bad selector, expired credentials,
/// missing RBAC. Watches retry everything else; these end the command.
pub fn fatal_watch_error(e: &watcher::Error, what: &str) -> Option<Error> {
    let code = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => api_code(k)?,
        watcher::Error::WatchError(s) => s.code,
        watcher::Error::NoResourceVersion => return None,
    };
    let not_kubernetes = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => !crate::error::is_status(s),
        _ => false,
    };
    let refused = matches!(code, 400 | 401 | 403) || (not_kubernetes && (400..500).contains(&code));
    if !refused {
        return None;
    }
    Some(match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => fatal_api_error(what, k),
        watcher::Error::WatchError(s) => fatal_api_error(what, &kube::Error::Api(s.clone())),
        watcher::Error::NoResourceVersion => unreachable!(),
    })
}

/// A refusal retrying cannot fix: 400/401/403, or a 4xx that is not a Kubernetes Status
/// (the server is not an API server at all).
pub fn is_refusal(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 400 | 401 | 403)
                || (!crate::error::is_status(s) && (400..500).contains(&s.code))
        }
        _ => false,
    }
}

/// The message for a refused request, with what to check for each code.
pub fn fatal_api_error(what: &str, e: &kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 400 && crate::error::is_status(s) => Error::Api(format!(
            "cannot {what}: the API server rejected the request ({}); check the label selector (-l) and the flags",
            crate::error::reason_text(s)
        )),
        kube::Error::Api(s) => Error::from_kube(what, kube::Error::Api(s.clone())),
        other => Error::Api(format!("cannot {what}: {other}")),
    }
}

/// How long a pod may take to start. `start` runs only while the pod is not queued: a pod
/// held by scheduling gates (Kueue's admission gate while it waits in a LocalQueue) is not
/// failing to start, it is waiting its turn, and that wait is bounded by `queued` alone
/// (None: as long as it takes). A pod that leaves the queue gets the whole `start` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartBounds {
    /// `--start-timeout`.
    pub start: Duration,
    /// `--queue-timeout`; counted from when asdo first sees the pod queued.
    pub queued: Option<Duration>,
}

impl From<Duration> for StartBounds {
    fn from(start: Duration) -> StartBounds {
        StartBounds {
            start,
            queued: None,
        }
    }
}

/// "queue q" or, for gates of something other than Kueue, "its scheduling gates".
fn held_by(pod: &Pod) -> String {
    match TaskPod(pod).queue() {
        Some(q) => format!("queue {q}"),
        None => "its scheduling gates".into(),
    }
}

/// `Queued (q)`, as `asdo list` says it; `Queued (SchedulingGated)` without a queue.
fn queued_status(pod: &Pod) -> String {
    format!(
        "Queued ({})",
        TaskPod(pod).queue().unwrap_or("SchedulingGated")
    )
}

/// Wait (by watching, not polling) until the pod's container has started or the pod finished.
/// Progress goes to stderr, once per change of reason; a reason that cannot fix itself, a
/// refused watch (400/401/403), a deleted or replaced pod, or the bounds end the wait: a
/// plain `Duration` is the start timeout with no bound on the time queued.
pub async fn wait_started(
    api: &Api<Pod>,
    name: &str,
    uid: Option<&str>,
    bounds: impl Into<StartBounds>,
) -> Result<Pod> {
    let bounds = bounds.into();
    let mut last_reason: Option<(String, String)> = None;
    // While queued: since when, and by what. The start clock is (re)set when not queued.
    let mut queued: Option<(tokio::time::Instant, String)> = None;
    let mut start_clock = tokio::time::Instant::now();
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = pin!(watcher(api.clone(), cfg).default_backoff());
    loop {
        let deadline = match &queued {
            Some((since, _)) => bounds.queued.map(|q| *since + q),
            None => Some(start_clock + bounds.start),
        };
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = expired => {
                return Err(match &queued {
                    Some((_, by)) => Error::Other(format!(
                        "pod {name} was still queued after {} (held by {by}; --queue-timeout); the queue has no room for it yet: see `asdo status {name}{flags}`, raise --queue-timeout, or remove the task with `asdo cleanup {name}{flags}`",
                        crate::humantime::short(bounds.queued.unwrap_or_default()),
                        flags = crate::error::scope_flags()
                    )),
                    None => {
                        let why = last_reason
                            .as_ref()
                            .map(|(r, m)| format!(" (last: {r}: {m})"))
                            .unwrap_or_default();
                        Error::Other(format!(
                            "pod {name} did not start within {}{why} (--start-timeout); see why with `asdo status {name}{flags}` or `kubectl describe pod {name}`",
                            crate::humantime::short(bounds.start),
                            flags = crate::error::scope_flags()
                        ))
                    }
                });
            }
        };
        let Some(ev) = ev else {
            return Err(Error::Api(format!(
                "the watch of pod {name} ended unexpectedly"
            )));
        };
        let pod = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(_)) => return Err(gone(name)),
            Ok(_) => continue,
            Err(e) => {
                if let Some(fatal) = fatal_watch_error(&e, &format!("watch pod {name}")) {
                    return Err(fatal);
                }
                tracing::debug!("watch of pod {name} interrupted: {e}; resuming");
                continue;
            }
        };
        if let (Some(want), Some(got)) = (uid, pod.metadata.uid.as_deref())
            && want != got
        {
            return Err(replaced(name, got));
        }
        if TaskPod(&pod).has_started() || TaskPod(&pod).is_finished() {
            return Ok(pod);
        }
        match (TaskPod(&pod).phase() == Phase::Queued, queued.is_some()) {
            (true, false) => {
                let by = held_by(&pod);
                let bound = bounds
                    .queued
                    .map(|q| format!("up to {} (--queue-timeout)", crate::humantime::short(q)))
                    .unwrap_or_else(|| "with no time limit (--queue-timeout)".into());
                eprintln!(
                    "waiting for pod {name}: {}: held by {by} until it is admitted; waiting {bound}",
                    queued_status(&pod)
                );
                queued = Some((tokio::time::Instant::now(), by));
                continue;
            }
            (true, true) => continue,
            (false, true) => {
                eprintln!("pod {name} left the queue; waiting for it to start");
                queued = None;
                start_clock = tokio::time::Instant::now();
            }
            (false, false) => {}
        }
        if let Some((reason, message)) = TaskPod(&pod).waiting_reason() {
            if FATAL_WAITING.contains(&reason.as_str()) {
                return Err(Error::Task {
                    message: format!(
                        "pod {name} cannot start: {reason}: {message}; check the image name (pod.image, --image), then `asdo spawn --replace`"
                    ),
                    code: crate::error::exit::FAILURE,
                });
            }
            if last_reason.as_ref().map(|(r, _)| r) != Some(&reason) {
                eprintln!("waiting for pod {name}: {reason}: {message}");
            }
            last_reason = Some((reason, message));
        }
    }
}

/// Wait until the pod with this uid is gone (after a delete with a grace period). A pod of
/// the same name with another uid is another run's: ours is gone.
pub async fn wait_deleted(api: &Api<Pod>, name: &str, uid: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        match crate::cluster::bounded(&format!("get pod {name}"), api.get_opt(name)).await? {
            None => return Ok(()),
            Some(p) if p.metadata.uid.as_deref() != Some(uid) => return Ok(()),
            Some(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Other(format!(
                    "pod {name} still exists after {}; try again later",
                    crate::humantime::short(timeout)
                )));
            }
            Some(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// What to print and from where, and how long to keep retrying without progress.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<i64>,
    pub since: Option<Duration>,
    /// Give up after this long without a single new line or answer (`--retry-for`).
    pub retry_for: Duration,
    /// On a pod replaced under the same name: print a separator and follow the new run
    /// (`--follow-replaced`) instead of stopping.
    pub follow_replaced: bool,
    /// How long to wait for a pod that has not started (None: the default); not counted
    /// while the pod is queued.
    pub start_timeout: Option<Duration>,
    /// How long a queued (gated) pod may wait for admission (None: no limit).
    pub queue_timeout: Option<Duration>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            follow: false,
            timestamps: false,
            tail: None,
            since: None,
            retry_for: DEFAULT_RETRY_FOR,
            follow_replaced: false,
            start_timeout: None,
            queue_timeout: None,
        }
    }
}

/// `--retry-for` default: long enough for an API server restart or a node reboot, not forever.
/// How long a log follow waits for a pod that has not started (`--start-timeout`).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(600);

impl LogOptions {
    pub fn start_bounds(&self) -> StartBounds {
        StartBounds {
            start: self.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT),
            queued: self.queue_timeout,
        }
    }
}

pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(300);
/// Consecutive failures of the same kind before saying on stderr that asdo is retrying.
const QUIET_FAILURES: u32 = 3;

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
    /// Cut mid-way (EOF without the final chunk, reset, timeout…), or never opened.
    Cut(String),
}

/// Where `--tail N` starts: the first timestamp of a `tailLines` read, whose lines are
/// printed nowhere.
#[derive(Default)]
struct FirstStamp(Option<Timestamp>);

impl LineSink for FirstStamp {
    fn line(&mut self, ts: Option<&[u8]>, _: &[u8]) -> std::io::Result<()> {
        if self.0.is_none() {
            self.0 = ts
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse().ok());
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last `keep` lines of a read, none stamped before `min`, held until the read is
/// complete.
struct Ring {
    keep: usize,
    min: Timestamp,
    lines: std::collections::VecDeque<(Option<Vec<u8>>, Vec<u8>)>,
}

impl LineSink for Ring {
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        let stamp: Option<Timestamp> = ts
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse().ok());
        if stamp.is_some_and(|t| t < self.min) || self.keep == 0 {
            return Ok(());
        }
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines
            .push_back((ts.map(<[u8]>::to_vec), line.to_vec()));
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Ring {
    fn drain_into(&mut self, sink: &mut dyn LineSink) -> std::io::Result<()> {
        for (ts, line) in self.lines.drain(..) {
            sink.line(ts.as_deref(), &line)?;
        }
        sink.flush()
    }
}

/// `--tail N` in two reads. A `tailLines` read starts in the middle of a second, and
/// `sinceTime` (whole seconds) cannot resume there: after it the cursor would not know
/// how many earlier lines share the last printed timestamp, and would print them again
/// (`--tail 2` printing `4 5 3 4 5` for five lines of one second). So the first read
/// only finds the first tail line's timestamp; the second reads from the start of that
/// second, which the cursor counts exactly, and prints its last N lines.
enum Tail {
    Probe(usize),
    Read(Timestamp, Ring),
}

/// Stream the pod's log to `sink` until the container has ended (or once, without
/// follow). Returns the pod as last seen, so the caller can report how it ended.
///
/// `--tail N` is one non-follow read of the last N lines (for N = 0, of the last line,
/// printed to nowhere), so the cursor has a position before the follow begins; from then
/// on every connection resumes from the cursor, never from `tailLines` again (which would
/// skip whatever was written during a cut). `--since` is anchored once, at the first
/// connection, for the same reason.
///
/// A clean end of a follow stream proves nothing (a proxy may close politely), so
/// once the pod is seen finished, one last non-follow read from the cursor drains
/// whatever was written after the cut.
///
/// `uid` is the run being followed: a pod of the same name with another uid is another
/// run, never spliced into this one's log.
pub async fn stream_logs(
    api: &Api<Pod>,
    name: &str,
    uid: Option<&str>,
    opts: &LogOptions,
    sink: &mut dyn LineSink,
) -> Result<Pod> {
    let mut uid = uid.map(str::to_string);
    let mut cursor = Cursor::default();
    let mut pending_tail: Vec<u8> = Vec::new();
    let mut draining = !opts.follow;
    // Some until the tail is printed; a negative --tail is the whole log (kubectl's -1).
    let mut tail = opts
        .tail
        .and_then(|n| usize::try_from(n).ok())
        .map(Tail::Probe);
    let mut since_anchor: Option<Timestamp> = None;
    let mut retry = Retry::new(name, opts.retry_for);
    loop {
        let mut lp = LogParams {
            container: Some(CONTAINER.into()),
            follow: !draining && tail.is_none(),
            timestamps: true,
            ..Default::default()
        };
        match &tail {
            Some(Tail::Probe(n)) => {
                lp.tail_lines = Some((*n).max(1) as i64);
                lp.since_seconds = opts.since.map(|d| d.as_secs().max(1) as i64);
            }
            _ if cursor.has_position() => lp.since_time = cursor.since_time(),
            Some(Tail::Read(from, _)) => lp.since_time = Some(*from),
            None => {
                if let Some(anchor) = since_anchor {
                    lp.since_time = Some(anchor);
                } else if let Some(d) = opts.since {
                    let now = Timestamp::now();
                    let back =
                        k8s_openapi::jiff::SignedDuration::from_secs(d.as_secs().max(1) as i64);
                    since_anchor =
                        Some(Timestamp::from_second((now - back).as_second()).unwrap_or(now));
                    lp.since_time = since_anchor;
                }
            }
        }
        cursor.reconnected();
        pending_tail.clear();
        let before = cursor.position();
        let mut first = FirstStamp::default();

        let opened = retry
            .bounded(crate::cluster::within_timeout(
                &format!("read logs of pod {name}"),
                api.log_stream(name, &lp),
            ))
            .await?;
        let end = match opened {
            Err(timed_out) => StreamEnd::Cut(timed_out.to_string()),
            Ok(Ok(reader)) => match &mut tail {
                // The probe's lines go nowhere and never move the cursor.
                Some(Tail::Probe(_)) => {
                    let mut scratch = Cursor::default();
                    pump(reader, &mut scratch, &mut first, &mut pending_tail).await?
                }
                Some(Tail::Read(_, ring)) => {
                    pump(reader, &mut cursor, ring, &mut pending_tail).await?
                }
                None => pump(reader, &mut cursor, sink, &mut pending_tail).await?,
            },
            Ok(Err(kube::Error::Api(s))) if s.code == 400 && crate::error::is_status(&s) => {
                // "container … is waiting to start": wait for it, then read from the start.
                // Any other 400 (the container has started) is a real error.
                let pod = retry.get(api, name).await?.ok_or_else(|| gone(name))?;
                check_identity(&pod, &mut uid, name, opts, &mut cursor)?;
                if TaskPod(&pod).deleted_mid_run() {
                    return Err(gone(name));
                }
                if TaskPod(&pod).has_started() || TaskPod(&pod).is_finished() {
                    return Err(Error::Api(format!(
                        "cannot read logs of pod {name}: {}",
                        s.message
                    )));
                }
                if !opts.follow {
                    // Nothing to print yet; the caller says so.
                    return Ok(pod);
                }
                wait_started(api, name, uid.as_deref(), opts.start_bounds()).await?;
                continue;
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 && crate::error::is_status(&s) => {
                return Err(gone(name));
            }
            Ok(Err(e)) if is_refusal(&e) => {
                return Err(fatal_api_error(&format!("read logs of pod {name}"), &e));
            }
            Ok(Err(e)) => StreamEnd::Cut(describe_kube(&e)),
        };
        if cursor.position() != before {
            retry.progress();
        }
        if let Some(Tail::Probe(n)) = tail {
            match (first.0, &end) {
                (Some(t0), _) => {
                    retry.progress();
                    let from = Timestamp::from_second(t0.as_second()).unwrap_or(t0);
                    let ring = Ring {
                        keep: n,
                        min: t0,
                        lines: Default::default(),
                    };
                    tail = Some(Tail::Read(from, ring));
                }
                // An empty log: every line from now on is new.
                (None, StreamEnd::Clean) => tail = None,
                (None, StreamEnd::Cut(why)) => retry.failed(why).await?,
            }
            pending_tail.clear();
            continue;
        }

        let Some(pod) = retry.get(api, name).await? else {
            return Err(gone(name));
        };
        if check_identity(&pod, &mut uid, name, opts, &mut cursor)? {
            draining = !opts.follow;
            tail = None;
            continue;
        }
        let cut_why = match end {
            StreamEnd::Clean if draining => {
                // The kubelet sends a last line without newline as-is; now it is final.
                if let Some(Tail::Read(_, mut ring)) = tail.take() {
                    if !pending_tail.is_empty() {
                        emit(&pending_tail, &mut cursor, &mut ring).map_err(write_err)?;
                    }
                    ring.drain_into(sink).map_err(write_err)?;
                } else if !pending_tail.is_empty() {
                    emit(&pending_tail, &mut cursor, sink).map_err(write_err)?;
                    sink.flush().map_err(write_err)?;
                }
                return Ok(pod);
            }
            StreamEnd::Clean => {
                // The tail is complete: print it, then follow from the cursor.
                if let Some(Tail::Read(_, mut ring)) = tail.take() {
                    ring.drain_into(sink).map_err(write_err)?;
                }
                None
            }
            StreamEnd::Cut(why) => Some(why),
        };
        if TaskPod(&pod).is_finished() {
            draining = true;
        }
        match &cut_why {
            Some(why) => tracing::info!("log stream of {name} cut ({why}); resuming"),
            None if lp.follow => {
                tracing::info!("log stream of {name} ended while the pod runs; resuming")
            }
            None => {}
        }
        if cursor.position() == before && (cut_why.is_some() || lp.follow) {
            // No progress: back off (also after the pod finished: a node that is gone
            // answers every log read with an error), and give up after --retry-for.
            retry
                .failed(
                    cut_why
                        .as_deref()
                        .unwrap_or("stream ended without new lines"),
                )
                .await?;
        }
    }
}

/// Has the pod been replaced by another run? Ok(true) when following the new run
/// (`--follow-replaced`, the cursor reset), an error otherwise.
fn check_identity(
    pod: &Pod,
    uid: &mut Option<String>,
    name: &str,
    opts: &LogOptions,
    cursor: &mut Cursor,
) -> Result<bool> {
    let got = pod.metadata.uid.clone();
    match (uid.as_deref(), got.as_deref()) {
        (Some(want), Some(now)) if want != now => {
            if !opts.follow_replaced {
                return Err(replaced(name, now));
            }
            eprintln!("==> pod {name} was replaced by another run (uid {now}); following it");
            *cursor = Cursor::default();
            *uid = got;
            Ok(true)
        }
        (None, Some(_)) => {
            *uid = got;
            Ok(false)
        }
        _ => Ok(false),
    }
}

pub fn replaced(name: &str, new_uid: &str) -> Error {
    let task = name.strip_prefix(crate::task::POD_PREFIX).unwrap_or(name);
    Error::Other(format!(
        "pod {name} was replaced by another run (uid {new_uid}); run `asdo logs {task}{}` again to follow it (or pass --follow-replaced)",
        crate::error::scope_flags()
    ))
}

/// Retries without progress: backoff, one stderr line once they persist, and a bound.
struct Retry<'a> {
    name: &'a str,
    limit: Duration,
    failures: u32,
    since: tokio::time::Instant,
    said: Option<String>,
    /// When the request in flight started: a failure run starts there, not when it failed.
    attempt: tokio::time::Instant,
}

impl<'a> Retry<'a> {
    fn new(name: &'a str, limit: Duration) -> Self {
        Retry {
            name,
            limit,
            failures: 0,
            since: tokio::time::Instant::now(),
            said: None,
            attempt: tokio::time::Instant::now(),
        }
    }

    /// Run one request (a GET, the opening of a stream) inside the bound: `--retry-for`
    /// is hard, so a server that accepts and never answers is given up on when the
    /// bound runs out, not a request timeout later.
    async fn bounded<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Result<T> {
        self.attempt = tokio::time::Instant::now();
        if self.limit.is_zero() {
            return Ok(fut.await);
        }
        let start = if self.failures > 0 {
            self.since
        } else {
            self.attempt
        };
        tokio::time::timeout_at(start + self.limit, fut)
            .await
            .map_err(|_| self.give_up("no answer from the API server"))
    }

    fn give_up(&self, why: &str) -> Error {
        Error::Api(format!(
            "log stream of pod {}: no progress for {} ({why}); giving up (--retry-for)",
            self.name,
            crate::humantime::short(self.limit)
        ))
    }

    fn progress(&mut self) {
        if self.failures >= QUIET_FAILURES {
            eprintln!("log stream of pod {}: reading again", self.name);
        }
        self.failures = 0;
        self.said = None;
        self.since = tokio::time::Instant::now();
    }

    /// One more failure: say so once it persists, give up past the bound, else sleep.
    async fn failed(&mut self, why: &str) -> Result<()> {
        if self.failures == 0 {
            self.since = self.attempt;
        }
        self.failures += 1;
        if !self.limit.is_zero() && self.since.elapsed() >= self.limit {
            return Err(self.give_up(why));
        }
        // The kind of failure, without the details that change every time.
        let kind: String = why.chars().take(40).collect();
        if self.failures >= QUIET_FAILURES && self.said.as_deref() != Some(&kind) {
            eprintln!(
                "warning: log stream of pod {}: {why}; retrying for up to {}",
                self.name,
                crate::humantime::short(self.limit)
            );
            self.said = Some(kind);
        }
        backoff(self.failures).await;
        Ok(())
    }

    /// Get the pod, retrying what can be retried within the bound.
    async fn get(&mut self, api: &Api<Pod>, name: &str) -> Result<Option<Pod>> {
        let what = format!("get pod {name}");
        loop {
            match self
                .bounded(crate::cluster::within_timeout(&what, api.get_opt(name)))
                .await?
            {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(e)) if is_refusal(&e) => {
                    return Err(fatal_api_error(&what, &e));
                }
                Ok(Err(e)) => self.failed(&describe_kube(&e)).await?,
                Err(timed_out) => self.failed(&timed_out.to_string()).await?,
            }
        }
    }
}

/// An outage of a watch: said once on stderr, said again when it is over, and a
/// bound after which the command gives up (`--retry-for`; zero = never).
pub struct Outage {
    limit: Duration,
    what: &'static str,
    since: Option<tokio::time::Instant>,
}

impl Outage {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        Outage {
            limit,
            what,
            since: None,
        }
    }

    /// An error: Some(error) once the outage has lasted past the bound.
    pub fn failed(&mut self, why: &str) -> Option<Error> {
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "warning: {}: API server not answering ({why}); retrying{}",
                self.what,
                if self.limit.is_zero() {
                    String::new()
                } else {
                    format!(" for up to {}", crate::humantime::short(self.limit))
                }
            );
            tokio::time::Instant::now()
        });
        (!self.limit.is_zero() && since.elapsed() >= self.limit).then(|| {
            Error::Cluster(format!(
                "{}: the API server {} has not answered for {} ({why}); giving up (--retry-for)",
                self.what,
                crate::cluster::server_url(),
                crate::humantime::short(self.limit)
            ))
        })
    }

    pub fn ok(&mut self) {
        if self.since.take().is_some() {
            eprintln!("{}: API server answering again", self.what);
        }
    }
}

/// A kube error in a few words (error.rs words it, for every verb).
fn describe_kube(e: &kube::Error) -> String {
    crate::error::brief(e)
}

/// A watch error in a few words, through the same path.
pub fn describe_watch(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => crate::error::brief(k),
        watcher::Error::WatchError(s) => crate::error::brief(&kube::Error::Api(s.clone())),
        other => other.to_string(),
    }
}

/// The one verdict on a task pod deleted before its task finished, in `logs` and in
/// `wait` alike (exit 1): whether the pod is already gone, or still terminating with the
/// exit code of the signal that stopped it (137, 143).
pub fn deleted_words(name: &str) -> String {
    format!("pod {name} was deleted before its task finished")
}

pub fn gone(name: &str) -> Error {
    Error::Other(deleted_words(name))
}

fn write_err(e: std::io::Error) -> Error {
    Error::Other(format!("cannot write logs: {e}"))
}

/// 100 ms doubling to 3 s. Even the first retry waits a little: a loop of failing
/// requests must never spin (22 requests/s against a finished pod on a gone node).
async fn backoff(attempt: u32) {
    let ms = 100u64 << attempt.saturating_sub(1).min(5);
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
