//! `asdo answer` below the verb: a person's answer delivered where only the agent reads it
//! and the task itself cannot write (see `crate::agent::answers`).

use kube::api::{Patch, PatchParams};

use super::Runtime;
use crate::cluster;
use crate::error::{Error, Result};

impl Runtime {
    /// Puts `key=value` where the task's agent reads its answers: an annotation on the pod
    /// (patched with the caller's credentials; the kubelet writes it into the pod's
    /// read-only downwardAPI file), or the same line in a local task's read-only
    /// `input/annotations`. Returns where it went and when the agent sees it, for the
    /// verb's message.
    pub async fn answer(&self, pod: &str, key: &str, value: &str) -> Result<String> {
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
                cluster::bounded(
                    "patching the pod's annotations",
                    api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await?;
                Ok(format!(
                    "on pod {pod} ({}); the agent replies once the kubelet refreshes the pod's annotations file",
                    c.namespace
                ))
            }
            Runtime::Local(store) => {
                let Some((t, _)) = store.pod(pod)? else {
                    return Err(self.not_found(pod));
                };
                t.answer(key, value).map_err(|e| {
                    Error::other(format!(
                        "cannot write the answer into {}: {e}",
                        t.answers().display()
                    ))
                })?;
                Ok(format!(
                    "on local task {pod}; the agent replies within seconds"
                ))
            }
        }
    }
}
