//! "Until this task has ended", for a command that lives as long as its task (`attach
//! --print-url`): the cluster watches the pod, the local runtime reads the task's state.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::wait::await_condition;

use super::Runtime;
use crate::taskpod::TaskPod;

impl Runtime {
    /// Returns once the task `pod` (a pod name) has ended: its pod as it ended, or None
    /// when it is gone (deleted, cleaned up). Never gives up by itself; the caller races
    /// it against Ctrl-C or a deadline.
    pub async fn ended(&self, pod: &str) -> Option<Pod> {
        match self {
            Runtime::Kubernetes(c) => {
                let api: kube::Api<Pod> = kube::Api::namespaced(c.client.clone(), &c.namespace);
                // The watch failing (the API server restarting, this process out of file
                // descriptors) says nothing about the pod: watch again after a pause, and
                // only a pod seen finished or gone ends the wait.
                let mut pause = Duration::from_millis(500);
                loop {
                    match await_condition(api.clone(), pod, |p: Option<&Pod>| {
                        p.is_none_or(|p| TaskPod(p).is_finished())
                    })
                    .await
                    {
                        Ok(p) => return p,
                        Err(e) => {
                            tracing::debug!("watching pod {pod}: {e}; watching again");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
            Runtime::Local(store) => loop {
                // An unreadable state (a write in progress elsewhere) is read again.
                match store.pod(pod) {
                    Ok(None) => return None,
                    Ok(Some((_, p))) if TaskPod(&p).is_finished() => return Some(p),
                    Ok(Some(_)) => {}
                    Err(e) => tracing::debug!("reading local task {pod}: {e}; reading again"),
                }
                tokio::time::sleep(super::watch::LOCAL_POLL).await;
            },
        }
    }
}
