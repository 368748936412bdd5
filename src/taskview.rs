//! One task as a row of facts: what `asdo ui` shows per task, built from the same pod
//! facts `asdo list` and `asdo status` read (phase, waiting/termination reasons, exit code,
//! times, annotations) plus the agent's log tail (markers, last step, totals, PR).
//!
//! Why a module of its own: the task model of issue 22 (`TaskState`) will replace this in
//! one place; until then every field here is a projection of (pod, log tail), pure and
//! unit-tested, never a second reading of the cluster.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::follow;
use crate::marker::{self, Marker};
use crate::task::{ANN_BASE, ANN_BRANCH, ANN_REPO, LABEL_TASK_ID};

/// The coarse state a task is in, for counts, filters and colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl State {
    pub fn of(phase: &str) -> State {
        match phase {
            "Pending" => State::Pending,
            "Running" => State::Running,
            "Succeeded" => State::Succeeded,
            "Failed" => State::Failed,
            _ => State::Unknown,
        }
    }
}

/// One task. Times are RFC 3339 strings (what the page formats); no secret ever: the pod's
/// env and spec are not copied here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    /// `namespace/pod`: unique across namespaces and stable across updates.
    pub key: String,
    pub task: String,
    pub pod: String,
    pub namespace: String,
    pub uid: String,
    pub state: State,
    /// The pod phase as the API says it.
    pub phase: String,
    /// Why, when the phase alone does not say it: a waiting reason (ImagePullBackOff,
    /// CreateContainerError, Unschedulable), a termination reason (OOMKilled,
    /// DeadlineExceeded), the agent's failed step, or `no-changes`.
    pub reason: Option<String>,
    /// The longer explanation (the waiting message, the agent's failure reason).
    pub message: Option<String>,
    /// `Failed (OOMKilled)`: phase and reason, as a list's STATUS column says it.
    pub status: String,
    pub exit_code: Option<i32>,
    pub created: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Seconds from start to finish (or to now, while running).
    pub duration_s: Option<i64>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub base: Option<String>,
    /// The agent's newest step line, without its bullet.
    pub last_step: Option<String>,
    /// The agent's newest marker line (`asdo: …`).
    pub last_marker: Option<String>,
    pub commit: Option<String>,
    pub files: Option<u64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub cost: Option<f64>,
    pub pr_url: Option<String>,
    /// Whether the log-derived fields above were read (false until the tail arrives).
    pub tail_read: bool,
}

fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

/// The row for `pod`, with what its log tail says when it has been read.
pub fn row(pod: &Pod, log_tail: Option<&str>, now: Timestamp) -> TaskRow {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let task = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_TASK_ID).cloned())
        .unwrap_or_else(|| name.clone());
    let phase = follow::phase(pod).to_string();
    let state = State::of(&phase);
    let started = follow::started(pod);
    let finished = follow::finished(pod);
    let duration_s = started.map(|s| (finished.unwrap_or(now).as_second() - s.as_second()).max(0));
    let tail = log_tail.unwrap_or("");
    let last_marker = marker::last(tail);
    let summary = marker::last_summary(tail);

    // The reason, most specific first: what the kubelet says about a container that cannot
    // start, how it was killed, then what the agent said about its own failure.
    let (mut reason, mut message) = (None, None);
    if matches!(state, State::Pending | State::Unknown)
        && let Some((r, m)) = follow::waiting_reason(pod)
        && !r.is_empty()
    {
        reason = Some(r);
        message = Some(m).filter(|m| !m.is_empty());
    }
    if reason.is_none()
        && let Some(r) = follow::termination_reason(pod)
    {
        reason = Some(r);
    }
    if reason.is_none() && state != State::Running {
        match &last_marker {
            Some(Marker::Failed { step, reason: why }) => {
                reason = Some(step.clone());
                message = Some(why.clone()).filter(|m| !m.is_empty());
            }
            Some(Marker::NoChanges) => reason = Some("no-changes".into()),
            _ => {}
        }
    }
    let status = match &reason {
        Some(r) => format!("{phase} ({r})"),
        None => phase.clone(),
    };
    TaskRow {
        key: format!("{namespace}/{name}"),
        task,
        pod: name,
        namespace,
        uid: meta.uid.clone().unwrap_or_default(),
        state,
        phase,
        reason,
        message,
        status,
        exit_code: follow::exit_code(pod),
        created: ts(meta.creation_timestamp.as_ref().map(|t| t.0)),
        started: ts(started),
        finished: ts(finished),
        duration_s,
        branch: ann(ANN_BRANCH),
        repo: ann(ANN_REPO),
        base: ann(ANN_BASE),
        last_step: marker::last_step(tail).map(|s| s.trim_end().to_string()),
        commit: match &last_marker {
            Some(Marker::Done(sha)) => Some(sha.clone()),
            _ => None,
        },
        last_marker: last_marker.map(|m| m.to_string()),
        files: summary.map(|s| s.files),
        tokens_in: summary.map(|s| s.tokens_in),
        tokens_out: summary.map(|s| s.tokens_out),
        cost: summary.and_then(|s| s.cost),
        pr_url: marker::pr_url(tail),
        tail_read: log_tail.is_some(),
    }
}

/// Tasks per state, in the order the page shows them.
pub fn counts(rows: &[TaskRow]) -> Vec<(State, usize)> {
    [
        State::Running,
        State::Pending,
        State::Succeeded,
        State::Failed,
        State::Unknown,
    ]
    .into_iter()
    .map(|s| (s, rows.iter().filter(|r| r.state == s).count()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-t001", "namespace": "ns", "uid": "u1",
                "labels": {"app": "agent-orchestrator", "task-id": "T001"},
                "annotations": {"agentic-sdlc/branch": "specs/1/T001-async", "agentic-sdlc/repo": "git@h:o/r.git"},
                "creationTimestamp": "2026-11-24T10:00:00Z"},
            "spec": {"containers": [{"name": "agent", "image": "img",
                "env": [{"name": "OPENCODE_SERVER_PASSWORD", "value": "secret-value"}]}]},
            "status": status
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-24T10:10:00Z".parse().unwrap()
    }

    #[test]
    fn succeeded_task_reads_its_tail() {
        let p = pod(
            json!({"phase": "Succeeded", "startTime": "2026-11-24T10:00:05Z",
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-11-24T10:03:15Z"}}}]}),
        );
        let tail = "· write src/a.rs\nasdo: summary: files 2, tokens 240 in / 60 out, cost $0.0123\nasdo: pr https://h/o/r/pull/7\nasdo: done 0123abcd\n";
        let r = row(&p, Some(tail), now());
        assert_eq!(r.key, "ns/agent-t001");
        assert_eq!(r.task, "T001");
        assert_eq!(r.state, State::Succeeded);
        assert_eq!(r.status, "Succeeded");
        assert_eq!(r.duration_s, Some(190));
        assert_eq!(r.last_step.as_deref(), Some("write src/a.rs"));
        assert_eq!(r.commit.as_deref(), Some("0123abcd"));
        assert_eq!(
            (r.tokens_in, r.tokens_out, r.files),
            (Some(240), Some(60), Some(2))
        );
        assert_eq!(r.cost, Some(0.0123));
        assert_eq!(r.pr_url.as_deref(), Some("https://h/o/r/pull/7"));
        assert_eq!(r.branch.as_deref(), Some("specs/1/T001-async"));
        assert!(r.tail_read);
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("secret-value"),
            "no env value in a row: {json}"
        );
    }

    #[test]
    fn reasons_are_named() {
        // A container that cannot be created: Pending, but kubectl's STATUS says why.
        let p = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerError", "message": "no such secret"}}}]}));
        let r = row(&p, None, now());
        assert_eq!(r.status, "Pending (CreateContainerError)");
        assert_eq!(r.message.as_deref(), Some("no such secret"));
        assert!(!r.tail_read);

        let oom = pod(
            json!({"phase": "Failed", "startTime": "2026-11-24T10:00:05Z",
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-24T10:01:00Z"}}}]}),
        );
        assert_eq!(row(&oom, Some(""), now()).status, "Failed (OOMKilled)");

        let failed = pod(
            json!({"phase": "Failed", "startTime": "2026-11-24T10:00:05Z",
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-24T10:01:00Z"}}}]}),
        );
        let r = row(&failed, Some("asdo: failed push: rejected\n"), now());
        assert_eq!(r.status, "Failed (push)");
        assert_eq!(r.message.as_deref(), Some("rejected"));
        let r = row(&failed, Some("asdo: done no-changes\n"), now());
        assert_eq!(r.status, "Failed (no-changes)");

        let running = pod(
            json!({"phase": "Running", "startTime": "2026-11-24T10:00:00Z",
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-24T10:00:01Z"}}}]}),
        );
        let r = row(&running, Some("· bash cargo test\n"), now());
        assert_eq!((r.status.as_str(), r.duration_s), ("Running", Some(600)));
        assert_eq!(r.last_step.as_deref(), Some("bash cargo test"));
        assert_eq!(
            counts(&[r]),
            vec![
                (State::Running, 1),
                (State::Pending, 0),
                (State::Succeeded, 0),
                (State::Failed, 0),
                (State::Unknown, 0)
            ]
        );
    }
}
