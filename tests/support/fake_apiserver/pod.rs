//! Pods: validation and defaulting on create, selectable fields, the
//! `kubectl get pods` columns, and status helpers the kubelet uses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSchedulingGate,
    PodSecurityContext, PodStatus, ResourceRequirements, Toleration,
};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::resources::{Kind, RW_VERBS, name_of};
use super::store::{Collection, Store};
use super::table::{self, AGE, Column, NAME, col};
use super::util;
use super::validation::{self, FieldError};

impl Kind for Pod {
    const NAMESPACED: bool = true;
    const SINGULAR: &'static str = "pod";
    const SHORT_NAMES: &'static [&'static str] = &["po"];
    const VERBS: &'static [&'static str] = RW_VERBS;
    const FIELDS: &'static [&'static str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    const DELETE_RETURNS_OBJECT: bool = true;
    const COLUMNS: &'static [Column] = &[
        NAME,
        col(
            "Ready",
            0,
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            0,
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        col(
            "IP",
            1,
            "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        ),
        col(
            "Node",
            1,
            "NodeName is a request to schedule this pod onto a specific node.",
        ),
        col(
            "Nominated Node",
            1,
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
        ),
        col(
            "Readiness Gates",
            1,
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ];

    fn field(&self, field: &str) -> String {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        let v = match field {
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
            "spec.restartPolicy" => spec.and_then(|s| s.restart_policy.clone()),
            "spec.schedulerName" => spec.and_then(|s| s.scheduler_name.clone()),
            "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
            "spec.hostNetwork" => Some(
                spec.and_then(|s| s.host_network)
                    .unwrap_or(false)
                    .to_string(),
            ),
            "status.phase" => status.and_then(|s| s.phase.clone()),
            "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
            "status.nominatedNodeName" => status.and_then(|s| s.nominated_node_name.clone()),
            _ => None,
        };
        v.unwrap_or_default()
    }

    fn cells(&self, now: Timestamp) -> Vec<Value> {
        let p = print(self);
        let none = |s: Option<&String>| {
            s.filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| "<none>".into())
        };
        vec![
            name_of(&self.metadata).into(),
            p.ready.into(),
            p.status.into(),
            p.restarts.to_string().into(),
            table::age(self.metadata.creation_timestamp.as_ref(), now).into(),
            none(self.status.as_ref().and_then(|s| s.pod_ip.as_ref())).into(),
            none(self.spec.as_ref().and_then(|s| s.node_name.as_ref())).into(),
            "<none>".into(),
            "<none>".into(),
        ]
    }

    fn prepare(&mut self) -> Vec<FieldError> {
        let errs = validate(self);
        if errs.is_empty() {
            apply_defaults(self);
        }
        errs
    }

    fn collection(store: &Store) -> &Collection<Self> {
        &store.pods
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.pods
    }
}

/// The label that puts a plain pod in a Kueue LocalQueue.
pub(crate) const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The gate Kueue's pod webhook adds and Kueue removes when it admits the pod.
pub(crate) const KUEUE_ADMISSION_GATE: &str = "kueue.x-k8s.io/admission";
/// The label Kueue's pod webhook adds to the pods it manages.
pub(crate) const KUEUE_MANAGED_LABEL: &str = "kueue.x-k8s.io/managed";
/// kube-scheduler's PodScheduled reason and message for a gated pod.
pub(crate) const SCHEDULING_GATED: &str = "SchedulingGated";
pub(crate) const SCHEDULING_GATED_MESSAGE: &str =
    "Scheduling is blocked due to non-empty scheduling gates";

/// What Kueue's pod webhook (plain-pod integration) does on create: a pod with the
/// queue-name label is marked managed and held by the admission gate. The finalizer it
/// also adds is left out (the fake deletes immediately and has no finalizers).
pub(crate) fn kueue_pod_webhook(pod: &mut Pod) {
    let queued = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(KUEUE_QUEUE_LABEL))
        .is_some_and(|q| !q.is_empty());
    if !queued {
        return;
    }
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(KUEUE_MANAGED_LABEL.into(), "true".into());
    let gates = pod
        .spec
        .get_or_insert_with(Default::default)
        .scheduling_gates
        .get_or_insert_with(Vec::new);
    if !gates.iter().any(|g| g.name == KUEUE_ADMISSION_GATE) {
        gates.push(PodSchedulingGate {
            name: KUEUE_ADMISSION_GATE.into(),
        });
    }
}

/// The pod's scheduling gates (none when absent).
pub(crate) fn scheduling_gates(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.scheduling_gates.iter().flatten())
        .map(|g| g.name.clone())
        .collect()
}

fn validate(pod: &Pod) -> Vec<FieldError> {
    let mut errs = vec![];
    let gates = scheduling_gates(pod);
    for (i, g) in gates.iter().enumerate() {
        let field = format!("spec.schedulingGates[{i}].name");
        for e in validation::qualified_name(g) {
            errs.push(FieldError::invalid(&field, g, e));
        }
        if gates[..i].contains(g) {
            errs.push(FieldError::duplicate(&field, g));
        }
    }
    if !gates.is_empty()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
    {
        errs.push(FieldError::forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    for (i, c) in containers.iter().enumerate() {
        let field = format!("spec.containers[{i}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{field}.name"), ""));
        } else {
            for e in validation::dns1123_label(&c.name) {
                errs.push(FieldError::invalid(format!("{field}.name"), &c.name, e));
            }
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            errs.push(FieldError::required(format!("{field}.image"), ""));
        }
    }
    if let Some(d) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds)
        && d <= 0
    {
        errs.push(FieldError::invalid_raw(
            "spec.activeDeadlineSeconds",
            d.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs
}

/// The defaults the real apiserver fills in, so clients reading pods back see them.
fn apply_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    let sa = spec
        .service_account_name
        .get_or_insert_with(|| "default".into())
        .clone();
    spec.service_account.get_or_insert(sa);
    spec.enable_service_links.get_or_insert(true);
    spec.priority.get_or_insert(0);
    spec.preemption_policy
        .get_or_insert_with(|| "PreemptLowerPriority".into());
    spec.tolerations.get_or_insert_with(|| {
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ]
        .into_iter()
        .map(|key| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            ..Default::default()
        })
        .collect()
    });
    for c in &mut spec.containers {
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        let image = c.image.clone().unwrap_or_default();
        let tagged = image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') || last.contains('@'));
        let latest = !tagged || image.ends_with(":latest");
        c.image_pull_policy
            .get_or_insert_with(|| if latest { "Always" } else { "IfNotPresent" }.into());
        let r = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        // Requests default to limits.
        if let Some(limits) = r.limits.clone() {
            let requests = r.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    let qos = qos_class(pod);
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase.get_or_insert_with(|| "Pending".into());
    status.qos_class = Some(qos.into());
}

fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let (mut any, mut guaranteed) = (false, true);
    for c in containers {
        let r = c.resources.as_ref();
        let get = |m: Option<&BTreeMap<String, _>>, k: &str| m.and_then(|m| m.get(k)).cloned();
        for res in ["cpu", "memory"] {
            let req = get(r.and_then(|r| r.requests.as_ref()), res);
            let lim = get(r.and_then(|r| r.limits.as_ref()), res);
            any |= req.is_some() || lim.is_some();
            guaranteed &= lim.is_some() && req == lim;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

struct Printed {
    ready: String,
    status: String,
    restarts: i32,
}

/// kubectl's printPod: the READY, STATUS and RESTARTS columns.
fn print(pod: &Pod) -> Printed {
    let status = pod.status.clone().unwrap_or_default();
    let total = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .or(status.phase.clone())
        .unwrap_or_default();
    // kubectl's printPod (1.27+): a pod the scheduler holds for its gates.
    if status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some(SCHEDULING_GATED))
    {
        reason = SCHEDULING_GATED.into();
    }
    let (mut restarts, mut ready, mut running) = (0, 0, false);
    for cs in status.container_statuses.iter().flatten().rev() {
        restarts += cs.restart_count;
        let state = cs.state.clone().unwrap_or_default();
        if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty())
        {
            reason = r;
        } else if let Some(t) = &state.terminated {
            reason = match (&t.reason, t.signal) {
                (Some(r), _) if !r.is_empty() => r.clone(),
                (_, Some(sig)) if sig != 0 => format!("Signal:{sig}"),
                _ => format!("ExitCode:{}", t.exit_code),
            };
        } else if cs.ready && state.running.is_some() {
            running = true;
            ready += 1;
        }
    }
    if reason == "Completed" && running {
        reason = if condition_true(pod, "Ready") {
            "Running".into()
        } else {
            "NotReady".into()
        };
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    Printed {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

pub(crate) fn condition_true(pod: &Pod, type_: &str) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition; lastTransitionTime moves only when the status flips.
pub(crate) fn set_condition(
    pod: &mut Pod,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let status = if ok { "True" } else { "False" };
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let new = PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message: message.map(str::to_string),
        last_transition_time: Some(util::now_time()),
        last_probe_time: None,
        observed_generation: None,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            c.reason = new.reason;
            c.message = new.message;
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// Every container waiting with `reason`, as the kubelet reports before start.
pub(crate) fn set_waiting(pod: &mut Pod, reason: &str, message: Option<&str>) {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let statuses = containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: false,
            started: Some(false),
            restart_count: 0,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: message.map(str::to_string),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    pod.status
        .get_or_insert_with(Default::default)
        .container_statuses = Some(statuses);
}

pub(crate) fn first_container_status(pod: &mut Pod) -> Option<&mut ContainerStatus> {
    pod.status
        .as_mut()?
        .container_statuses
        .as_mut()?
        .first_mut()
}
