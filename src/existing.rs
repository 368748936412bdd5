//! What `asdo spawn` does when the task's pod already exists (`--if-exists`).
//!
//! spec-kit's `implement.sh` spawns every [ASYNC] task again when `/implement` is
//! re-run, under `set -euo pipefail`: a non-zero exit there ends the whole script. So a
//! pod that is the same task (same branch and repository) and is on its way or done is
//! left alone and reported `unchanged` with exit 0; anything else is said in one line
//! that names what differs and what to do next. Pure: the caller fetched the pod.

use k8s_openapi::api::core::v1::Pod;

use crate::error::Error;
use crate::task::{ANN_BRANCH, ANN_REPO};
use crate::taskpod::{Phase, TaskPod};

/// `--if-exists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IfExists {
    /// Leave a running or succeeded pod of the same task (branch and repo) alone: exit 0.
    Skip,
    /// Any existing pod is an error (exit 1).
    Fail,
    /// Delete a finished pod, or one that cannot start, and create it again.
    Replace,
}

impl IfExists {
    /// The default: `skip` when run as spec-kit's `spawn-pod.sh`, `fail` otherwise.
    pub fn default_for(invoked_as_spawn_pod: bool) -> IfExists {
        if invoked_as_spawn_pod {
            IfExists::Skip
        } else {
            IfExists::Fail
        }
    }
}

#[derive(Debug)]
pub enum Decision {
    /// Print `pod/<name> unchanged`, exit 0.
    Unchanged,
    /// Delete the pod, wait until it is gone, create it again.
    Replace,
    Refuse(Error),
}

/// Why the agent container cannot start, `Reason: message`, when it has never run and
/// waits in anything but the normal start-up reasons (CreateContainerError,
/// CreateContainerConfigError, ErrImagePull, ImagePullBackOff, InvalidImageName, …).
/// Such a pod did no work, so replacing it loses nothing.
pub fn cannot_start(pod: &Pod) -> Option<String> {
    TaskPod(pod).cannot_start()
}

/// The pod's state for people: `Running`, or `Pending: CreateContainerError: …` when
/// the phase alone would hide why it is stuck.
pub fn describe(pod: &Pod) -> String {
    TaskPod(pod).describe()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map_or("", String::as_str)
}

/// Decide for an existing `pod` of task `task` that spawn wants on `branch` of `repo`.
pub fn decide(pod: &Pod, task: &str, branch: &str, repo: &str, policy: IfExists) -> Decision {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let (have_branch, have_repo) = (annotation(pod, ANN_BRANCH), annotation(pod, ANN_REPO));
    let phase = TaskPod(pod).phase();
    let stuck = cannot_start(pod);
    let finished = TaskPod(pod).is_finished();
    let state = describe(pod);
    // Two tasks with one id (spec-kit numbers tasks per feature: T001 of another
    // feature) must never be mistaken for each other; only an explicit replace of a
    // finished or stuck pod may swap one for the other.
    let mut diff = Vec::new();
    if have_branch != branch {
        diff.push(format!("branch {have_branch:?} (wanted {branch:?})"));
    }
    if have_repo != repo {
        diff.push(format!("repo {have_repo:?} (wanted {repo:?})"));
    }
    let other_run = if diff.is_empty() {
        String::new()
    } else {
        format!(" for another run of task {task}: {}", diff.join(", "))
    };
    if !diff.is_empty() && policy != IfExists::Replace {
        return Decision::Refuse(Error::AlreadyExists(format!(
            "pod {name} already exists in namespace {ns}{other_run} ({state}); \
             once it is finished `--replace` swaps it for this one, or give this task another id"
        )));
    }
    match policy {
        IfExists::Fail => Decision::Refuse(Error::AlreadyExists(format!(
            "pod {name} already exists in namespace {ns} ({state}); \
             `--if-exists skip` leaves it, `--replace` re-runs it once finished or stuck, \
             `asdo logs {task}` follows it"
        ))),
        IfExists::Replace if finished || stuck.is_some() => Decision::Replace,
        IfExists::Replace => Decision::Refuse(Error::AlreadyExists(format!(
            "pod {name} in namespace {ns}{other_run} is still {state}: --replace only replaces a finished pod \
             or one that cannot start; stop it first with `asdo cleanup --task-id {task} --all --force`"
        ))),
        IfExists::Skip => match (phase, &stuck) {
            (_, Some(why)) => Decision::Refuse(Error::AlreadyExists(format!(
                "pod {name} in namespace {ns} cannot start ({why}); \
                 fix the cause, then re-run it with --if-exists replace (spawn-pod.sh: ASDO_IF_EXISTS=replace)"
            ))),
            (Phase::Succeeded, _) => Decision::Unchanged,
            (Phase::Failed, _) => Decision::Refuse(Error::AlreadyExists(format!(
                "pod {name} in namespace {ns} failed (exit {}); it is not re-run by itself: \
                 see `asdo status {task}`, then re-run it with --if-exists replace (spawn-pod.sh: ASDO_IF_EXISTS=replace)",
                TaskPod(pod)
                    .exit_code()
                    .map_or("-".into(), |c| c.to_string())
            ))),
            // Pending (starting), Running, or Unknown for a moment: it is on its way.
            _ if !finished => Decision::Unchanged,
            // Finished by its container's exit code before the phase caught up.
            _ if TaskPod(pod).exit_code() == Some(0) => Decision::Unchanged,
            _ => Decision::Refuse(Error::AlreadyExists(format!(
                "pod {name} in namespace {ns} ended ({state}); re-run it with --if-exists replace"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BRANCH: &str = "specs/001-auth/T001-async";
    const REPO: &str = "git@github.com:org/repo.git";

    fn pod(phase: &str, state: serde_json::Value, branch: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-t001", "namespace": "ns",
                "annotations": {ANN_BRANCH: branch, ANN_REPO: REPO}},
            "status": {"phase": phase, "containerStatuses": [{"name": "agent", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    fn running() -> Pod {
        pod("Running", json!({"running": {}}), BRANCH)
    }
    fn exited(code: i32) -> Pod {
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        pod(phase, json!({"terminated": {"exitCode": code}}), BRANCH)
    }
    fn waiting(reason: &str) -> Pod {
        pod(
            "Pending",
            json!({"waiting": {"reason": reason, "message": "failed to create containerd container: boom"}}),
            BRANCH,
        )
    }

    fn verdict(p: &Pod, policy: IfExists) -> String {
        match decide(p, "T001", BRANCH, REPO, policy) {
            Decision::Unchanged => "unchanged".into(),
            Decision::Replace => "replace".into(),
            Decision::Refuse(e) => format!("refuse: {e}"),
        }
    }

    #[test]
    fn skip_leaves_the_same_task_alone_while_it_runs_or_once_it_succeeded() {
        assert_eq!(verdict(&running(), IfExists::Skip), "unchanged");
        assert_eq!(verdict(&exited(0), IfExists::Skip), "unchanged");
        assert_eq!(
            verdict(&waiting("ContainerCreating"), IfExists::Skip),
            "unchanged"
        );
        let failed = verdict(&exited(12), IfExists::Skip);
        assert!(
            failed.starts_with("refuse: ") && failed.contains("exit 12"),
            "{failed}"
        );
        assert!(failed.contains("asdo status T001"), "the real id: {failed}");
    }

    #[test]
    fn a_stuck_pod_is_named_and_replaceable() {
        let stuck = waiting("CreateContainerError");
        assert_eq!(
            cannot_start(&stuck).as_deref(),
            Some("CreateContainerError: failed to create containerd container: boom")
        );
        assert_eq!(
            describe(&stuck),
            "Pending: CreateContainerError: failed to create containerd container: boom"
        );
        assert_eq!(verdict(&stuck, IfExists::Replace), "replace");
        let skip = verdict(&stuck, IfExists::Skip);
        assert!(
            skip.contains("cannot start (CreateContainerError"),
            "{skip}"
        );
        // Starting normally is not stuck; a running pod is not replaced.
        assert_eq!(cannot_start(&waiting("ContainerCreating")), None);
        assert!(verdict(&running(), IfExists::Replace).contains("cleanup --task-id T001"));
        assert_eq!(verdict(&exited(1), IfExists::Replace), "replace");
    }

    #[test]
    fn another_branch_is_never_the_same_task() {
        let other = pod(
            "Running",
            json!({"running": {}}),
            "specs/002-billing/T001-async",
        );
        for policy in [IfExists::Skip, IfExists::Fail, IfExists::Replace] {
            let v = verdict(&other, policy);
            assert!(
                v.contains("\"specs/002-billing/T001-async\"") && v.contains(BRANCH),
                "{v}"
            );
        }
        // Only an explicit replace swaps a finished one.
        let done = pod(
            "Succeeded",
            json!({"terminated": {"exitCode": 0}}),
            "specs/002-billing/T001-async",
        );
        assert!(verdict(&done, IfExists::Skip).contains("another run of task T001"));
        assert_eq!(verdict(&done, IfExists::Replace), "replace");
    }

    #[test]
    fn fail_refuses_and_says_the_options() {
        let v = verdict(&running(), IfExists::Fail);
        assert!(
            v.contains("already exists") && v.contains("(Running)"),
            "{v}"
        );
        assert_eq!(IfExists::default_for(true), IfExists::Skip);
        assert_eq!(IfExists::default_for(false), IfExists::Fail);
    }
}
