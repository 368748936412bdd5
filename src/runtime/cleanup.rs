//! The runtime's part of `asdo cleanup` (`crate::cleanup` chooses): deleting, keeping a
//! task's log first, and cancelling a local task that cannot be removed while it runs.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};

use super::Runtime;
use crate::archive::{Archive, Saved};
use crate::cluster;
use crate::error::{Error, Result};
use crate::taskpod::{Phase, TaskPod, TaskState};

impl Runtime {
    /// Deletes every task the selectors select in one call, returning them; None where
    /// there is no such call (local: one task at a time).
    pub async fn delete_collection(
        &self,
        labels: &str,
        fields: Option<&str>,
    ) -> Result<Option<Vec<TaskState>>> {
        let Runtime::Kubernetes(c) = self else {
            return Ok(None);
        };
        let api = cluster::pods(&c.client, Some(&c.namespace))?;
        let mut lp = ListParams::default().labels(labels);
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        let res = cluster::bounded(
            &format!("delete task pods in namespace {}", c.namespace),
            api.delete_collection(&DeleteParams::default(), &lp),
        )
        .await?;
        let now = Timestamp::now();
        Ok(Some(match res {
            either::Either::Left(list) => list
                .items
                .iter()
                .map(|p| TaskState::new(p, None, now))
                .collect(),
            either::Either::Right(_) => vec![],
        }))
    }

    /// Whether deleting a running task is how it is stopped (a pod: SIGTERM, its work in
    /// progress pushed); a local task's directory goes only once its process has ended,
    /// so a running one is cancelled first (`cancel`).
    pub fn deletes_running(&self) -> bool {
        matches!(self, Runtime::Kubernetes(_))
    }

    /// Asks a running local task to stop as a pod's deletion would (SIGTERM; a queued one
    /// never starts its agent). Returns how, for the message, when it was asked.
    pub fn cancel(&self, pod: &Pod) -> Result<Option<&'static str>> {
        let Runtime::Local(store) = self else {
            return Ok(None);
        };
        let Some((t, _)) = store.pod(TaskPod(pod).name())? else {
            return Ok(None);
        };
        if !t.cancel()? {
            return Ok(None);
        }
        Ok(Some(
            if matches!(TaskPod(pod).phase(), Phase::Pending | Phase::Queued) {
                "while queued; its agent never starts"
            } else {
                "(SIGTERM)"
            },
        ))
    }

    /// Keeps the task's full log and summary in the archive (`--save-logs`).
    pub async fn archive(&self, a: &Archive, pod: &Pod) -> Result<Saved> {
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                a.save(&api, pod).await
            }
            Runtime::Local(store) => {
                let log = store
                    .pod(TaskPod(pod).name())?
                    .and_then(|(t, _)| std::fs::read(t.log()).ok())
                    .unwrap_or_default();
                a.save_local(pod, &log).await
            }
        }
    }

    /// Deletes exactly the task that was seen (name and uid, in `ns` or the runtime's
    /// namespace): Ok(false) when it is already gone, AlreadyExists when another run holds
    /// the name now (it is left alone). A local task's directory (clone, HOME, log) is
    /// removed off the async workers.
    pub async fn delete(&self, ns: Option<&str>, name: &str, uid: &str) -> Result<bool> {
        match self {
            Runtime::Kubernetes(c) => {
                let ns = ns.unwrap_or(&c.namespace);
                let api = cluster::pods(&c.client, Some(ns))?;
                cluster::delete_pod_uid(&api, name, uid, ns).await
            }
            Runtime::Local(store) => {
                let Some((t, pod)) = store.pod(name)? else {
                    return Ok(false);
                };
                if pod.metadata.uid.as_deref() != Some(uid) {
                    return Err(Error::AlreadyExists(format!(
                        "local task {name} was replaced by another run meanwhile and was left alone"
                    )));
                }
                tokio::task::spawn_blocking(move || t.remove())
                    .await
                    .map_err(|e| Error::other(format!("removing local task {name}: {e}")))??;
                Ok(true)
            }
        }
    }
}
