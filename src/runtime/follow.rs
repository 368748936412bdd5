//! Following tasks' logs from either runtime: one task to its end (`asdo logs T001`,
//! `spawn --follow`), or every task a selector matches, stern style; and `spawn --wait`'s
//! wait for a task to start.

use super::Runtime;
use crate::cluster;
use crate::error::Result;
use crate::follow::{self, LogOptions, StartBounds};

impl Runtime {
    /// Follows one task (`Some(pod name)`) to its end and returns its exit code, or every
    /// task `selector` matches (picking up new ones) with at most `cap` streams at once on
    /// a cluster.
    pub async fn follow(
        &self,
        target: Option<&str>,
        selector: &str,
        opts: &LogOptions,
        cap: Option<usize>,
    ) -> Result<i32> {
        use super::local::logs as local;
        match (self, target) {
            (Runtime::Kubernetes(c), Some(name)) => {
                follow::follow_one(&c.client, &c.namespace, name, opts).await
            }
            (Runtime::Kubernetes(c), None) => {
                follow::follow_many(&c.client, &c.namespace, selector, opts, cap).await
            }
            (Runtime::Local(store), Some(name)) => local::follow_one(store, name, opts).await,
            (Runtime::Local(store), None) => local::follow_many(store, selector, opts).await,
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
            Runtime::Local(store) => {
                super::local::logs::wait_started(store, id, bounds.start).await
            }
        }
    }
}
