//! `asdo list` below the verb: the tasks a selection names, as task objects (or only their
//! names), from either runtime. The verb prints them.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;

use super::Runtime;
use crate::cluster;
use crate::error::Result;
use crate::taskpod::{Phase, TaskPod, TaskState};

/// Which tasks, and how much of each.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The whole label selector (`app=agent-orchestrator` plus the user's).
    pub labels: &'a str,
    pub phase: Option<Phase>,
    /// Every namespace, not only the runtime's.
    pub all_namespaces: bool,
    /// Whose log tails are read (the only part of a task object that costs a call each).
    pub tails: Tails,
}

/// Which tasks' log tails are worth a call: none when only names are printed, every task
/// that ran when the objects show each agent's totals and PR (json, yaml, wide), the
/// running ones when the table shows only a running agent's last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tails {
    /// Names only: no task objects at all.
    NamesOnly,
    EverRan,
    Running,
}

impl Tails {
    fn wanted(self, p: &Pod) -> bool {
        match self {
            Tails::NamesOnly => false,
            Tails::EverRan => TaskPod(p).ever_ran(),
            Tails::Running => TaskPod(p).phase() == Phase::Running,
        }
    }
}

/// What a query found, sorted by namespace and pod.
#[derive(Debug, Default)]
pub struct Listing {
    /// The task objects (empty with `Tails::NamesOnly`).
    pub tasks: Vec<TaskState>,
    /// `(namespace, pod)` of every task found.
    pub names: Vec<(String, String)>,
}

/// Log tails read at once (each bounded by --request-timeout).
const TAIL_READS: usize = 8;

impl Runtime {
    /// Where the tasks a query looks at are, for "No task pods found in …": `namespace ns`,
    /// `all namespaces`, or the local tasks' directory.
    pub fn place(&self, all_namespaces: bool) -> String {
        match self {
            Runtime::Kubernetes(_) if all_namespaces => "all namespaces".into(),
            Runtime::Kubernetes(c) => format!("namespace {}", c.namespace),
            Runtime::Local(store) => store.tasks_dir().display().to_string(),
        }
    }

    /// What this runtime's tasks are called in a sentence: `task pods` or `local tasks`.
    pub fn tasks_noun(&self) -> &'static str {
        match self {
            Runtime::Kubernetes(_) => "task pods",
            Runtime::Local(_) => "local tasks",
        }
    }

    /// "There is no such task here", the start of a not-found message: `no pod agent-t001
    /// in namespace ns` or `no local task T001 in <tasks directory>`.
    pub fn missing(&self, task_or_pod: &str) -> String {
        match self {
            Runtime::Kubernetes(c) => {
                let name =
                    crate::task::pod_name_for(task_or_pod).unwrap_or_else(|_| task_or_pod.into());
                format!("no pod {name} in namespace {}", c.namespace)
            }
            Runtime::Local(_) => format!("no local task {task_or_pod} in {}", self.place(false)),
        }
    }

    /// Every task pod the selectors select, whole, for the engines that act on each
    /// (`wait --all`, `cleanup`). A cluster applies `fields` server-side; the local tasks
    /// are chosen by `labels` only, so a caller with `fields` matches them on the pods too
    /// (as `cleanup::Selection::matches` does).
    pub async fn pods(&self, labels: &str, fields: Option<&str>) -> Result<Vec<Pod>> {
        match self {
            Runtime::Kubernetes(c) => {
                let api = cluster::pods(&c.client, Some(&c.namespace))?;
                let mut lp = ListParams::default().labels(labels);
                if let Some(f) = fields {
                    lp = lp.fields(f);
                }
                let what = format!("list task pods in namespace {}", c.namespace);
                cluster::list_all(&api, &lp, &what).await
            }
            Runtime::Local(store) => store.pods(labels),
        }
    }

    /// The tasks a query names. On a cluster: paged list calls, keeping per pod a name, or
    /// its task object, or the pod only until its log tail is read (10,000 task pods are
    /// never all held at once), with a few tails read at a time. Locally every tail is one
    /// small file read, so every task object has it.
    pub async fn tasks(&self, q: &Query<'_>) -> Result<Listing> {
        let now = Timestamp::now();
        // Queued and Pending are one API phase: the selector cannot tell them apart.
        let in_phase = |p: &Pod| q.phase.is_none_or(|want| TaskPod(p).phase() == want);
        let mut out = Listing::default();
        match self {
            Runtime::Kubernetes(c) => {
                let ns = (!q.all_namespaces).then_some(c.namespace.as_str());
                let api = cluster::pods(&c.client, ns)?;
                let mut lp = ListParams::default().labels(q.labels);
                if let Some(p) = q.phase {
                    lp = lp.fields(&format!("status.phase={}", p.api_phase()));
                }
                let what = format!("list pods in {}", self.place(q.all_namespaces));
                let mut to_read: Vec<Pod> = Vec::new();
                cluster::for_each_page(&api, &lp, &what, |page| {
                    for p in page.into_iter().filter(in_phase) {
                        if q.tails == Tails::NamesOnly {
                            let v = TaskPod(&p);
                            out.names
                                .push((v.namespace().to_string(), v.name().to_string()));
                        } else if q.tails.wanted(&p) {
                            to_read.push(p);
                        } else {
                            out.tasks.push(TaskState::new(&p, None, now));
                        }
                    }
                })
                .await?;
                let read = futures::stream::iter(to_read)
                    .map(|p| async move {
                        // Best effort: a tail that cannot be read leaves `log_read: false`.
                        let log = self.agent_log(&p).await;
                        super::task_state(&p, log, now)
                    })
                    .buffer_unordered(TAIL_READS)
                    .collect::<Vec<_>>()
                    .await;
                out.tasks.extend(read);
            }
            Runtime::Local(store) => {
                for p in store.pods(q.labels)?.iter().filter(|p| in_phase(p)) {
                    let v = TaskPod(p);
                    if q.tails == Tails::NamesOnly {
                        out.names
                            .push((v.namespace().to_string(), v.name().to_string()));
                        continue;
                    }
                    let log = store.pod(v.name())?.map(|(t, _)| t.agent_log());
                    out.tasks.push(super::task_state(p, log, now));
                }
            }
        }
        if q.tails != Tails::NamesOnly {
            out.names = out
                .tasks
                .iter()
                .map(|t| (t.namespace.clone(), t.pod.clone()))
                .collect();
        }
        out.tasks
            .sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        out.names.sort();
        Ok(out)
    }
}
