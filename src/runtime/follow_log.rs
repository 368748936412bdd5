//! [`Runtime::follow_log`]: one task's whole log, followed to the task's end, into a
//! `follow::LineSink`, on both runtimes (the `asdo ui` task page's log).
//!
//! - Kubernetes: the resumable follower of `asdo logs` (`follow::stream_logs`): a cut
//!   stream resumes after the last line it delivered, bound to the pod's uid;
//! - Local: the stamped log file read from its start and re-read as it grows
//!   (`local::logs::print`), until the task has ended and the file has nothing more.
//!
//! Either way each line arrives once, with its kubelet-style timestamp.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::{Runtime, local};
use crate::error::{Error, Result};
use crate::follow::{self, LineSink, LogOptions};
use crate::taskpod::TaskPod;

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
                let opts = local::logs::Options {
                    follow: true,
                    ..Default::default()
                };
                local::logs::print(&t, &opts, sink).await?;
                // The task as it ended (its directory may be removed by now).
                Ok(store.pod(&name)?.map_or(now, |(_, p)| p))
            }
        }
    }
}
