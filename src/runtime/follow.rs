//! Following tasks' logs from either runtime: one task to its end (`asdo logs T001`,
//! `spawn --follow`), or every task a selector matches, stern style; and `spawn --wait`'s
//! wait for a task to start.

use super::Runtime;
use super::local::logs as local;
use crate::cluster;
use crate::error::Result;
use crate::follow::{self, LogOptions, StartBounds};

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
