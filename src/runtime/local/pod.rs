//! A local task said as the Pod the kubelet would report for it, so every reading of a
//! task (the task object, list rows, wait's verdicts, hooks, spec-kit files) is the one
//! written for pods, and the two runtimes cannot drift:
//!
//! - queued (waiting for a `--max-parallel` slot): `Pending` with a scheduling gate
//!   (`asdo.dev/max-parallel`), which the task model reads as `Queued`;
//! - running: `Running`, the agent container running since `startedAt`;
//! - ended: `Succeeded`/`Failed`, the container terminated with the exit code;
//! - lost (runner gone without an exit code): `Failed`, pod reason `lost`, no exit code,
//!   so the task model's STATUS reads `Failed (lost)` (lower case, as its own reasons
//!   `no-changes`, `budget` and an Unknown pod's `lost`; kubelet reasons keep their case).
//!
//! Namespace `local`, node the machine's hostname.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodSchedulingGate, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::{LocalTask, Phase};
use crate::task;

/// The namespace local tasks are shown in.
pub const NAMESPACE: &str = "local";
/// The gate a queued local task carries.
pub const GATE: &str = "asdo.dev/max-parallel";
/// The pod reason of a lost task: the task model's reason `lost`.
pub const LOST: &str = "lost";

fn time(s: &Option<String>) -> Option<Time> {
    s.as_deref()?.parse::<Timestamp>().ok().map(Time)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The Pod a local task stands for.
pub fn of(t: &LocalTask) -> Pod {
    let spec = &t.spec;
    let st = t.state.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (task::LABEL_APP.to_string(), task::APP.to_string()),
        (task::LABEL_TASK_ID.to_string(), spec.id.clone()),
    ]);
    let mut annotations = BTreeMap::from([
        (task::ANN_BRANCH.to_string(), spec.branch.clone()),
        (task::ANN_REPO.to_string(), spec.repo.clone()),
        (task::ANN_ENVIRONMENT.to_string(), NAMESPACE.to_string()),
    ]);
    if let Some(b) = &spec.base {
        annotations.insert(task::ANN_BASE.to_string(), b.clone());
    }
    let started = time(&st.started_at);
    let finished = time(&st.finished_at);
    let (phase, reason, message, state) = match &t.phase {
        Phase::Queued => (
            "Pending",
            None,
            None,
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("Queued".into()),
                    message: Some(format!(
                        "waiting for one of {} parallel slots (--max-parallel)",
                        spec.max_parallel
                    )),
                }),
                ..Default::default()
            },
        ),
        Phase::Running => (
            "Running",
            None,
            None,
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: started.clone(),
                }),
                ..Default::default()
            },
        ),
        Phase::Succeeded | Phase::Failed { lost: false, .. } => {
            let code = st.exit_code.unwrap_or(1);
            (
                if code == 0 { "Succeeded" } else { "Failed" },
                None,
                st.error.clone(),
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                        message: st.error.clone(),
                        started_at: started.clone(),
                        finished_at: finished.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        }
        Phase::Failed { lost: true, .. } => (
            "Failed",
            Some(LOST.to_string()),
            Some(super::logs::lost_words(&spec.id)),
            ContainerState::default(),
        ),
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(task::pod_name(&spec.id)),
            namespace: Some(NAMESPACE.into()),
            uid: Some(spec.uid.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            creation_timestamp: time(&Some(spec.created_at.clone())),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: task::CONTAINER.into(),
                ..Default::default()
            }],
            node_name: Some(hostname()),
            scheduling_gates: (t.phase == Phase::Queued)
                .then(|| vec![PodSchedulingGate { name: GATE.into() }]),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            reason,
            message,
            start_time: started.clone(),
            container_statuses: Some(vec![ContainerStatus {
                name: task::CONTAINER.into(),
                ready: t.phase == Phase::Running,
                started: Some(t.phase == Phase::Running),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}
