//! The one task model: what a task pod (and the end of its log) says about its task.
//!
//! Two layers. [`TaskPod`] is a view of the pod alone (labels, annotations, phase, the
//! agent container's state), cheap and synchronous. [`TaskState`] adds what the agent
//! printed (markers, last step, totals, PR, session) and is THE task object: `-o json|yaml`
//! of every verb prints it, `wait`'s lines and reports, the hooks' env, the archive and the
//! web page are projections of it. Its JSON shape is stable and described by
//! `src/task.schema.json`; a field is added, never renamed or retyped.
//!
//! Why one model: "what does this pod say about its task?" used to be answered in ~18
//! places with four result structs, and they disagreed (a pod stuck in
//! `CreateContainerConfigError` was plain `Pending` in one and named in another). Pure: no
//! I/O; the caller fetched the pod and the log tail.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::marker::{self, Marker};
use crate::task::{
    ANN_BASE, ANN_BRANCH, ANN_ENVIRONMENT, ANN_REPO, ANN_SPAWN_ID, ANN_SPEC_DIR, CONTAINER,
    LABEL_QUEUE_NAME, LABEL_TASK_ID,
};

/// Where a task is in its life. The API's pod phases, plus `Queued`: a pod held back by
/// scheduling gates (Kueue admits it when its queue has room), which the API calls
/// `Pending` though nothing is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Queued,
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    /// Every phase, in the order a task goes through them.
    pub const ALL: [Phase; 6] = [
        Phase::Queued,
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "Queued",
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Unknown => "Unknown",
        }
    }

    /// A `--phase` flag, any case (`failed` is `Failed`): a typo is a usage error before
    /// any API call.
    pub fn parse(s: &str) -> Result<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::usage(format!(
                    "unknown phase {s:?}: use one of {}",
                    Phase::ALL.map(Phase::as_str).join(", ")
                ))
            })
    }

    /// The pod phase the API filters on (`status.phase=`): a queued pod is `Pending` there.
    pub fn api_phase(self) -> &'static str {
        match self {
            Phase::Queued => "Pending",
            p => p.as_str(),
        }
    }

    /// Succeeded or Failed: the task will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Container waiting reasons of a container being set up normally: not a reason to
/// replace it (see [`TaskPod::cannot_start`]).
const STARTING: &[&str] = &["ContainerCreating", "PodInitializing"];

/// A read-only view of a task pod: every question about the task the pod alone answers.
#[derive(Debug, Clone, Copy)]
pub struct TaskPod<'a>(pub &'a Pod);

impl<'a> TaskPod<'a> {
    pub fn name(&self) -> &'a str {
        self.0.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &'a str {
        self.0.metadata.namespace.as_deref().unwrap_or_default()
    }

    fn label(&self, key: &str) -> Option<&'a str> {
        self.0
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// An annotation asdo stamped at spawn; empty counts as absent.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.0
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The task id as the pod's `task-id` label spells it (`T001`).
    pub fn task_label(&self) -> Option<&'a str> {
        self.label(LABEL_TASK_ID)
    }

    /// The task id, or the pod name for a pod without the label.
    pub fn task_id(&self) -> &'a str {
        self.task_label().unwrap_or_else(|| self.name())
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.annotation(ANN_BRANCH)
    }

    pub fn repo(&self) -> Option<&'a str> {
        self.annotation(ANN_REPO)
    }

    pub fn base(&self) -> Option<&'a str> {
        self.annotation(ANN_BASE)
    }

    pub fn spawn_id(&self) -> Option<&'a str> {
        self.annotation(ANN_SPAWN_ID)
    }

    /// The Kueue LocalQueue the pod was submitted to, if any (label
    /// `kueue.x-k8s.io/queue-name`).
    pub fn queue(&self) -> Option<&'a str> {
        self.label(LABEL_QUEUE_NAME)
    }

    /// The phase as the API says it (`Pending` when the pod has no status yet).
    pub fn api_phase(&self) -> &'a str {
        self.0
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending")
    }

    /// Scheduling gates still on the pod (Kueue's, or anyone's).
    pub fn is_gated(&self) -> bool {
        self.0
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty())
    }

    pub fn phase(&self) -> Phase {
        match self.api_phase() {
            "Pending" if self.is_gated() => Phase::Queued,
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            _ => Phase::Unknown,
        }
    }

    /// The agent container's status, once the kubelet reports one.
    pub fn agent(&self) -> Option<&'a ContainerStatus> {
        self.0
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == CONTAINER)
    }

    /// The agent container's exit code, once it has terminated.
    pub fn exit_code(&self) -> Option<i32> {
        Some(self.agent()?.state.as_ref()?.terminated.as_ref()?.exit_code)
    }

    pub fn created(&self) -> Option<Timestamp> {
        self.0.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }

    /// When the pod started (`status.startTime`).
    pub fn started(&self) -> Option<Timestamp> {
        self.0.status.as_ref()?.start_time.as_ref().map(|t| t.0)
    }

    /// When the agent container ended, if it has.
    pub fn finished(&self) -> Option<Timestamp> {
        self.agent()?
            .state
            .as_ref()?
            .terminated
            .as_ref()?
            .finished_at
            .as_ref()
            .map(|t| t.0)
    }

    /// From start to finish, or to `now` while it runs.
    pub fn duration(&self, now: Timestamp) -> Option<std::time::Duration> {
        let start = self.started()?;
        let end = self.finished().unwrap_or(now);
        Some(std::time::Duration::from_secs(
            end.as_second().saturating_sub(start.as_second()).max(0) as u64,
        ))
    }

    pub fn has_started(&self) -> bool {
        self.agent()
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    }

    /// Whether the agent container ever ran (so a log exists, or existed).
    pub fn ever_ran(&self) -> bool {
        self.has_started()
            || self.agent().is_some_and(|c| {
                c.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
            })
    }

    pub fn is_finished(&self) -> bool {
        self.phase().is_final() || self.exit_code().is_some()
    }

    /// Deleted (deletionTimestamp set) and not succeeded: its ending is the deletion, not
    /// the code the kill left.
    pub fn deleted_mid_run(&self) -> bool {
        self.0.metadata.deletion_timestamp.is_some() && self.phase() != Phase::Succeeded
    }

    /// Why the pod is not running yet, `(reason, message)`, in the words `kubectl
    /// describe` uses: the container's waiting reason, else an unschedulable condition.
    pub fn waiting_reason(&self) -> Option<(String, String)> {
        if let Some(w) = self
            .agent()
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
        {
            return Some((
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default(),
            ));
        }
        self.0
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                    c.message.clone().unwrap_or_default(),
                )
            })
    }

    /// How the container or pod was ended when that says more than the exit code
    /// (OOMKilled, DeadlineExceeded, Evicted); `Completed` and `Error` say nothing.
    pub fn termination_reason(&self) -> Option<String> {
        let container = self
            .agent()
            .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.reason.clone())
            .filter(|r| !matches!(r.as_str(), "Completed" | "Error" | ""));
        // activeDeadlineSeconds and evictions are said on the pod, not the container.
        container.or_else(|| {
            self.0
                .status
                .as_ref()?
                .reason
                .clone()
                .filter(|r| !r.is_empty())
        })
    }

    /// How the task ended: the phase and the exit code (the container's, else 0 for a
    /// succeeded pod and 1 for any other).
    pub fn outcome(&self) -> (Phase, i32) {
        let phase = self.phase();
        let code = self
            .exit_code()
            .unwrap_or(if phase == Phase::Succeeded { 0 } else { 1 });
        (phase, code)
    }

    /// `Failed, exit code 137 (OOMKilled)`: how `logs` ends a followed task. A task that
    /// ended without an exit code (lost, past its deadline, evicted) says so rather than
    /// showing the 1 asdo exits with: the task object's `exit_code` is null there too.
    pub fn ending(&self) -> String {
        let (phase, code) = self.outcome();
        let code = match self.exit_code() {
            None if phase != Phase::Succeeded => "no exit code".to_string(),
            _ => format!("exit code {code}"),
        };
        match self.termination_reason() {
            Some(r) => format!("{phase}, {code} ({r})"),
            None => format!("{phase}, {code}"),
        }
    }

    /// One line for a pod that has no log yet.
    pub fn not_started(&self) -> String {
        let why = self
            .waiting_reason()
            .map(|(r, m)| if m.is_empty() { r } else { format!("{r}: {m}") })
            .unwrap_or_else(|| self.api_phase().to_string());
        format!("not started yet ({why}); no log to show")
    }

    /// Why the agent container cannot start, `Reason: message`, when it never ran and
    /// waits in anything but the normal start-up reasons (CreateContainerError,
    /// ErrImagePull, ImagePullBackOff, …): such a pod did no work, replacing it loses nothing.
    pub fn cannot_start(&self) -> Option<String> {
        if self.is_finished() {
            return None;
        }
        let c = self.agent()?;
        if c.restart_count > 0
            || c.last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some())
        {
            return None;
        }
        let w = c.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.as_deref().filter(|r| !r.is_empty())?;
        if STARTING.contains(&reason) {
            return None;
        }
        Some(match w.message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_string(),
        })
    }

    /// The pod's state for people: `Running`, or `Pending: CreateContainerError: …` when
    /// the phase alone would hide why it is stuck.
    pub fn describe(&self) -> String {
        let phase = self.api_phase();
        let waiting = self
            .agent()
            .and_then(|c| c.state.as_ref()?.waiting.as_ref())
            .and_then(|w| {
                let r = w.reason.as_deref().filter(|r| !r.is_empty())?;
                Some(match w.message.as_deref().filter(|m| !m.is_empty()) {
                    Some(m) => format!("{r}: {m}"),
                    None => r.to_string(),
                })
            });
        match waiting {
            Some(w) if !self.is_finished() => format!("{phase}: {w}"),
            _ => phase.to_string(),
        }
    }
}

/// The failed step an agent exit code stands for (`asdo agent`'s documented codes), for
/// when the log tail that names it was not read.
fn step_of_exit(code: i32) -> Option<&'static str> {
    use crate::agent::exit;
    Some(match code {
        exit::CONFIG => "config",
        exit::CLONE => "clone",
        exit::AGENT => "agent",
        exit::COMMIT => "commit",
        exit::PUSH => "push",
        exit::PR => "pr",
        exit::NO_CHANGES => "no-changes",
        exit::BUDGET => "budget",
        _ => return None,
    })
}

fn rfc3339<S: Serializer>(t: &Option<Timestamp>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// THE task object: one task as every output shows it. Built from (pod, log tail) by
/// [`TaskState::new`], or for a task whose pod is gone by [`TaskState::vanished`].
/// Serialized as `src/task.schema.json` describes (snake_case, every key always present,
/// `null` when unknown); no env value or secret of the pod is ever copied here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskState {
    /// The task id (`T001`), from the pod's `task-id` label (or as the user named it).
    pub id: String,
    pub pod: String,
    pub namespace: String,
    /// The pod's uid: tells one run of a task id from the next.
    pub uid: Option<String>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub base: Option<String>,
    pub spec_dir: Option<String>,
    pub environment: Option<String>,
    pub phase: Phase,
    /// The short reason the phase alone does not say; see [`TaskState::new`].
    pub reason: Option<String>,
    /// The longer explanation: the kubelet's waiting message, the agent's failure words.
    pub message: Option<String>,
    /// `Failed (OOMKilled)`: phase and reason as kubectl's STATUS column says it.
    pub status: String,
    /// The Kueue LocalQueue the task was submitted to.
    pub queue: Option<String>,
    pub exit_code: Option<i32>,
    #[serde(serialize_with = "rfc3339")]
    pub created: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339")]
    pub started: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339")]
    pub finished: Option<Timestamp>,
    /// Seconds from start to finish (to now while it runs).
    pub duration_seconds: Option<u64>,
    pub node: Option<String>,
    pub image: Option<String>,
    /// The agent's newest step line (`write src/a.rs`), without its bullet.
    pub last_step: Option<String>,
    /// The agent's newest marker line (`asdo: …`).
    pub last_marker: Option<String>,
    /// The commit the agent pushed (`asdo: done <sha>`).
    pub commit: Option<String>,
    /// The step the agent failed at (`asdo: failed <step>: …`).
    pub failed_step: Option<String>,
    pub files: Option<u64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// US dollars, when the provider reports prices.
    pub cost: Option<f64>,
    pub pr_url: Option<String>,
    /// The agent's OpenCode session (`ses_…`), for `attach`/`send`.
    pub session_id: Option<String>,
    /// One line for people: what the task did, or is doing.
    pub summary: String,
    /// Whether the agent's log was read (false: the log-derived fields are unknown, not empty).
    pub log_read: bool,
}

impl TaskState {
    /// The task as `pod` and the end of its log (`None`: not read) say it, at `now`.
    ///
    /// The reason, most specific first:
    /// - `Queued`: the queue name (label `kueue.x-k8s.io/queue-name`), else `SchedulingGated`;
    /// - not started: the kubelet's waiting reason (`ImagePullBackOff`,
    ///   `CreateContainerConfigError`, `ContainerCreating`) or `Unschedulable`;
    /// - ended: how it was killed (`OOMKilled`, `DeadlineExceeded`, `Evicted`), else the
    ///   agent's failed step (`no-changes`, `budget`, `push`, … from the marker, or from the
    ///   exit code when the log was not read), or `no-changes` for an allowed no-op;
    /// - `Terminating` for a running pod being deleted; `lost` for phase Unknown.
    pub fn new(pod: &Pod, log_tail: Option<&str>, now: Timestamp) -> TaskState {
        let tp = TaskPod(pod);
        let phase = tp.phase();
        let tail = log_tail.unwrap_or("");
        // How it ended: the newest done/failed marker, even when progress lines follow it.
        let ended = tail
            .lines()
            .rev()
            .filter_map(marker::parse)
            .find(|m| !matches!(m, Marker::Progress(_)));
        let totals = marker::last_summary(tail);
        let (mut reason, mut message): (Option<String>, Option<String>) = (None, None);
        let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
        match phase {
            Phase::Queued => {
                reason = Some(tp.queue().unwrap_or("SchedulingGated").to_string());
            }
            Phase::Pending | Phase::Running | Phase::Unknown if !tp.is_finished() => {
                if let Some((r, m)) = tp.waiting_reason().filter(|(r, _)| !r.is_empty()) {
                    reason = Some(r);
                    message = nonempty(m);
                } else if pod.metadata.deletion_timestamp.is_some() {
                    reason = Some("Terminating".into());
                } else if phase == Phase::Unknown {
                    reason = Some(
                        tp.termination_reason()
                            .unwrap_or_else(|| "lost".to_string()),
                    );
                    message = Some("the pod's node stopped reporting it".into());
                }
            }
            _ => {
                if let Some(r) = tp.termination_reason() {
                    reason = Some(r);
                }
                match &ended {
                    Some(Marker::Failed { step, reason: why }) => {
                        reason.get_or_insert_with(|| step.clone());
                        message = nonempty(why.clone());
                    }
                    Some(Marker::NoChanges) => {
                        reason.get_or_insert_with(|| "no-changes".into());
                    }
                    Some(_) => {}
                    None if phase == Phase::Failed => {
                        if let Some(step) = tp.exit_code().and_then(step_of_exit) {
                            reason.get_or_insert_with(|| step.to_string());
                        }
                    }
                    None => {}
                }
            }
        }
        let status = match &reason {
            Some(r) => format!("{phase} ({r})"),
            None => phase.to_string(),
        };
        let spec = pod.spec.as_ref();
        let own = |s: Option<&str>| s.map(str::to_string);
        let mut t = TaskState {
            id: tp.task_id().to_string(),
            pod: tp.name().to_string(),
            namespace: tp.namespace().to_string(),
            uid: pod.metadata.uid.clone(),
            branch: own(tp.branch()),
            repo: own(tp.repo()),
            base: own(tp.base()),
            spec_dir: own(tp.annotation(ANN_SPEC_DIR)),
            environment: own(tp.annotation(ANN_ENVIRONMENT)),
            phase,
            reason,
            message,
            status,
            queue: own(tp.queue()),
            exit_code: tp.exit_code(),
            created: tp.created(),
            started: tp.started(),
            finished: tp.finished(),
            duration_seconds: tp.duration(now).map(|d| d.as_secs()),
            node: spec.and_then(|s| s.node_name.clone()),
            image: spec.and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == CONTAINER)
                    .or(s.containers.first())?
                    .image
                    .clone()
            }),
            last_step: marker::last_step(tail).map(|s| s.trim_end().to_string()),
            commit: match &ended {
                Some(Marker::Done(sha)) => Some(sha.clone()),
                _ => None,
            },
            failed_step: match &ended {
                Some(Marker::Failed { step, .. }) => Some(step.clone()),
                _ => None,
            },
            last_marker: marker::last(tail).map(|m| m.to_string()),
            files: totals.map(|s| s.files),
            tokens_in: totals.map(|s| s.tokens_in),
            tokens_out: totals.map(|s| s.tokens_out),
            cost: totals.and_then(|s| s.cost),
            pr_url: marker::pr_url(tail),
            session_id: own(marker::last_session(tail)),
            summary: String::new(),
            log_read: log_tail.is_some(),
        };
        t.summary = t.sentence();
        t
    }

    /// A task whose pod is not there (any more): `why` is `not-found`, `deleted` (before
    /// it finished) or `replaced` (another run holds the name). Phase `Unknown`: how the
    /// task went is not known.
    pub fn vanished(task: &str, pod: &str, namespace: &str, why: &str, message: &str) -> Self {
        let mut t = TaskState {
            id: task.to_string(),
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            uid: None,
            branch: None,
            repo: None,
            base: None,
            spec_dir: None,
            environment: None,
            phase: Phase::Unknown,
            reason: Some(why.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
            status: format!("{} ({why})", Phase::Unknown),
            queue: None,
            exit_code: None,
            created: None,
            started: None,
            finished: None,
            duration_seconds: None,
            node: None,
            image: None,
            last_step: None,
            last_marker: None,
            commit: None,
            failed_step: None,
            files: None,
            tokens_in: None,
            tokens_out: None,
            cost: None,
            pr_url: None,
            session_id: None,
            summary: String::new(),
            log_read: false,
        };
        t.summary = t.sentence();
        t
    }

    /// A task whose pod went before it finished (deleted, killed by its deletion): the
    /// pod's identity and times, phase `Unknown` and `why` (how it went is not known).
    pub fn gone(pod: &Pod, why: &str, message: &str) -> Self {
        let mut t = TaskState::new(pod, None, Timestamp::now());
        t.phase = Phase::Unknown;
        t.reason = Some(why.to_string());
        t.message = Some(message.to_string()).filter(|m| !m.is_empty());
        t.status = format!("{} ({why})", Phase::Unknown);
        t.summary = t.sentence();
        t
    }

    pub fn succeeded(&self) -> bool {
        self.phase == Phase::Succeeded
    }

    /// The `summary` line: how it ended, or what it is doing now.
    fn sentence(&self) -> String {
        let mut s = match self.phase {
            Phase::Succeeded => match (&self.commit, self.reason.as_deref()) {
                (Some(sha), _) => format!("pushed {sha}"),
                (None, Some("no-changes")) => "succeeded without changing a file".into(),
                _ => "succeeded".into(),
            },
            Phase::Failed => {
                let mut s = match (&self.failed_step, &self.reason) {
                    (Some(step), _) => format!("failed at {step}"),
                    (None, Some(r)) => format!("failed ({r})"),
                    (None, None) => "failed".into(),
                };
                if let Some(c) = self.exit_code {
                    s.push_str(&format!(", exit code {c}"));
                }
                s
            }
            Phase::Running => match &self.last_step {
                Some(step) => format!("running: {step}"),
                None => "running".into(),
            },
            Phase::Queued => format!(
                "queued in {}",
                self.queue.as_deref().unwrap_or("a scheduling gate")
            ),
            Phase::Pending => match &self.reason {
                Some(r) => format!("not started: {r}"),
                None => "not started yet".into(),
            },
            Phase::Unknown => match &self.reason {
                Some(r) => format!("unknown ({r})"),
                None => "unknown".into(),
            },
        };
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        if let Some(url) = &self.pr_url {
            s.push_str(&format!("; PR {url}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(status: Value) -> Pod {
        pod_with(json!({}), status)
    }

    fn pod_with(extra_meta: Value, status: Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": "agent-t001", "namespace": "ns", "uid": "u1",
                "labels": {"app": "agent-orchestrator", "task-id": "T001"},
                "annotations": {"agentic-sdlc/branch": "specs/1/T001-async",
                    "agentic-sdlc/repo": "git@h:o/r.git", "agentic-sdlc/base": "main",
                    "agentic-sdlc/spawn-id": "s-1"},
                "creationTimestamp": "2026-11-24T10:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "img:1",
                "env": [{"name": "OPENCODE_SERVER_PASSWORD", "value": "secret-value"}]}]},
            "status": status
        });
        if let Value::Object(m) = extra_meta {
            for (k, v) in m {
                p["metadata"][k] = v;
            }
        }
        serde_json::from_value(p).unwrap()
    }

    fn container(state: Value) -> Value {
        json!([{"name": "agent", "image": "img:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": state}])
    }

    fn terminated(code: i32, reason: &str) -> Value {
        json!({"phase": if code == 0 { "Succeeded" } else { "Failed" },
            "startTime": "2026-11-24T10:00:05Z",
            "containerStatuses": container(json!({"terminated": {"exitCode": code,
                "reason": reason, "finishedAt": "2026-11-24T10:03:15Z"}}))})
    }

    fn now() -> Timestamp {
        "2026-11-24T10:10:00Z".parse().unwrap()
    }

    #[test]
    fn the_view_reads_labels_annotations_and_the_container() {
        let p = pod(terminated(0, "Completed"));
        let v = TaskPod(&p);
        assert_eq!(v.task_id(), "T001");
        assert_eq!(v.branch(), Some("specs/1/T001-async"));
        assert_eq!(v.repo(), Some("git@h:o/r.git"));
        assert_eq!(v.base(), Some("main"));
        assert_eq!(v.spawn_id(), Some("s-1"));
        assert_eq!(v.phase(), Phase::Succeeded);
        assert_eq!(v.exit_code(), Some(0));
        assert!(v.has_started() && v.is_finished() && v.ever_ran());
        assert_eq!(v.duration(now()).map(|d| d.as_secs()), Some(190));
        assert_eq!(v.ending(), "Succeeded, exit code 0");
        assert_eq!(v.cannot_start(), None);

        // No status at all yet: Pending, nothing known.
        let fresh: Pod = serde_json::from_value(json!({"metadata": {"name": "agent-x"}})).unwrap();
        let v = TaskPod(&fresh);
        assert_eq!(
            v.task_id(),
            "agent-x",
            "the pod name stands in for a missing label"
        );
        assert_eq!(v.phase(), Phase::Pending);
        assert_eq!(v.exit_code(), None);
        assert!(!v.has_started() && !v.is_finished());
        assert_eq!(v.not_started(), "not started yet (Pending); no log to show");
    }

    #[test]
    fn phases_parse_from_flags_and_map_to_the_api() {
        assert_eq!(Phase::parse("failed").unwrap(), Phase::Failed);
        assert_eq!(Phase::parse("Queued").unwrap().api_phase(), "Pending");
        let e = Phase::parse("Done").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("Queued, Pending, Running, Succeeded, Failed, Unknown"),
            "{e}"
        );
        assert_eq!(serde_json::to_value(Phase::Queued).unwrap(), "Queued");
    }

    #[test]
    fn a_succeeded_task_carries_what_its_agent_printed() {
        let tail = "asdo: opencode session ses_abc123 on http://127.0.0.1:4096\n\
                    · write src/a.rs\n\
                    asdo: summary: files 2, tokens 240 in / 60 out, cost $0.0123\n\
                    asdo: pr https://h/o/r/pull/7\nasdo: done 0123abcd\n";
        let t = TaskState::new(&pod(terminated(0, "Completed")), Some(tail), now());
        assert_eq!((t.id.as_str(), t.pod.as_str()), ("T001", "agent-t001"));
        assert_eq!(
            (t.phase, t.status.as_str()),
            (Phase::Succeeded, "Succeeded")
        );
        assert_eq!(t.exit_code, Some(0));
        assert_eq!(t.duration_seconds, Some(190));
        assert_eq!(t.commit.as_deref(), Some("0123abcd"));
        assert_eq!(t.last_step.as_deref(), Some("write src/a.rs"));
        assert_eq!(
            (t.files, t.tokens_in, t.tokens_out),
            (Some(2), Some(240), Some(60))
        );
        assert_eq!(t.cost, Some(0.0123));
        assert_eq!(t.pr_url.as_deref(), Some("https://h/o/r/pull/7"));
        assert_eq!(t.session_id.as_deref(), Some("ses_abc123"));
        assert_eq!(t.summary, "pushed 0123abcd; PR https://h/o/r/pull/7");
        assert_eq!(
            (t.node.as_deref(), t.image.as_deref()),
            (Some("n1"), Some("img:1"))
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["started"], "2026-11-24T10:00:05Z");
        assert_eq!(json["phase"], "Succeeded");
        assert!(
            !json.to_string().contains("secret-value"),
            "no env value: {json}"
        );
    }

    #[test]
    fn statuses_name_the_reason_as_kubectl_does() {
        let status = |p: &Pod, tail: Option<&str>| TaskState::new(p, tail, now()).status;
        let waiting = |reason: &str, message: &str| {
            pod(json!({"phase": "Pending", "containerStatuses":
                container(json!({"waiting": {"reason": reason, "message": message}}))}))
        };
        let stuck = waiting("CreateContainerConfigError", "secret \"x\" not found");
        let t = TaskState::new(&stuck, None, now());
        assert_eq!(t.status, "Pending (CreateContainerConfigError)");
        assert_eq!(t.message.as_deref(), Some("secret \"x\" not found"));
        assert_eq!(
            status(&waiting("ImagePullBackOff", ""), None),
            "Pending (ImagePullBackOff)"
        );
        let unschedulable = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}),
        );
        assert_eq!(status(&unschedulable, None), "Pending (Unschedulable)");

        assert_eq!(
            status(&pod(terminated(137, "OOMKilled")), Some("")),
            "Failed (OOMKilled)"
        );
        let deadline = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        let t = TaskState::new(&deadline, None, now());
        assert_eq!(
            (t.status.as_str(), t.exit_code),
            ("Failed (DeadlineExceeded)", None)
        );

        let failed = pod(terminated(16, "Error"));
        let t = TaskState::new(&failed, Some("asdo: failed no-changes: \"Done!\"\n"), now());
        assert_eq!(t.status, "Failed (no-changes)");
        assert_eq!(t.failed_step.as_deref(), Some("no-changes"));
        assert_eq!(t.message.as_deref(), Some("\"Done!\""));
        assert_eq!(t.summary, "failed at no-changes, exit code 16: \"Done!\"");
        // Without the log, the agent's exit code still names the step.
        assert_eq!(status(&failed, None), "Failed (no-changes)");
        assert_eq!(
            status(&pod(terminated(17, "Error")), None),
            "Failed (budget)"
        );
        assert_eq!(
            status(
                &pod(terminated(17, "Error")),
                Some("asdo: failed budget: cost $0.45 > $0.40\n")
            ),
            "Failed (budget)"
        );
        assert_eq!(status(&pod(terminated(1, "Error")), None), "Failed");
        // The ending counts, not a progress line printed after it.
        let t = TaskState::new(
            &pod(terminated(14, "Error")),
            Some("asdo: failed push: rejected\nasdo: running hooks\n"),
            now(),
        );
        assert_eq!(t.status, "Failed (push)");
        assert_eq!(t.last_marker.as_deref(), Some("asdo: running hooks"));
        // An allowed no-op is a success, and says so.
        assert_eq!(
            status(
                &pod(terminated(0, "Completed")),
                Some("asdo: done no-changes\n")
            ),
            "Succeeded (no-changes)"
        );

        let running = pod(
            json!({"phase": "Running", "startTime": "2026-11-24T10:00:00Z",
            "containerStatuses": container(json!({"running": {"startedAt": "2026-11-24T10:00:01Z"}}))}),
        );
        let t = TaskState::new(&running, Some("· bash cargo test\n"), now());
        assert_eq!(
            (t.status.as_str(), t.duration_seconds),
            ("Running", Some(600))
        );
        assert_eq!(t.summary, "running: bash cargo test");
        let mut terminating = running.clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert_eq!(status(&terminating, None), "Running (Terminating)");
        let lost = pod(json!({"phase": "Unknown"}));
        assert_eq!(status(&lost, None), "Unknown (lost)");
    }

    #[test]
    fn a_gated_pod_is_queued_in_its_queue() {
        let mut p = pod_with(
            json!({"labels": {"app": "agent-orchestrator", "task-id": "T001",
                "kueue.x-k8s.io/queue-name": "team-a"}}),
            json!({"phase": "Pending"}),
        );
        p.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
                name: "kueue.x-k8s.io/admission".into(),
            }]);
        let t = TaskState::new(&p, None, now());
        assert_eq!(
            (t.phase, t.status.as_str()),
            (Phase::Queued, "Queued (team-a)")
        );
        assert_eq!(t.queue.as_deref(), Some("team-a"));
        assert_eq!(t.summary, "queued in team-a");
        // Admitted: the gate is gone, the queue label stays.
        p.spec.as_mut().unwrap().scheduling_gates = None;
        let t = TaskState::new(&p, None, now());
        assert_eq!(
            (t.phase, t.queue.as_deref()),
            (Phase::Pending, Some("team-a"))
        );
    }

    #[test]
    fn a_vanished_task_is_unknown_with_why() {
        let t = TaskState::vanished(
            "T9",
            "agent-t9",
            "ns",
            "not-found",
            "pod agent-t9 not found",
        );
        assert_eq!(
            (t.phase, t.status.as_str()),
            (Phase::Unknown, "Unknown (not-found)")
        );
        assert!(!t.succeeded());
    }

    /// Every key of the object is always there (null when unknown): scripts index it
    /// without checking, and the schema lists them all as required.
    #[test]
    fn the_object_has_every_key_and_the_schema_names_them() {
        let t = TaskState::new(&pod(json!({"phase": "Pending"})), None, now());
        let json = serde_json::to_value(&t).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        let schema: Value = serde_json::from_str(include_str!("task.schema.json")).unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let props = schema["properties"].as_object().unwrap();
        for k in &keys {
            assert!(props.contains_key(k.as_str()), "{k} is not in the schema");
            assert!(required.contains(&k.as_str()), "{k} is not required");
        }
        assert_eq!(
            keys.len(),
            props.len(),
            "the schema names no key the object lacks"
        );
        assert_eq!(schema["additionalProperties"], false);
    }
}
