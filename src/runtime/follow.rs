//! Following tasks' logs from either runtime: one task to its end (`asdo logs T001`,
//! `spawn --follow`), or every task a selector matches, stern style; and `spawn --wait`'s
//! wait for a task to start; and one run's whole log for the web page's task view
//! ([`Runtime::follow_log`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::Runtime;
use super::local::logs as local;
use crate::cluster;
use crate::error::{Error, Result};
use crate::follow::{self, LineSink, LogOptions, StartBounds};
use crate::taskpod::TaskPod;

/// Whose logs.
#[derive(Debug, Clone, Copy)]
pub enum Follow<'a> {
    /// One task (id or pod name), to its end.
    One(&'a str),
    /// Every task the label selector matches, new ones as they appear; on a cluster at
    /// most `cap` log streams at once (None: the connection's default).
    Many {
        selector: &'a str,
        cap: Option<usize>,
    },
}

impl Runtime {
    /// Follows the logs; one task's exit code when it ended, else 0 (or Ctrl-C's).
    pub async fn follow(&self, which: Follow<'_>, opts: &LogOptions) -> Result<i32> {
        match (self, which) {
            (Runtime::Kubernetes(c), Follow::One(name)) => {
                follow::follow_one(&c.client, &c.namespace, name, opts).await
            }
            (Runtime::Kubernetes(c), Follow::Many { selector, cap }) => {
                follow::follow_many(&c.client, &c.namespace, selector, opts, cap).await
            }
            (Runtime::Local(store), Follow::One(name)) => {
                local::follow_one(store, name, opts).await
            }
            (Runtime::Local(store), Follow::Many { selector, .. }) => {
                local::follow_many(store, selector, opts).await
            }
        }
    }

    /// Until the task just created runs or has ended (`spawn --wait`): a cluster's pod by
    /// name and uid within both bounds, a local task within the start bound.
    pub async fn wait_started(
        &self,
        id: &str,
        name: &str,
        uid: Option<&str>,
        bounds: StartBounds,
    ) -> Result<()> {
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                follow::wait_started(&api, name, uid, bounds)
                    .await
                    .map(drop)
            }
            Runtime::Local(store) => local::wait_started(store, id, bounds.start).await,
        }
    }
}

// [`Runtime::follow_log`]: one task's whole log, followed to the task's end, into a
// `follow::LineSink`, on both runtimes (the `asdo ui` task page's log).
//
// - Kubernetes: the resumable follower of `asdo logs` (`follow::stream_logs`): a cut
//   stream resumes after the last line it delivered, bound to the pod's uid;
// - Local: the stamped log file read from its start and re-read as it grows
//   (`local::logs::print`), until the task has ended and the file has nothing more.
//
// Either way each line arrives once, with its kubelet-style timestamp.
impl Runtime {
    /// Follows the log of the run `pod` shows (its uid) from its first line until the task
    /// ends; returns the pod as it ended. A run replaced meanwhile is not followed.
    pub async fn follow_log(&self, pod: &Pod, sink: &mut dyn LineSink) -> Result<Pod> {
        let name = TaskPod(pod).name().to_string();
        let uid = pod.metadata.uid.clone();
        match self {
            Runtime::Kubernetes(c) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or(&c.namespace);
                let api = crate::cluster::pods(&c.client, Some(ns))?;
                let opts = LogOptions {
                    follow: true,
                    retry_for: Duration::ZERO,
                    ..Default::default()
                };
                follow::stream_logs(&api, &name, uid.as_deref(), &opts, sink).await
            }
            Runtime::Local(store) => {
                let replaced = || {
                    Error::NotFound(format!(
                        "local task {name} is gone or was replaced by another run"
                    ))
                };
                let Some((t, now)) = store.pod(&name)? else {
                    return Err(replaced());
                };
                if now.metadata.uid != uid {
                    return Err(replaced());
                }
                let opts = local::Options {
                    follow: true,
                    ..Default::default()
                };
                local::print(&t, &opts, sink).await?;
                // The task as it ended (its directory may be removed by now).
                Ok(store.pod(&name)?.map_or(now, |(_, p)| p))
            }
        }
    }
}
