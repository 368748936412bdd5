//! The object store: typed collections ordered by (namespace, name), one global
//! resourceVersion counter, and the change feed behind watches and the kubelet.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret};
use tokio::sync::mpsc;

use super::resources::{self, AnyObject, Kind, name_of};
use super::selectors::Selectors;
use super::status::ApiError;
use super::util;

/// (namespace, name); namespace is "" for cluster-scoped kinds.
pub(crate) type Key = (String, String);

/// Watch history kept for resuming from a resourceVersion; older ones get 410 Gone.
const HISTORY: usize = 4096;

pub(crate) struct Collection<K> {
    items: BTreeMap<Key, K>,
}

impl<K> Default for Collection<K> {
    fn default() -> Self {
        Collection {
            items: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

pub(crate) struct Change {
    pub rv: u64,
    pub kind: ChangeType,
    pub object: Arc<dyn AnyObject>,
    /// The object before a modification: a watch with selectors turns a change
    /// that enters or leaves the selection into ADDED or DELETED, as the real one does.
    pub previous: Option<Arc<dyn AnyObject>>,
}

pub(crate) struct Page<K> {
    pub items: Vec<K>,
    pub next: Option<Key>,
    pub remaining: Option<i64>,
}

pub(crate) struct Store {
    rv: u64,
    pub pods: Collection<Pod>,
    pub secrets: Collection<Secret>,
    pub configmaps: Collection<ConfigMap>,
    pub namespaces: Collection<Namespace>,
    pub events: Collection<Event>,
    pub nodes: Collection<Node>,
    history: VecDeque<Arc<Change>>,
    /// Changes up to this resourceVersion are no longer in `history`.
    floor: u64,
    watchers: Vec<mpsc::UnboundedSender<Arc<Change>>>,
}

pub(crate) fn key_of<K: Kind>(obj: &K) -> Key {
    let m = obj.metadata();
    let ns = if K::NAMESPACED {
        m.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    (ns, name_of(m).to_string())
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

impl Store {
    pub fn new() -> Store {
        let mut s = Store {
            rv: 0,
            pods: Collection::default(),
            secrets: Collection::default(),
            configmaps: Collection::default(),
            namespaces: Collection::default(),
            events: Collection::default(),
            nodes: Collection::default(),
            history: VecDeque::new(),
            floor: 0,
            watchers: vec![],
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.put(resources::namespace(ns));
        }
        s.put(resources::fake_node());
        s
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Continue numbering after `rv` (a restarted server whose etcd kept its revision);
    /// watches from before `rv` get 410 Gone, from `rv` on they resume.
    pub fn advance_resource_version(&mut self, rv: u64) {
        if rv > self.rv {
            self.rv = rv;
            self.floor = rv;
        }
    }

    pub fn get<K: Kind>(&self, ns: &str, name: &str) -> Option<&K> {
        K::collection(self).items.get(&key(ns, name))
    }

    pub fn has_namespace(&self, ns: &str) -> bool {
        self.get::<Namespace>("", ns).is_some()
    }

    /// Stores `obj` with a new resourceVersion, filling uid and creationTimestamp
    /// when missing; ADDED, or MODIFIED when it replaces an object of the same name.
    pub fn put<K: Kind>(&mut self, mut obj: K) -> K {
        self.rv += 1;
        let m = obj.metadata_mut();
        m.resource_version = Some(self.rv.to_string());
        m.uid.get_or_insert_with(util::uid);
        m.creation_timestamp.get_or_insert_with(util::now_time);
        let k = key_of(&obj);
        let previous = K::collection_mut(self).items.insert(k, obj.clone());
        let kind = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.emit(
            kind,
            Arc::new(obj.clone()),
            previous.map(|p| Arc::new(p) as Arc<dyn AnyObject>),
        );
        obj
    }

    pub fn create<K: Kind>(&mut self, obj: K) -> Result<K, ApiError> {
        let (ns, name) = key_of(&obj);
        if self.get::<K>(&ns, &name).is_some() {
            return Err(ApiError::already_exists(K::URL_PATH_SEGMENT, &name));
        }
        Ok(self.put(obj))
    }

    /// Applies `f` to the stored object (only if its uid is `uid`, when given) and
    /// records the change. `f` returning false means nothing changed.
    pub fn update<K: Kind>(
        &mut self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        f: impl FnOnce(&mut K) -> bool,
    ) -> Option<K> {
        let current = self.get::<K>(ns, name)?;
        if uid.is_some_and(|u| current.metadata().uid.as_deref() != Some(u)) {
            return None;
        }
        let mut next = current.clone();
        if !f(&mut next) {
            return Some(next);
        }
        Some(self.put(next))
    }

    /// Removes the object; `f` may stamp it (deletionTimestamp) before the DELETED event.
    pub fn remove<K: Kind>(&mut self, ns: &str, name: &str, f: impl FnOnce(&mut K)) -> Option<K> {
        let mut obj = K::collection_mut(self).items.remove(&key(ns, name))?;
        self.rv += 1;
        f(&mut obj);
        obj.metadata_mut().resource_version = Some(self.rv.to_string());
        self.emit(ChangeType::Deleted, Arc::new(obj.clone()), None);
        Some(obj)
    }

    /// One page of a list in (namespace, name) order, starting after `after`.
    pub fn page<K: Kind>(
        &self,
        ns: Option<&str>,
        sel: &Selectors,
        after: Option<&Key>,
        limit: Option<usize>,
    ) -> Page<K> {
        let start = match (after, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included(key(ns, "")),
            (None, None) => Bound::Unbounded,
        };
        let mut in_scope = K::collection(self)
            .items
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
            .filter(|(_, v)| sel.matches(*v));
        let mut items = vec![];
        let mut next = None;
        for (k, v) in in_scope.by_ref() {
            items.push(v.clone());
            if limit.is_some_and(|l| items.len() >= l) {
                next = Some(k.clone());
                break;
            }
        }
        // Only report a continue token when something is left, and (like the real
        // server) count what is left only for unfiltered lists.
        let mut remaining = None;
        if next.is_some() {
            let more = if sel.is_empty() {
                let n = in_scope.count();
                remaining = Some(n as i64);
                n > 0
            } else {
                in_scope.next().is_some()
            };
            if !more {
                next = None;
                remaining = None;
            }
        }
        Page {
            items,
            next,
            remaining,
        }
    }

    /// Every change from now on, until the receiver is dropped.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<Arc<Change>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(tx);
        rx
    }

    /// Changes after `rv`; Err(oldest resumable rv) when history no longer reaches back.
    pub fn history_after(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.floor {
            return Err(self.floor + 1);
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    fn emit(
        &mut self,
        kind: ChangeType,
        object: Arc<dyn AnyObject>,
        previous: Option<Arc<dyn AnyObject>>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            object,
            previous,
        });
        if self.history.len() == HISTORY
            && let Some(old) = self.history.pop_front()
        {
            self.floor = old.rv;
        }
        self.history.push_back(change.clone());
        self.watchers.retain(|w| w.send(change.clone()).is_ok());
    }
}
