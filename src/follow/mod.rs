//! Following a task pod: wait for it to start, stream its log to the end through
//! any number of dropped connections, and report how it ended.
//!
//! Why this exists: API servers, load balancers and kubelets cut log streams that
//! stay silent (an agent thinking for ten minutes is silent), and `kubectl logs -f`
//! then stops. Here every line is read with its kubelet timestamp; after a cut we
//! reconnect with `sinceTime` (whole seconds, floored) and a [`Cursor`] drops what
//! was already printed, so no line is lost or printed twice.
//!
//! Laid out as stern's tail.go/stern.go: [`stream`] reads one pod's log through cuts
//! (the [`Cursor`], the pump, the retry bound), [`start`] waits for a pod to start (or
//! to be gone), [`many`] follows many pods at once, [`sink`] is where lines go, and
//! [`errors`] says which API answers end a follow and how. This file holds only the
//! options every follower shares.

use std::time::Duration;

pub mod errors;
pub mod many;
pub mod sink;
pub mod start;
pub mod stream;

pub use errors::{
    Outage, api_code, deleted_words, describe_watch, fatal_api_error, fatal_watch_error, gone,
    is_refusal, replaced,
};
pub use many::{follow_many, follow_one};
pub use sink::{LineSink, Stdout};
pub use start::{StartBounds, wait_deleted, wait_started};
pub use stream::{Cursor, split_timestamp, stream_logs};

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

/// `--retry-for` default: long enough for an API server restart or a node reboot, not forever.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(300);
