//! Knobs a test turns while the server runs: injected errors, delays, cut log
//! streams, forbidden namespaces and an unschedulable cluster.

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
    failures: Vec<Failure>,
    response_delay: Duration,
    schedule_delay: Duration,
    forbidden: HashSet<String>,
    unschedulable: Option<String>,
    /// namespace -> (ResourceQuota name, count/pods limit): a stand-in for quota admission.
    pod_quota: std::collections::HashMap<String, (String, usize)>,
}

struct Failure {
    remaining: usize,
    code: u16,
    method: Option<String>,
    path_contains: Option<String>,
}

impl Faults {
    pub fn new() -> Faults {
        Faults {
            inner: Mutex::new(Settings {
                log_drop_after: None,
                failures: vec![],
                response_delay: Duration::ZERO,
                schedule_delay: Duration::from_millis(200),
                forbidden: HashSet::new(),
                unschedulable: None,
                pod_quota: Default::default(),
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
        self.with(|s| {
            s.failures.push(Failure {
                remaining: n,
                code,
                method: method.map(|m| m.to_ascii_uppercase()),
                path_contains: path_contains.map(str::to_string),
            })
        });
    }

    /// Consumes one matching injected failure, oldest rule first.
    pub fn take_failure(&self, method: &str, path: &str) -> Option<u16> {
        self.with(|s| {
            let i = s.failures.iter().position(|f| {
                f.method.as_deref().is_none_or(|m| m == method)
                    && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
            })?;
            let f = &mut s.failures[i];
            f.remaining -= 1;
            let code = f.code;
            if f.remaining == 0 {
                s.failures.remove(i);
            }
            Some(code)
        })
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
}
