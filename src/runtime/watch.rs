//! [`Runtime::watch`]: what changes in the task pods, as one stream, on both runtimes.
//!
//! - Kubernetes: kube's watcher of the pods (a list, then a watch from its
//!   resourceVersion), re-listing after a lost watch, with kube's default backoff between
//!   attempts; interruptions are retried inside the stream (logged at info), and only a
//!   refusal retrying cannot fix (RBAC, a bad selector, not an API server) comes out, as
//!   the stream's last item.
//! - Local: the state directory read every [`LOCAL_POLL`]; a task's Pod is applied when
//!   it is new or changed (state, phase, a lost runner, its log file's size), deleted when
//!   its directory is gone.
//!
//! Both speak the same [`Change`]s, so a consumer (the `asdo ui` board; `wait` could be
//! another) is written once, with no Kubernetes type but `Pod`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};

use super::{Cluster, Runtime, local};
use crate::error::{Error, Result};

/// How often the local runtime's state directory is read for changes.
pub const LOCAL_POLL: Duration = Duration::from_millis(500);

/// One change in the watched task pods.
#[derive(Debug, Clone)]
pub enum Change {
    /// A full list begins: every pod there is follows as `Apply`, then `Listed`. Comes
    /// first, and again whenever the watch had to start over (a lost watch, a 410 Gone).
    Listing,
    /// A pod as it is now: new, or changed since it was last applied.
    Apply(Pod),
    /// The list that `Listing` began is complete: a pod known before it and not applied
    /// since is gone (it was deleted while the watch was away).
    Listed,
    /// A pod is gone, as it last was.
    Delete(Pod),
}

/// The stream [`Runtime::watch`] returns. An `Err` is final: the watch cannot go on,
/// and the stream ends after it; everything that can be retried is retried inside.
pub type Watch = BoxStream<'static, Result<Change>>;

impl Runtime {
    /// Watches the task pods matching `selector` (a label selector, e.g.
    /// `crate::task::SELECTOR`) for as long as the stream is polled. `all_namespaces`
    /// widens a cluster watch from the runtime's namespace to every namespace (`-A`);
    /// local tasks have one namespace. Bad input (an invalid namespace) is refused here,
    /// before any call.
    pub fn watch(&self, selector: &str, all_namespaces: bool) -> Result<Watch> {
        match self {
            Runtime::Kubernetes(c) => cluster_watch(c, selector, all_namespaces),
            Runtime::Local(store) => Ok(local_watch(store.clone(), selector.to_string())),
        }
    }
}

fn cluster_watch(c: &Cluster, selector: &str, all_namespaces: bool) -> Result<Watch> {
    let api = crate::cluster::pods(&c.client, (!all_namespaces).then_some(&*c.namespace))?;
    let cfg = watcher::Config::default().labels(selector);
    let events = watcher(api, cfg).default_backoff().boxed();
    Ok(futures::stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        loop {
            let change = match events.next().await? {
                Ok(watcher::Event::Init) => Change::Listing,
                Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => Change::Apply(p),
                Ok(watcher::Event::InitDone) => Change::Listed,
                Ok(watcher::Event::Delete(p)) => Change::Delete(p),
                Err(e) => match crate::follow::fatal_watch_error(&e, "watch task pods") {
                    Some(fatal) => return Some((Err(fatal), None)),
                    None => {
                        tracing::info!("watch of task pods interrupted: {e}; resuming");
                        continue;
                    }
                },
            };
            return Some((Ok(change), Some(events)));
        }
    })
    .boxed())
}

/// What the local poll last applied for a task: its Pod and its log's size.
type Seen = BTreeMap<String, (Pod, u64)>;

struct Poll {
    store: local::Store,
    selector: String,
    seen: Option<Seen>,
    out: VecDeque<Result<Change>>,
    ended: bool,
}

fn local_watch(store: local::Store, selector: String) -> Watch {
    let poll = Poll {
        store,
        selector,
        seen: None,
        out: VecDeque::new(),
        ended: false,
    };
    futures::stream::unfold(poll, |mut p| async move {
        loop {
            if let Some(c) = p.out.pop_front() {
                p.ended |= c.is_err();
                return Some((c, p));
            }
            if p.ended {
                return None;
            }
            if p.seen.is_some() {
                tokio::time::sleep(LOCAL_POLL).await;
            }
            let (store, selector) = (p.store.clone(), p.selector.clone());
            // Reading every task's files is blocking I/O: off the async workers.
            let read = tokio::task::spawn_blocking(move || read_local(&store, &selector))
                .await
                .unwrap_or_else(|e| Err(Error::other(format!("reading the local tasks: {e}"))));
            match read {
                Ok(now) => {
                    let changes = diff(p.seen.as_ref(), &now);
                    p.out.extend(changes.into_iter().map(Ok));
                    p.seen = Some(now);
                }
                Err(e) => p.out.push_back(Err(e)),
            }
        }
    })
    .boxed()
}

fn read_local(store: &local::Store, selector: &str) -> Result<Seen> {
    Ok(store
        .pods(selector)?
        .into_iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let dir = local::TaskDir {
                dir: store.tasks_dir().join(&name),
            };
            let size = std::fs::metadata(dir.log()).map_or(0, |m| m.len());
            (name, (p, size))
        })
        .collect())
}

/// The changes from `before` (None: nothing listed yet) to `now`.
fn diff(before: Option<&Seen>, now: &Seen) -> Vec<Change> {
    let Some(before) = before else {
        let mut out = vec![Change::Listing];
        out.extend(now.values().map(|(p, _)| Change::Apply(p.clone())));
        out.push(Change::Listed);
        return out;
    };
    let mut out: Vec<Change> = now
        .iter()
        .filter(|(name, seen)| before.get(*name) != Some(*seen))
        .map(|(_, (p, _))| Change::Apply(p.clone()))
        .collect();
    out.extend(
        before
            .iter()
            .filter(|(name, _)| !now.contains_key(*name))
            .map(|(_, (p, _))| Change::Delete(p.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "local", "uid": format!("u-{name}")},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn seen(pods: &[(&str, &str, u64)]) -> Seen {
        pods.iter()
            .map(|(n, ph, size)| (n.to_string(), (pod(n, ph), *size)))
            .collect()
    }

    fn words(changes: &[Change]) -> Vec<String> {
        let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        changes
            .iter()
            .map(|c| match c {
                Change::Listing => "listing".into(),
                Change::Apply(p) => format!("apply {}", name(p)),
                Change::Listed => "listed".into(),
                Change::Delete(p) => format!("delete {}", name(p)),
            })
            .collect()
    }

    #[test]
    fn local_poll_lists_first_then_says_only_what_changed() {
        let first = seen(&[("agent-t1", "Running", 10), ("agent-t2", "Succeeded", 5)]);
        assert_eq!(
            words(&diff(None, &first)),
            ["listing", "apply agent-t1", "apply agent-t2", "listed"]
        );
        // Nothing changed: nothing said (the poll is not a stream of copies).
        assert!(diff(Some(&first), &first).is_empty());
        // The running task's log grew; the ended one's directory was removed; a new one.
        let next = seen(&[("agent-t1", "Running", 42), ("agent-t3", "Pending", 0)]);
        assert_eq!(
            words(&diff(Some(&first), &next)),
            ["apply agent-t1", "apply agent-t3", "delete agent-t2"]
        );
        // A phase change with the same log size is a change too.
        let ended = seen(&[("agent-t1", "Succeeded", 42), ("agent-t3", "Pending", 0)]);
        assert_eq!(words(&diff(Some(&next), &ended)), ["apply agent-t1"]);
    }
}
