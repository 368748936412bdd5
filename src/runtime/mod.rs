//! Where tasks run, behind one seam. The verbs (src/cli/) ask a [`Runtime`] for task
//! objects, pods, log tails and a task's server, and never branch on the kind
//! themselves:
//!
//! - `Kubernetes`: pods in a cluster, through the thin Kubernetes layer (`cluster`,
//!   `follow`, `portforward`);
//! - `Local`: this machine, one detached `asdo agent` per task in a bubblewrap sandbox,
//!   its state and log under the user's XDG state directory (`local`).
//!
//! Both answer with the same `Pod` (a local task stands for the pod it would be) and the
//! same [`TaskState`], so every projection (tables, `-o json`, reports, hooks, the web
//! page, MCP) is written once.

mod answer;
mod cleanup;
pub mod delete;
mod ended;
pub mod follow;
pub mod local;
pub mod spawn;
pub mod tasks;
mod wait;
pub mod watch;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::cluster;
use crate::error::{Error, Result};
use crate::scope::Scope;
use crate::taskpod::TaskState;

/// `--runtime` / `ASDO_RUNTIME`: where tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// Pods in a cluster (the kubeconfig's, or in-cluster).
    #[default]
    Kubernetes,
    /// This machine: a detached `asdo agent` per task in bubblewrap, state under
    /// $XDG_STATE_HOME/asdo.
    Local,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kubernetes => "kubernetes",
            Kind::Local => "local",
        }
    }
}

/// A cluster connection and the namespace the command works in.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub namespace: String,
}

/// Where this command's tasks are, connected.
#[derive(Clone)]
pub enum Runtime {
    Kubernetes(Cluster),
    Local(local::Store),
}

impl Runtime {
    /// Connects to the scope's runtime: the cluster client (no call made yet), or the
    /// local store. Bad input has been refused before this.
    pub async fn connect(scope: &Scope) -> Result<Runtime> {
        Ok(match scope.runtime {
            Kind::Kubernetes => Runtime::Kubernetes(Cluster {
                client: cluster::client(&scope.cluster).await?,
                namespace: scope.namespace.clone(),
            }),
            Kind::Local => Runtime::Local(local::Store::from_env()?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Runtime::Kubernetes(_) => Kind::Kubernetes,
            Runtime::Local(_) => Kind::Local,
        }
    }

    /// The namespace tasks are shown in (`local` for local tasks).
    pub fn namespace(&self) -> &str {
        match self {
            Runtime::Kubernetes(c) => &c.namespace,
            Runtime::Local(_) => local::pod::NAMESPACE,
        }
    }

    /// An asdo command line for a message's "what next", as the user would type it here:
    /// `asdo logs T001 -n ns` or `asdo --runtime local logs T001`.
    pub fn command(&self, verb_and_args: &str) -> String {
        match self {
            Runtime::Kubernetes(c) => format!("asdo {verb_and_args} -n {}", c.namespace),
            Runtime::Local(_) => format!("asdo --runtime local {verb_and_args}"),
        }
    }

    /// The task's pod (a local task as the pod it stands for), None when there is none.
    pub async fn pod(&self, task_or_pod: &str) -> Result<Option<Pod>> {
        let name = crate::task::pod_name_for(task_or_pod)?;
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                cluster::get_pod(&api, &name, &c.namespace).await
            }
            Runtime::Local(store) => Ok(store.pod(&name)?.map(|(_, p)| p)),
        }
    }

    /// The task's pod, or the one line saying there is none and where to look.
    pub async fn task_pod(&self, task_or_pod: &str) -> Result<Pod> {
        self.pod(task_or_pod)
            .await?
            .ok_or_else(|| self.not_found(task_or_pod))
    }

    /// "No such task" for this runtime, naming the command that lists what there is:
    /// `no pod agent-t001 in namespace ns; see the task pods with `asdo list -n ns``.
    pub fn not_found(&self, task_or_pod: &str) -> Error {
        Error::NotFound(format!(
            "{}; see the {} with `{}`",
            self.missing(task_or_pod),
            self.tasks_noun(),
            self.command("list")
        ))
    }

    /// The agent's log as the task object reads it: the last lines (markers, steps) and
    /// the session, which a long run announced before them. Best effort: None when the
    /// log cannot be read, and the task object then says `log_read: false`.
    pub async fn agent_log(&self, pod: &Pod) -> Option<cluster::AgentLog> {
        let view = crate::taskpod::TaskPod(pod);
        let name = view.name();
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(view.namespace())).ok()?;
                match cluster::agent_log(&api, name).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::info!("{e}; task {name} is read without its agent markers");
                        None
                    }
                }
            }
            Runtime::Local(store) => Some(store.pod(name).ok()??.0.agent_log()),
        }
    }

    /// One task, as the task object every output prints, with its pod.
    pub async fn task(&self, task_or_pod: &str) -> Result<(Pod, TaskState)> {
        let pod = self.task_pod(task_or_pod).await?;
        let log = self.agent_log(&pod).await;
        let task = task_state(&pod, log, Timestamp::now());
        Ok((pod, task))
    }

    /// The task's OpenCode server, reachable from this machine with its password: through
    /// a port-forward to the pod, or (local) straight at the task's loopback port.
    pub async fn remote(
        &self,
        task_or_pod: &str,
        password: Option<String>,
        local_port: u16,
    ) -> Result<crate::remote::Remote> {
        match self {
            Runtime::Kubernetes(c) => {
                crate::remote::open(&c.client, &c.namespace, task_or_pod, password, local_port)
                    .await
            }
            Runtime::Local(store) => {
                local::remote::open(store, task_or_pod, password, local_port).await
            }
        }
    }

    /// The pod's recent Events (the only place a pod stuck Pending says why). A local
    /// task has none: its state file and log say everything.
    pub async fn events(&self, pod: &str) -> Result<Vec<k8s_openapi::api::core::v1::Event>> {
        match self {
            Runtime::Kubernetes(c) => {
                use kube::api::ListParams;
                let events: kube::Api<k8s_openapi::api::core::v1::Event> =
                    kube::Api::namespaced(c.client.clone(), &c.namespace);
                let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
                cluster::bounded(&format!("list events of pod {pod}"), events.list(&lp))
                    .await
                    .map(|l| l.items)
            }
            Runtime::Local(_) => Ok(Vec::new()),
        }
    }
}

/// The task object of a pod and what its log says, the session included when the head
/// of the log had to be read for it.
pub fn task_state(pod: &Pod, log: Option<cluster::AgentLog>, now: Timestamp) -> TaskState {
    let session = log.as_ref().and_then(|l| l.session.clone());
    let mut t = TaskState::new(pod, log.as_ref().map(|l| l.tail.as_str()), now);
    t.session_id = t.session_id.or(session);
    t
}
