//! Knobs a test turns while the server runs: injected errors, delays, cut log
//! streams, forbidden namespaces, an unschedulable cluster and Kueue's pod webhook.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

pub(crate) struct Faults {
    inner: Mutex<Settings>,
    /// Bumped by `drop_log_streams_now`; every open log stream watches it.
    log_cuts: watch::Sender<u64>,
}

struct Settings {
    log_drop_after: Option<usize>,
    /// Log timestamps truncated to the second (a burst of lines shares one stamp).
    log_stamps_whole_seconds: bool,

    failures: Vec<Failure>,
    /// Answered with the code only after the request was handled (and stored).
    failures_after: Vec<Failure>,
    /// Accepted and never answered.
    hangs: Vec<Failure>,
    /// Handled (a create stores its object), then never answered.
    hangs_after: Vec<Failure>,
    /// Requests whose connection is reset (RST) once their head is read.
    resets: Vec<Failure>,
    response_delay: Duration,
    schedule_delay: Duration,
    forbidden: HashSet<String>,
    unschedulable: Option<String>,
    /// namespace -> (ResourceQuota name, count/pods limit): a stand-in for quota admission.
    pod_quota: std::collections::HashMap<String, (String, usize)>,
    /// Acts like Kueue's pod webhook: a pod created with the queue-name label is gated.
    kueue_pod_webhook: bool,
}

struct Failure {
    remaining: usize,
    code: u16,
    method: Option<String>,
    path_contains: Option<String>,
    /// Answer this body as text/plain instead of a Status (a proxy, the wrong port).
    body: Option<String>,
}

fn rule(n: usize, code: u16, method: Option<&str>, path_contains: Option<&str>) -> Failure {
    Failure {
        remaining: n,
        code,
        method: method.map(|m| m.to_ascii_uppercase()),
        path_contains: path_contains.map(str::to_string),
        body: None,
    }
}

fn take(rules: &mut Vec<Failure>, method: &str, path: &str) -> Option<u16> {
    take_full(rules, method, path).map(|(code, _)| code)
}

fn take_full(rules: &mut Vec<Failure>, method: &str, path: &str) -> Option<(u16, Option<String>)> {
    let i = rules.iter().position(|f| {
        f.remaining > 0
            && f.method.as_deref().is_none_or(|m| m == method)
            && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
    })?;
    let f = &mut rules[i];
    f.remaining -= 1;
    let answer = (f.code, f.body.clone());
    if f.remaining == 0 {
        rules.remove(i);
    }
    Some(answer)
}

impl Faults {
    pub fn new() -> Faults {
        Faults {
            inner: Mutex::new(Settings {
                log_drop_after: None,
                log_stamps_whole_seconds: false,
                failures: vec![],
                failures_after: vec![],
                hangs: vec![],
                hangs_after: vec![],
                resets: vec![],
                response_delay: Duration::ZERO,
                schedule_delay: Duration::from_millis(200),
                forbidden: HashSet::new(),
                unschedulable: None,
                pod_quota: Default::default(),
                kueue_pod_webhook: false,
            }),
            log_cuts: watch::Sender::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Settings) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn set_log_drop_after(&self, n: Option<usize>) {
        self.with(|s| s.log_drop_after = n);
    }

    pub fn log_drop_after(&self) -> Option<usize> {
        self.with(|s| s.log_drop_after)
    }

    pub fn set_log_stamps_whole_seconds(&self, on: bool) {
        self.with(|s| s.log_stamps_whole_seconds = on);
    }

    pub fn log_stamps_whole_seconds(&self) -> bool {
        self.with(|s| s.log_stamps_whole_seconds)
    }

    pub fn cut_log_streams(&self) {
        self.log_cuts.send_modify(|n| *n += 1);
    }

    pub fn log_cuts(&self) -> watch::Receiver<u64> {
        self.log_cuts.subscribe()
    }

    pub fn add_failure(
        &self,
        n: usize,
        code: u16,
        method: Option<&str>,
        path_contains: Option<&str>,
    ) {
        if n == 0 {
            return;
        }
        self.with(|s| s.failures.push(rule(n, code, method, path_contains)));
    }

    /// Like `add_failure`, answering `body` as text/plain instead of a Status.
    pub fn add_raw_failure(&self, n: usize, code: u16, body: &str, path_contains: Option<&str>) {
        self.with(|s| {
            s.failures.push(Failure {
                body: Some(body.to_string()),
                ..rule(n, code, None, path_contains)
            })
        });
    }

    /// Consumes one matching injected failure, oldest rule first: the code, and the raw
    /// body for a failure that is not a Status.
    pub fn take_failure(&self, method: &str, path: &str) -> Option<(u16, Option<String>)> {
        self.with(|s| take_full(&mut s.failures, method, path))
    }

    /// The next `n` matching requests are handled, then answered with `code` instead
    /// (a 504 from a proxy after the object was stored).
    pub fn add_failure_after(&self, n: usize, code: u16, method: &str, path_contains: &str) {
        self.with(|s| {
            s.failures_after
                .push(rule(n, code, Some(method), Some(path_contains)))
        });
    }

    /// Drops every injected failure and hang rule still pending.
    pub fn clear(&self) {
        self.with(|s| {
            s.failures.clear();
            s.failures_after.clear();
            s.hangs.clear();
            s.hangs_after.clear();
            s.resets.clear();
        });
    }

    pub fn take_failure_after(&self, method: &str, path: &str) -> Option<u16> {
        self.with(|s| take(&mut s.failures_after, method, path))
    }

    /// The next `n` matching requests are accepted and never answered.
    pub fn add_hang(&self, n: usize, method: Option<&str>, path_contains: Option<&str>) {
        self.with(|s| s.hangs.push(rule(n, 0, method, path_contains)));
    }

    pub fn take_hang(&self, method: &str, path: &str) -> bool {
        self.with(|s| take(&mut s.hangs, method, path).is_some())
    }

    pub fn add_hang_after(&self, n: usize, method: &str, path_contains: &str) {
        self.with(|s| {
            s.hangs_after
                .push(rule(n, 0, Some(method), Some(path_contains)))
        });
    }

    pub fn take_hang_after(&self, method: &str, path: &str) -> bool {
        self.with(|s| take(&mut s.hangs_after, method, path).is_some())
    }

    pub fn add_reset(&self, n: usize, method: &str, path_contains: &str) {
        self.with(|s| s.resets.push(rule(n, 0, Some(method), Some(path_contains))));
    }

    pub fn take_reset(&self, method: &str, path: &str) -> bool {
        self.with(|s| take(&mut s.resets, method, path).is_some())
    }

    pub fn set_response_delay(&self, d: Duration) {
        self.with(|s| s.response_delay = d);
    }

    pub fn response_delay(&self) -> Duration {
        self.with(|s| s.response_delay)
    }

    pub fn set_schedule_delay(&self, d: Duration) {
        self.with(|s| s.schedule_delay = d);
    }

    pub fn schedule_delay(&self) -> Duration {
        self.with(|s| s.schedule_delay)
    }

    pub fn set_pod_quota(&self, ns: &str, quota: Option<(&str, usize)>) {
        self.with(|s| match quota {
            Some((name, n)) => s.pod_quota.insert(ns.to_string(), (name.to_string(), n)),
            None => s.pod_quota.remove(ns),
        });
    }

    pub fn pod_quota(&self, ns: &str) -> Option<(String, usize)> {
        self.with(|s| s.pod_quota.get(ns).cloned())
    }

    pub fn forbid(&self, ns: &str) {
        self.with(|s| s.forbidden.insert(ns.to_string()));
    }

    pub fn is_forbidden(&self, ns: &str) -> bool {
        self.with(|s| s.forbidden.contains(ns))
    }

    pub fn set_unschedulable(&self, message: Option<&str>) {
        self.with(|s| s.unschedulable = message.map(str::to_string));
    }

    pub fn unschedulable(&self) -> Option<String> {
        self.with(|s| s.unschedulable.clone())
    }

    pub fn set_kueue_pod_webhook(&self, on: bool) {
        self.with(|s| s.kueue_pod_webhook = on);
    }

    pub fn kueue_pod_webhook(&self) -> bool {
        self.with(|s| s.kueue_pod_webhook)
    }
}
