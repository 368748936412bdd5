//! Waiting for a task pod to start (through its queue, its image pull, its scheduling),
//! and for a deleted one to be gone.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::errors::{fatal_watch_error, gone, replaced};
use crate::error::{Error, Result};
use crate::taskpod::{Phase, TaskPod};

/// Container waiting reasons that cannot fix themselves: stop waiting at once and say
/// why. Everything else (ErrImagePull, ImagePullBackOff, CreateContainerConfigError for a
/// Secret not synced yet, ContainerCreating…) is retried by the kubelet, so asdo keeps
/// waiting, saying so on stderr, until the start timeout.
const FATAL_WAITING: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];

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
