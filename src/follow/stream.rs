//! One pod's log, read to its end through any number of dropped connections: every line
//! is read with its kubelet timestamp, a reconnect resumes with `sinceTime` (whole
//! seconds, floored) and the [`Cursor`] drops what was already printed.

use std::pin::pin;
use std::time::Duration;

use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::Api;
use kube::api::LogParams;

use super::LogOptions;
use super::errors::{describe_kube, fatal_api_error, gone, is_refusal, replaced};
use super::sink::{FirstStamp, LineSink, Ring};
use super::start::wait_started;
use crate::error::{Error, Result};
use crate::task::CONTAINER;
use crate::taskpod::TaskPod;

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

/// How one connection ended.
enum StreamEnd {
    /// The server closed the stream properly.
    Clean,
    /// Cut mid-way (EOF without the final chunk, reset, timeout…), or never opened.
    Cut(String),
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
                    tail = Some(Tail::Read(from, Ring::new(n, t0)));
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
