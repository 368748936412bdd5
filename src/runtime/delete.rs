//! [`Runtime::delete_task`]: a person's "delete this task" (the page's Delete button),
//! aimed at exactly the run they saw (its uid), on both runtimes.
//!
//! A pod's deletion both stops a running agent (SIGTERM: it pushes its work in progress
//! and ends) and, once it has ended, removes the pod and its log. A local task has no
//! kubelet to do the second half later, so the two halves are two deletions: one
//! cancels a task that runs or waits for a slot, the next removes the ended task's
//! directory (clone, HOME, log).

use k8s_openapi::api::core::v1::Pod;

use super::Runtime;
use crate::error::{Error, Result};
use crate::taskpod::TaskPod;

/// What [`Runtime::delete_task`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The task is gone (cluster: its pod is being deleted, a running agent is stopped
    /// first; local: its directory is removed).
    Deleted,
    /// Local: the task ran or waited for a slot; it was asked to stop (a running agent
    /// pushes its work in progress and ends 143, a queued one never starts). It stays,
    /// ended, until deleted again.
    Cancelled,
    /// There was nothing of that run left to delete.
    AlreadyGone,
}

impl Runtime {
    /// Deletes the task `pod` shows, only if it is still that run (its `metadata.uid`): a
    /// task replaced meanwhile by another run under the same id is left alone, with an
    /// `AlreadyExists` error saying so. Built on cleanup's two steps, `cancel` and
    /// `delete`, so the page and `asdo cleanup` stop and remove a task the same way.
    pub async fn delete_task(&self, pod: &Pod) -> Result<Deletion> {
        let view = TaskPod(pod);
        let name = view.name();
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        if !self.deletes_running() {
            // A local task: what it is now decides between cancelling and removing.
            let Some(now) = self.pod(name).await? else {
                return Ok(Deletion::AlreadyGone);
            };
            let id = TaskPod(&now).task_label().unwrap_or(name).to_string();
            if now.metadata.uid.as_deref() != Some(uid) {
                return Err(Error::AlreadyExists(format!(
                    "local task {id} was replaced by another run meanwhile and was left alone"
                )));
            }
            if !TaskPod(&now).is_finished() {
                // Running by its records, yet no agent to signal: it is starting, or has
                // just ended; the next look tells which.
                return match self.cancel(&now)? {
                    Some(_) => Ok(Deletion::Cancelled),
                    None => Err(Error::other(format!(
                        "local task {id} has no agent process to stop right now (starting, or just ended); try again in a moment"
                    ))),
                };
            }
        }
        Ok(
            match self
                .delete(pod.metadata.namespace.as_deref(), name, uid)
                .await?
            {
                true => Deletion::Deleted,
                false => Deletion::AlreadyGone,
            },
        )
    }
}
