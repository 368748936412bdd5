//! `asdo cleanup` below the verb, for both runtimes: which tasks a cleanup removes (the
//! phase, id, selector and age rules, as one [`Selection`] that is both the API server's
//! field selector and a match on a pod), `--dry-run`, `--save-logs` (a task whose log
//! could not be kept is kept) and the removal itself. The runtime lists, archives,
//! deletes and, where a running task cannot simply be deleted, cancels
//! (`runtime/cleanup.rs`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::task;
use crate::taskpod::{Phase, TaskPod, TaskState};

/// Which tasks a cleanup removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    phases: Phases,
    /// `--task-id`, as the task's pod name.
    pod: Option<String>,
    /// `--older-than`: finished (or, unfinished, created) longer ago than this.
    pub older_than: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phases {
    /// `--all --force`.
    Any,
    /// The default: Succeeded or Failed.
    Finished,
    /// `--phase P` (other than Succeeded or Failed only with --force).
    Only(Phase),
}

/// Succeeded or Failed, said with what field selectors allow (no OR, but !=).
const FINISHED: &str = "status.phase!=Pending,status.phase!=Running,status.phase!=Unknown";

impl Selection {
    /// From the flags; bad or unconfirmed choices are usage errors, before any call.
    pub fn new(
        phase: Option<&str>,
        all: bool,
        force: bool,
        task_id: Option<&str>,
        older_than: Option<Duration>,
    ) -> Result<Selection> {
        let phases = if all {
            if !force {
                return Err(Error::usage(
                    "--all also deletes running tasks: add --force to confirm",
                ));
            }
            Phases::Any
        } else {
            match phase.map(Phase::parse).transpose()? {
                Some(p @ (Phase::Succeeded | Phase::Failed)) => Phases::Only(p),
                Some(p) if force => Phases::Only(p),
                Some(p) => {
                    return Err(Error::usage(format!(
                        "--phase {p} pods may still be working: add --force to confirm"
                    )));
                }
                None => Phases::Finished,
            }
        };
        // The one task-id rule of logs/status/wait: the pod is agent-<id lowercased>,
        // whatever case the id was spawned or typed in (its label keeps the spawn's case).
        let pod = task_id.map(task::pod_name_for).transpose()?;
        Ok(Selection {
            phases,
            pod,
            older_than,
        })
    }

    /// The API server's field selector for it (phase and name); None: any pod.
    pub fn fields(&self) -> Option<String> {
        let phase = match self.phases {
            Phases::Any => None,
            Phases::Finished => Some(FINISHED.to_string()),
            Phases::Only(p) => Some(format!("status.phase={}", p.api_phase())),
        };
        let name = self.pod.as_ref().map(|n| format!("metadata.name={n}"));
        match (phase, name) {
            (Some(p), Some(n)) => Some(format!("{p},{n}")),
            (p, n) => p.or(n),
        }
    }

    /// Whether the selectors alone say it: no age, and no Queued/Pending (one API phase
    /// that only a look at the pod tells apart).
    pub fn is_server_side(&self) -> bool {
        self.older_than.is_none()
            && !matches!(self.phases, Phases::Only(Phase::Queued | Phase::Pending))
    }

    /// The whole selection on one pod (labels aside): what the field selector asks the
    /// API server, and what it cannot.
    pub fn matches(&self, pod: &Pod, now: Timestamp) -> bool {
        let view = TaskPod(pod);
        let phase_ok = match self.phases {
            Phases::Any => true,
            Phases::Finished => !matches!(view.api_phase(), "Pending" | "Running" | "Unknown"),
            Phases::Only(p @ (Phase::Queued | Phase::Pending)) => view.phase() == p,
            Phases::Only(p) => view.api_phase() == p.api_phase(),
        };
        phase_ok
            && self.pod.as_deref().is_none_or(|n| view.name() == n)
            && self.older_than.is_none_or(|min| age(pod, now) >= min)
    }
}

/// Time since the task finished, or since the pod was created if it has not.
pub fn age(pod: &Pod, now: Timestamp) -> Duration {
    let finished = TaskPod(pod).finished();
    let since = finished.or(pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
    since.map_or(Duration::ZERO, |t| {
        Duration::from_secs(now.as_second().saturating_sub(t.as_second()).max(0) as u64)
    })
}

/// What a cleanup did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Removed (or, with --dry-run, that would be), as they were when chosen.
    pub deleted: Vec<TaskState>,
    /// Kept because their log could not be saved (the command fails).
    pub kept: usize,
    /// Still running where a task is removed only once it has ended (local): cancelled
    /// now, removed by a later cleanup.
    pub cancelled: usize,
}

/// Removes the tasks `labels` and `sel` select. One deletecollection call when the
/// selectors say it all and nothing is kept or only shown (a CI job clearing 1,000 pods
/// makes one request); else a list, each log saved first with `archive`, and each task
/// deleted by name and uid (a new run under the same name meanwhile is left alone).
pub async fn run(
    rt: &Runtime,
    labels: &str,
    sel: &Selection,
    dry_run: bool,
    archive: Option<&Archive>,
) -> Result<Cleaned> {
    let now = Timestamp::now();
    let fields = sel.fields();
    if sel.is_server_side()
        && !dry_run
        && archive.is_none()
        && let Some(deleted) = rt.delete_collection(labels, fields.as_deref()).await?
    {
        return Ok(Cleaned {
            deleted,
            ..Default::default()
        });
    }
    let mut out = Cleaned::default();
    let mut chosen: Vec<(String, String, TaskState)> = vec![];
    let pods = rt.pods(labels, fields.as_deref()).await?;
    for p in pods.iter().filter(|p| sel.matches(p, now)) {
        let (Some(name), Some(uid)) = (p.metadata.name.clone(), p.metadata.uid.clone()) else {
            continue;
        };
        if !rt.deletes_running() && !TaskPod(p).is_finished() {
            if !dry_run && let Some(how) = rt.cancel(p)? {
                eprintln!(
                    "pod/{name} cancelled {how}; it is removed by a cleanup once it has ended"
                );
            }
            out.cancelled += 1;
            continue;
        }
        if let Some(a) = archive {
            match rt.archive(a, p).await {
                Ok(s) => eprintln!("pod/{name} log saved: {}", s.summary.display()),
                Err(e) => {
                    eprintln!("pod/{name} kept: its log could not be saved: {e}");
                    out.kept += 1;
                    continue;
                }
            }
        }
        chosen.push((name, uid, TaskState::new(p, None, now)));
    }
    drop(pods);
    for (name, uid, task) in chosen {
        if dry_run {
            out.deleted.push(task);
            continue;
        }
        // Exactly the task that was judged (and archived).
        match rt.delete(None, &name, &uid).await {
            Ok(true) => out.deleted.push(task),
            // Someone else deleted it meanwhile: the goal is reached.
            Ok(false) => {}
            Err(Error::AlreadyExists(m)) => eprintln!("{m}"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(phase: Option<&str>, all: bool, force: bool) -> Result<Selection> {
        Selection::new(phase, all, force, None, None)
    }

    #[test]
    fn selections_as_field_selectors() {
        assert_eq!(sel(None, false, false).unwrap().fields().unwrap(), FINISHED);
        assert_eq!(
            sel(Some("failed"), false, false).unwrap().fields().unwrap(),
            "status.phase=Failed"
        );
        assert_eq!(sel(None, true, true).unwrap().fields(), None);
        assert_eq!(sel(None, true, false).unwrap_err().exit_code(), 2);
        assert_eq!(
            sel(Some("Running"), false, false).unwrap_err().exit_code(),
            2
        );
        assert_eq!(sel(Some("Bogus"), false, false).unwrap_err().exit_code(), 2);
        assert_eq!(
            sel(Some("Queued"), false, true).unwrap().fields().unwrap(),
            "status.phase=Pending"
        );
        let by_id = Selection::new(None, false, false, Some("T001"), None).unwrap();
        assert_eq!(
            by_id.fields().unwrap(),
            format!("{FINISHED},metadata.name=agent-t001")
        );
        let any_by_id = Selection::new(None, true, true, Some("t001"), None).unwrap();
        assert_eq!(any_by_id.fields().unwrap(), "metadata.name=agent-t001");
        assert_eq!(
            Selection::new(None, false, false, Some("bad id!"), None)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert!(by_id.is_server_side());
        assert!(!sel(Some("Pending"), false, true).unwrap().is_server_side());
        let aged = Selection::new(None, false, false, None, Some(Duration::from_secs(60)));
        assert!(!aged.unwrap().is_server_side());
    }

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": "u", "creationTimestamp": "2026-11-24T10:00:00Z",
                "labels": {"app": "agent-orchestrator"}},
            "spec": {"containers": [{"name": "agent"}]},
            "status": status
        }))
        .unwrap()
    }

    /// What the field selector leaves to the client (age, Queued vs Pending) and what a
    /// runtime without a server-side selector (local) matches on the pod: the same rules.
    #[test]
    fn selections_on_pods() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let done = pod(
            "agent-t001",
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "agent", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-24T11:30:00Z"}}}]}),
        );
        let running = pod("agent-t002", json!({"phase": "Running"}));
        let pending = pod("agent-t003", json!({"phase": "Pending"}));
        let mut queued = pod("agent-t004", json!({"phase": "Pending"}));
        queued.spec.as_mut().unwrap().scheduling_gates = Some(vec![
            serde_json::from_value(json!({"name": "kueue.x-k8s.io/admission"})).unwrap(),
        ]);
        let all = [&done, &running, &pending, &queued];
        let names = |s: &Selection| -> Vec<&str> {
            all.iter()
                .filter(|p| s.matches(p, now))
                .map(|p| TaskPod(p).name())
                .collect()
        };
        assert_eq!(names(&sel(None, false, false).unwrap()), ["agent-t001"]);
        assert_eq!(names(&sel(None, true, true).unwrap()).len(), 4);
        assert_eq!(
            names(&sel(Some("Queued"), false, true).unwrap()),
            ["agent-t004"]
        );
        assert_eq!(
            names(&sel(Some("Pending"), false, true).unwrap()),
            ["agent-t003"]
        );
        assert_eq!(
            names(&sel(Some("running"), false, true).unwrap()),
            ["agent-t002"]
        );
        let by_id = Selection::new(None, true, true, Some("T002"), None).unwrap();
        assert_eq!(names(&by_id), ["agent-t002"]);
        // Finished 30m ago; the unfinished ones were created 2h ago.
        let hour = Some(Duration::from_secs(3600));
        let old = Selection::new(None, true, true, None, hour).unwrap();
        assert_eq!(names(&old), ["agent-t002", "agent-t003", "agent-t004"]);
        let recent = Selection::new(None, false, false, None, Some(Duration::from_secs(600)));
        assert_eq!(names(&recent.unwrap()), ["agent-t001"]);
    }
}
