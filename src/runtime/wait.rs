//! Where `wait`'s verdicts come from: one watch of the task pods on a cluster, the local
//! tasks' state files read every half second here. The rest of `wait` is `crate::wait`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Runtime, local};
use crate::cluster;
use crate::error::Result;
use crate::taskpod::TaskPod;
use crate::verdict::{self, Verdict};

impl Runtime {
    /// Returns when every wanted task (pod name → the id as typed) has its verdict, each
    /// given to `on_verdict` as it is reached (with `any`, when the first one has).
    /// Dropping the future (a timeout) stops it; the caller keeps what it was given.
    pub async fn watch_until_done(
        &self,
        wanted: &BTreeMap<String, String>,
        any: bool,
        on_verdict: impl FnMut(Verdict),
    ) -> Result<()> {
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                verdict::watch_until_done(&api, wanted, any, on_verdict).await
            }
            Runtime::Local(store) => poll_until_done(store, wanted, any, on_verdict).await,
        }
    }
}

/// A local task named that is not there is the command's answer (a typo), at once.
async fn poll_until_done(
    store: &local::Store,
    wanted: &BTreeMap<String, String>,
    any: bool,
    mut on_verdict: impl FnMut(Verdict),
) -> Result<()> {
    for (pod, id) in wanted {
        if store.pod(pod)?.is_none() {
            return Err(local::logs::not_found(store, id));
        }
    }
    let mut done: BTreeSet<&String> = BTreeSet::new();
    loop {
        let pending: Vec<&String> = wanted.keys().filter(|p| !done.contains(p)).collect();
        for pod in pending {
            if let Some((t, p)) = store.pod(pod)?
                && TaskPod(&p).is_finished()
            {
                let log = t.agent_log();
                let mut v = Verdict::of(&p, Some(log.tail));
                v.task.session_id = v.task.session_id.or(log.session);
                on_verdict(v);
                done.insert(pod);
            }
        }
        if done.len() == wanted.len() || (any && !done.is_empty()) {
            return Ok(());
        }
        tokio::time::sleep(super::watch::LOCAL_POLL).await;
    }
}
