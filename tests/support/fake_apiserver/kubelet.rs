//! The fake scheduler and kubelet: each admitted pod is scheduled to
//! `fake-node` and its first container's command runs as a local process in its
//! own process group (the container), with stdout and stderr as the log.
//! Status, conditions and Events follow what a real kubelet reports.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, HostIP, Pod, PodIP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::Shared;
use super::container_env;
use super::events;
use super::logs::LogBuf;
use super::pod::{
    SCHEDULING_GATED, SCHEDULING_GATED_MESSAGE, first_container_status, scheduling_gates,
    set_condition, set_waiting,
};
use super::process::{self, exit_code, pump, signal, terminate};
use super::resources::NODE_NAME;
use super::store::ChangeType;
use super::util;

/// A deleted pod's container gets SIGTERM, then SIGKILL after at most this long.
const MAX_GRACE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
/// How often a gated pod is looked at again (a gate removed shows within this).
const GATE_POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug)]
enum Stop {
    Deleted {
        grace: Duration,
    },
    Deadline,
    /// The pod vanished (or was replaced) under us.
    Gone,
}

struct PodEntry {
    stop: watch::Sender<Option<Stop>>,
    pgid: Option<i32>,
}

/// The pods the kubelet is running, by uid.
#[derive(Default)]
pub(crate) struct Registry {
    pods: Mutex<HashMap<String, PodEntry>>,
    next_ip: AtomicU32,
}

impl Registry {
    fn register(&self, uid: &str) -> watch::Receiver<Option<Stop>> {
        let (tx, rx) = watch::channel(None);
        self.pods.lock().unwrap().insert(
            uid.to_string(),
            PodEntry {
                stop: tx,
                pgid: None,
            },
        );
        rx
    }

    /// False when the kubelet is not running this pod.
    fn stop(&self, uid: &str, stop: Stop) -> bool {
        match self.pods.lock().unwrap().get(uid) {
            Some(e) => {
                e.stop.send_replace(Some(stop));
                true
            }
            None => false,
        }
    }

    fn set_pgid(&self, uid: &str, pgid: Option<i32>) {
        if let Some(e) = self.pods.lock().unwrap().get_mut(uid) {
            e.pgid = pgid;
        }
    }

    fn forget(&self, uid: &str) {
        self.pods.lock().unwrap().remove(uid);
    }

    /// On server shutdown: no container outlives the fake API server.
    pub fn kill_all(&self) {
        for e in self.pods.lock().unwrap().values() {
            if let Some(pgid) = e.pgid {
                signal(pgid, libc::SIGKILL);
            }
        }
    }

    fn pod_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        format!("10.0.{}.{}", n / 250, n % 250 + 2)
    }
}

/// Reacts to deletions: whatever deleted the pod (delete, deletecollection, a
/// replaced inserted pod), its container is stopped.
pub(crate) fn start(shared: &Arc<Shared>) {
    let mut changes = shared.store().subscribe();
    let s = shared.clone();
    shared.runtime.spawn(async move {
        while let Some(c) = changes.recv().await {
            if c.kind != ChangeType::Deleted {
                continue;
            }
            let Some(pod) = c.object.as_any().downcast_ref::<Pod>() else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64;
            let grace = Duration::from_secs(grace).min(MAX_GRACE);
            if !s.kubelet.stop(&uid, Stop::Deleted { grace }) {
                s.logs.close_and_forget(&uid);
            }
        }
    });
}

/// Takes a newly created pod: schedule it and run its first container.
pub(crate) fn admit(shared: &Arc<Shared>, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let stop = shared.kubelet.register(&uid);
    let run = Run {
        shared: shared.clone(),
        ns: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid,
        stop,
        deadline: None,
        reported: None,
        last: None,
    };
    shared.runtime.spawn(run.run());
}

struct Run {
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: String,
    stop: watch::Receiver<Option<Stop>>,
    /// spec.activeDeadlineSeconds, counted from status.startTime.
    deadline: Option<Instant>,
    /// The last failure reported as an Event, so a retry loop reports each cause once.
    reported: Option<String>,
    /// The pod as last written, for Events about a pod that is already deleted.
    last: Option<Pod>,
}

enum Exit {
    Status(Option<ExitStatus>),
    Stopped(Stop, Option<ExitStatus>),
}

impl Run {
    async fn run(mut self) {
        let result = self.lifecycle().await;
        if let Err(Stop::Deadline) = result {
            self.deadline_exceeded(None);
        }
        self.shared.kubelet.forget(&self.uid);
        self.shared.ports.forget(&self.uid);
        if let Err(Stop::Deleted { .. } | Stop::Gone) = result {
            self.shared.logs.close_and_forget(&self.uid);
        }
    }

    fn pod(&self) -> Option<Pod> {
        let p = self
            .shared
            .store()
            .get::<Pod>(&self.ns, &self.name)
            .cloned()?;
        (p.metadata.uid.as_deref() == Some(&self.uid)).then_some(p)
    }

    /// Changes the stored pod (a MODIFIED event) unless `f` changes nothing.
    fn update(&mut self, f: impl FnOnce(&mut Pod)) -> Result<Pod, Stop> {
        let updated =
            self.shared
                .store()
                .update::<Pod>(&self.ns, &self.name, Some(&self.uid), |p| {
                    let before = p.clone();
                    f(p);
                    *p != before
                });
        self.last = updated.clone().or(self.last.take());
        updated.ok_or(Stop::Gone)
    }

    fn event(&self, type_: &str, reason: &str, message: &str) {
        self.event_from("kubelet", type_, reason, message);
    }

    fn event_from(&self, component: &str, type_: &str, reason: &str, message: &str) {
        if let Some(pod) = self.pod().or_else(|| self.last.clone()) {
            let field_path = (component == "kubelet" && reason != "DeadlineExceeded").then(|| {
                let c = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                format!("spec.containers{{{c}}}")
            });
            events::record(
                &self.shared,
                &pod,
                component,
                type_,
                reason,
                message,
                field_path,
            );
        }
    }

    /// Reports a failure once per distinct message.
    fn event_once(&mut self, type_: &str, reason: &str, message: &str) {
        if self.reported.as_deref() != Some(message) {
            self.event(type_, reason, message);
            self.reported = Some(message.to_string());
        }
    }

    /// Resolves when the pod is deleted or its deadline passes.
    async fn interrupted(&mut self) -> Stop {
        let deadline = self.deadline;
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = expired => Stop::Deadline,
            s = self.stop.wait_for(Option::is_some) => s.ok().and_then(|s| *s).unwrap_or(Stop::Gone),
        }
    }

    async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            s = self.interrupted() => Err(s),
        }
    }

    async fn lifecycle(&mut self) -> Result<(), Stop> {
        self.wait_for_gates().await?;
        let delay = self.shared.faults.schedule_delay();
        self.pause(delay).await?;
        self.schedule().await?;
        let pod = self.update(|p| {
            let status = p.status.get_or_insert_with(Default::default);
            status.start_time = Some(util::now_time());
            status.host_ip = Some("127.0.0.1".into());
            status.host_ips = Some(vec![HostIP {
                ip: "127.0.0.1".into(),
            }]);
            set_condition(p, "PodReadyToStartContainers", false, None, None);
            set_condition(p, "Initialized", true, None, None);
            let names = container_names(p);
            let why = format!("containers with unready status: [{names}]");
            set_condition(p, "Ready", false, Some("ContainersNotReady"), Some(&why));
            set_condition(
                p,
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(&why),
            );
            set_waiting(p, "ContainerCreating", None);
        })?;
        let spec = pod.spec.clone().unwrap_or_default();
        self.deadline = spec
            .active_deadline_seconds
            .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
        self.mount_volumes().await?;
        let ip = self.shared.kubelet.pod_ip();
        self.update(|p| {
            let status = p.status.get_or_insert_with(Default::default);
            status.pod_ip = Some(ip.clone());
            status.pod_ips = Some(vec![PodIP { ip }]);
            set_condition(p, "PodReadyToStartContainers", true, None, None);
        })?;
        let Some(container) = spec.containers.first().cloned() else {
            return Ok(());
        };
        self.pull_image(&container).await?;
        let env = self.container_config(&container).await?;
        let Some(argv) = command_line(&container, &env) else {
            let msg = "fake kubelet needs an explicit command";
            self.update(|p| set_waiting(p, "RunContainerError", Some(msg)))?;
            self.event("Warning", "Failed", &format!("Error: {msg}"));
            loop {
                self.pause(Duration::from_secs(3600)).await?;
            }
        };
        self.run_container(&container, argv, env).await
    }

    /// A pod with schedulingGates is not scheduled (nor run) until every gate is
    /// removed; meanwhile PodScheduled is False with reason SchedulingGated, as
    /// kube-scheduler reports, and no FailedScheduling Event is recorded.
    async fn wait_for_gates(&mut self) -> Result<(), Stop> {
        loop {
            let pod = self.pod().ok_or(Stop::Gone)?;
            if scheduling_gates(&pod).is_empty() {
                return Ok(());
            }
            self.update(|p| {
                if !scheduling_gates(p).is_empty() {
                    set_condition(
                        p,
                        "PodScheduled",
                        false,
                        Some(SCHEDULING_GATED),
                        Some(SCHEDULING_GATED_MESSAGE),
                    );
                }
            })?;
            self.pause(GATE_POLL).await?;
        }
    }

    async fn schedule(&mut self) -> Result<(), Stop> {
        while let Some(msg) = self.shared.faults.unschedulable() {
            self.update(|p| {
                set_condition(p, "PodScheduled", false, Some("Unschedulable"), Some(&msg))
            })?;
            if self.reported.as_deref() != Some(&msg) {
                self.event_from("default-scheduler", "Warning", "FailedScheduling", &msg);
                self.reported = Some(msg);
            }
            self.pause(Duration::from_millis(200)).await?;
        }
        self.reported = None;
        self.update(|p| {
            p.spec.get_or_insert_with(Default::default).node_name = Some(NODE_NAME.into());
            set_condition(p, "PodScheduled", true, None, None);
        })?;
        let msg = format!(
            "Successfully assigned {}/{} to {NODE_NAME}",
            self.ns, self.name
        );
        self.event_from("default-scheduler", "Normal", "Scheduled", &msg);
        Ok(())
    }

    async fn mount_volumes(&mut self) -> Result<(), Stop> {
        loop {
            let missing = {
                let pod = self.pod().ok_or(Stop::Gone)?;
                container_env::missing_volume(&self.shared.store(), &pod)
            };
            let Some(msg) = missing else { return Ok(()) };
            self.event_once("Warning", "FailedMount", &msg);
            self.pause(RETRY).await?;
        }
    }

    /// Images are not pulled; a name containing `does-not-exist` fails like a missing image.
    async fn pull_image(&mut self, c: &Container) -> Result<(), Stop> {
        let image = c.image.clone().unwrap_or_default();
        if image.contains("does-not-exist") {
            self.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
            let msg = format!(
                "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
            );
            self.update(|p| set_waiting(p, "ErrImagePull", Some(&msg)))?;
            self.event("Warning", "Failed", &msg);
            self.event("Warning", "Failed", "Error: ErrImagePull");
            self.pause(Duration::from_secs(1)).await?;
            let msg = format!("Back-off pulling image \"{image}\"");
            self.update(|p| set_waiting(p, "ImagePullBackOff", Some(&msg)))?;
            loop {
                self.event("Normal", "BackOff", &msg);
                self.event("Warning", "Failed", "Error: ImagePullBackOff");
                self.pause(Duration::from_secs(10)).await?;
            }
        }
        // `slow-pull` in the name: the pull fails for a while (a registry hiccup, a pull
        // secret not synced yet), then succeeds, as the kubelet's retries would.
        if image.contains("slow-pull") {
            let msg = format!("Failed to pull image \"{image}\": rpc error: code = Unavailable");
            self.update(|p| set_waiting(p, "ErrImagePull", Some(&msg)))?;
            self.event("Warning", "Failed", "Error: ErrImagePull");
            self.pause(Duration::from_millis(1500)).await?;
            let msg = format!("Back-off pulling image \"{image}\"");
            self.update(|p| set_waiting(p, "ImagePullBackOff", Some(&msg)))?;
            self.event("Warning", "Failed", "Error: ImagePullBackOff");
            self.pause(Duration::from_millis(1500)).await?;
        }
        if c.image_pull_policy.as_deref() == Some("Always") {
            self.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
            let msg = format!(
                "Successfully pulled image \"{image}\" in 0s (0s including waiting). Image size: 0 bytes."
            );
            self.event("Normal", "Pulled", &msg);
        } else {
            self.event(
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
        }
        Ok(())
    }

    /// The environment, retried until every referenced Secret and ConfigMap exists.
    async fn container_config(&mut self, c: &Container) -> Result<Vec<(String, String)>, Stop> {
        // Where the containerPorts live on this machine (portforward.rs), first so $(VAR) sees them.
        let ports = self.shared.ports.allocate(&self.uid, c);
        let volumes_root = self.volumes_root();
        loop {
            let resolved = {
                let pod = self.pod().ok_or(Stop::Gone)?;
                let mut base = ports.clone();
                base.extend(super::downward::env(&pod, &volumes_root));
                container_env::resolve(&self.shared.store(), &pod, c, base)
            };
            match resolved {
                Ok(env) => return Ok(env),
                Err(msg) => {
                    self.update(|p| set_waiting(p, "CreateContainerConfigError", Some(&msg)))?;
                    self.event_once("Warning", "Failed", &format!("Error: {msg}"));
                    self.pause(RETRY).await?;
                }
            }
        }
    }

    async fn run_container(
        &mut self,
        c: &Container,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<(), Stop> {
        let container_id = format!("fake://{}", util::hex64());
        let dir = self.shared.work_root.join(&self.ns).join(format!(
            "{}-{}",
            self.name,
            &self.uid[..8.min(self.uid.len())]
        ));
        self.refresh_downward_api();
        let spawned = std::fs::create_dir_all(&dir)
            .and_then(|_| process::spawn(&argv, &env, &dir, &self.name));
        let (child, reader) = match spawned {
            Ok(s) => s,
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "executable file not found in $PATH".to_string()
                    }
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                };
                let msg = format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: {:?}: {why}: unknown",
                    argv[0]
                );
                self.event("Warning", "Failed", &format!("Error: {msg}"));
                self.update(|p| {
                    terminated(p, 128, "StartError", Some(msg.clone()), None, &container_id)
                })?;
                return Ok(());
            }
        };
        let pgid = child.id() as i32;
        self.shared.kubelet.set_pgid(&self.uid, Some(pgid));
        let log = LogBuf::new();
        self.shared.logs.insert(&self.uid, log.clone());
        let (pumped_tx, pumped) = oneshot::channel();
        let pumped_log = log.clone();
        std::thread::spawn(move || {
            pump(reader, &pumped_log);
            let _ = pumped_tx.send(());
        });
        let (exit_tx, mut exit) = oneshot::channel();
        std::thread::spawn(move || {
            let mut child = child;
            let _ = exit_tx.send(child.wait().ok());
        });
        let started = util::now_time();
        self.event(
            "Normal",
            "Created",
            &format!("Created container: {}", c.name),
        );
        self.event(
            "Normal",
            "Started",
            &format!("Started container {}", c.name),
        );
        let image = c.image.clone().unwrap_or_default();
        self.update(|p| running(p, &image, &container_id, &started))?;

        let outcome = loop {
            tokio::select! {
                status = &mut exit => break Exit::Status(status.ok().flatten()),
                stop = self.interrupted() => {
                    if let Stop::Deadline = stop {
                        self.event("Warning", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline");
                    }
                    self.event("Normal", "Killing", &format!("Stopping container {}", c.name));
                    let grace = match stop {
                        Stop::Deleted { grace } => grace,
                        _ => MAX_GRACE,
                    };
                    break Exit::Stopped(stop, terminate(pgid, grace, &mut exit).await)
                }
                // The kubelet's sync: downwardAPI files follow the pod's metadata.
                _ = tokio::time::sleep(Duration::from_millis(200)) => self.refresh_downward_api(),
            }
        };
        // Like a container's teardown: nothing it started survives it.
        signal(pgid, libc::SIGKILL);
        self.shared.kubelet.set_pgid(&self.uid, None);
        // A process that escaped the group may hold the pipe open: stop waiting
        // for its output after a while, so followers still see the end.
        let _ = tokio::time::timeout(MAX_GRACE, pumped).await;
        log.close();
        let (stop, status) = match outcome {
            Exit::Status(s) => (None, s),
            Exit::Stopped(stop, s) => (Some(stop), s),
        };
        let code = exit_code(status);
        let reason = if code == 0 { "Completed" } else { "Error" };
        match stop {
            None => {
                self.update(|p| {
                    terminated(p, code, reason, None, Some(started.clone()), &container_id)
                })?;
                Ok(())
            }
            Some(Stop::Deadline) => {
                let finished = (code, reason, started.clone(), container_id.clone());
                self.deadline_exceeded(Some(finished));
                Ok(())
            }
            Some(other) => Err(other),
        }
    }

    /// Where this pod's downwardAPI volumes live (beside its working directory).
    fn volumes_root(&self) -> std::path::PathBuf {
        self.shared.work_root.join(&self.ns).join(format!(
            "{}-{}.volumes",
            self.name,
            &self.uid[..8.min(self.uid.len())]
        ))
    }

    fn refresh_downward_api(&self) {
        if let Some(pod) = self.pod() {
            let _ = super::downward::write(&pod, &self.volumes_root());
        }
    }

    /// Fails the pod for spec.activeDeadlineSeconds; `container` is how its container ended, if it ran.
    fn deadline_exceeded(&mut self, container: Option<(i32, &str, Time, String)>) {
        if container.is_none() {
            self.event(
                "Warning",
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            );
        }
        let _ = self.update(|p| {
            if let Some((code, reason, started, id)) = &container {
                terminated(p, *code, reason, None, Some(started.clone()), id);
            }
            let status = p.status.get_or_insert_with(Default::default);
            status.phase = Some("Failed".into());
            status.reason = Some("DeadlineExceeded".into());
            status.message =
                Some("Pod was active on the node longer than the specified deadline".into());
            set_condition(p, "Ready", false, Some("PodFailed"), None);
            set_condition(p, "ContainersReady", false, Some("PodFailed"), None);
        });
    }
}

fn container_names(p: &Pod) -> String {
    p.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// command + args with `$(VAR)` expanded; None without a command (no image entrypoint to fall back on).
fn command_line(c: &Container, env: &[(String, String)]) -> Option<Vec<String>> {
    let command = c.command.clone().filter(|c| !c.is_empty())?;
    Some(
        command
            .iter()
            .chain(c.args.iter().flatten())
            .map(|a| container_env::expand(a, env))
            .collect(),
    )
}

fn running(p: &mut Pod, image: &str, container_id: &str, started: &Time) {
    let repo = image.split(['@']).next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    if let Some(cs) = first_container_status(p) {
        cs.container_id = Some(container_id.into());
        cs.image_id = format!("{repo}@sha256:{}", util::hex64());
        cs.ready = true;
        cs.started = Some(true);
        cs.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started.clone()),
            }),
            ..Default::default()
        });
    }
    p.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    let all_ready = p
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .all(|c| c.ready);
    if all_ready {
        set_condition(p, "Ready", true, None, None);
        set_condition(p, "ContainersReady", true, None, None);
    }
}

fn terminated(
    p: &mut Pod,
    code: i32,
    reason: &str,
    message: Option<String>,
    started: Option<Time>,
    container_id: &str,
) {
    if let Some(cs) = first_container_status(p) {
        cs.container_id = Some(container_id.into());
        cs.ready = false;
        cs.started = Some(false);
        cs.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.into()),
                message,
                started_at: started,
                finished_at: Some(util::now_time()),
                container_id: Some(container_id.into()),
                signal: None,
            }),
            ..Default::default()
        });
    }
    p.status.get_or_insert_with(Default::default).phase =
        Some(if code == 0 { "Succeeded" } else { "Failed" }.into());
    set_condition(p, "PodReadyToStartContainers", false, None, None);
    set_condition(p, "Ready", false, Some("PodCompleted"), None);
    set_condition(p, "ContainersReady", false, Some("PodCompleted"), None);
}
