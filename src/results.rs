//! A finished task's result as the main session takes it back: which repository and
//! branch it pushed, the base it started from, and the commit its agent reported.
//! Read from the task pod (annotations + the agent's last marker line), or given by
//! the caller when the pod is gone (`--repo`/`--branch`).

use k8s_openapi::api::core::v1::Pod;

use crate::error::{Error, Result};
use crate::localgit;
use crate::runtime::Runtime;
use crate::scope::Scope;
use crate::task::{self, ANN_BRANCH, ANN_REPO};
use crate::taskpod::{Phase, TaskPod, TaskState};

#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The task id as the pod labels it (or as the user typed it).
    pub id: String,
    pub repo: String,
    pub branch: String,
    /// The base recorded at spawn time, if any.
    pub base: Option<String>,
    /// The task as its pod and log say it; None when the caller named the branch and no
    /// pod was read.
    pub state: Option<TaskState>,
}

impl TaskResult {
    /// The commit the agent reported (`asdo: done <sha>`).
    pub fn commit(&self) -> Option<&str> {
        self.state.as_ref()?.commit.as_deref()
    }

    /// Fetches the task's branch into its private ref ([`fetch`]).
    pub fn fetch(&self) -> Result<String> {
        fetch(&self.repo, &self.branch, &self.id, self.state.as_ref())
    }

    /// What a diff of the task compares, fetched into this clone: the base (`base`, else
    /// the one recorded at spawn, else the remote's default branch) and the task's result,
    /// the commit the agent reported when this clone has it, else the branch tip.
    /// `asdo diff` and the web page's diff --stat both start here.
    pub fn diff_range(&self, base: Option<&str>) -> Result<DiffRange> {
        let fetched = self.fetch()?;
        let base = localgit::fetch_base(&self.repo, base.or(self.base.as_deref()), &self.id)?;
        let tip = match self.commit() {
            Some(sha) if localgit::has_commit(sha)? => sha.to_string(),
            _ => fetched.clone(),
        };
        Ok(DiffRange { base, tip, fetched })
    }
}

/// [`TaskResult::diff_range`]'s answer.
#[derive(Debug, Clone)]
pub struct DiffRange {
    pub base: String,
    /// The task's result: its reported commit, or the branch tip.
    pub tip: String,
    /// The task's branch as fetched (its private ref).
    pub fetched: String,
}

impl DiffRange {
    /// Whether the branch has moved past the reported commit (a second run, a human push).
    pub fn branch_moved(&self) -> Result<bool> {
        Ok(self.tip != self.fetched
            && localgit::rev_parse(&self.fetched)? != localgit::rev_parse(&self.tip)?)
    }
}

/// Fetches a task's branch into its private ref (`localgit::fetch_task`). A branch
/// missing for a task that has ended is said as what it is, a task that never pushed
/// (failed before its push, or found nothing to change), not "not there yet".
pub fn fetch(repo: &str, branch: &str, id: &str, state: Option<&TaskState>) -> Result<String> {
    crate::localgit::fetch_task(repo, branch, id).map_err(|e| match (e, state) {
        (Error::NotFound(_), Some(t)) if matches!(t.phase, Phase::Succeeded | Phase::Failed) => {
            Error::NotFound(format!(
                "branch {branch} is not on {repo}: task {id} ended ({}) without pushing it; read why with `asdo logs {id}`",
                t.status
            ))
        }
        (e, _) => e,
    })
}

/// Overrides a caller may give instead of (or on top of) the pod's annotations.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub repo: Option<String>,
    pub branch: Option<String>,
}

/// The task's result. With both `repo` and `branch` given no cluster call is made, so a
/// task whose pod was cleaned up can still be diffed.
pub async fn lookup(scope: &Scope, task_or_pod: &str, given: &Given) -> Result<TaskResult> {
    let name = task::pod_name_for(task_or_pod)?;
    if let Some(repo) = &given.repo {
        task::validate_repo(repo)?;
    }
    if let Some(branch) = &given.branch {
        task::validate_branch(branch)?;
    }
    if let (Some(repo), Some(branch)) = (&given.repo, &given.branch) {
        return Ok(TaskResult {
            id: task_or_pod.to_string(),
            repo: repo.clone(),
            branch: branch.clone(),
            base: None,
            state: None,
        });
    }
    let rt = Runtime::connect(scope).await?;
    let Some(pod) = rt.pod(&name).await? else {
        return Err(Error::NotFound(format!(
            "{}; if it was cleaned up, pass --repo and --branch",
            rt.missing(task_or_pod)
        )));
    };
    // Best effort: without the marker, apply refuses and diff uses the branch tip.
    let log = if TaskPod(&pod).is_finished() {
        rt.agent_log(&pod).await.map(|l| l.tail)
    } else {
        None
    };
    from_pod(&pod, log.as_deref(), given)
}

fn from_pod(pod: &Pod, log: Option<&str>, given: &Given) -> Result<TaskResult> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ann = |k: &str| TaskPod(pod).annotation(k).map(str::to_string);
    let missing = |what: &str, flag: &str| {
        Error::other(format!(
            "pod {name} records no {what}; pass {flag} (it was not spawned by asdo?)"
        ))
    };
    let repo = given
        .repo
        .clone()
        .or_else(|| ann(ANN_REPO))
        .ok_or_else(|| missing("repository", "--repo"))?;
    let branch = given
        .branch
        .clone()
        .or_else(|| ann(ANN_BRANCH))
        .ok_or_else(|| missing("branch", "--branch"))?;
    // Annotations can be edited by anyone with patch rights: check them as input.
    task::validate_repo(&repo)?;
    task::validate_branch(&branch)?;
    let state = TaskState::new(pod, log, k8s_openapi::jiff::Timestamp::now());
    Ok(TaskResult {
        id: state.id.clone(),
        repo,
        branch,
        base: state.base.clone(),
        state: Some(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskpod::Phase;
    use serde_json::json;

    fn pod(ann: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-t001", "labels": {"task-id": "T001"}, "annotations": ann},
            "status": {"phase": "Succeeded"}
        }))
        .unwrap()
    }

    #[test]
    fn reads_annotations_and_marker() {
        let p = pod(
            json!({"agentic-sdlc/repo": "file:///srv/r.git", "agentic-sdlc/branch": "specs/1/T001-async"}),
        );
        let r = from_pod(
            &p,
            Some("asdo: pushing x\nasdo: done 0123abcd\n"),
            &Given::default(),
        )
        .unwrap();
        assert_eq!(r.id, "T001");
        assert_eq!(r.repo, "file:///srv/r.git");
        assert_eq!(r.branch, "specs/1/T001-async");
        assert_eq!(r.state.as_ref().map(|s| s.phase), Some(Phase::Succeeded));
        assert_eq!(r.commit(), Some("0123abcd"));
    }

    #[test]
    fn edited_annotations_are_checked_like_flags() {
        let p = pod(
            json!({"agentic-sdlc/repo": "file:///srv/r.git", "agentic-sdlc/branch": "--upload-pack=x"}),
        );
        assert_eq!(
            from_pod(&p, None, &Given::default())
                .unwrap_err()
                .exit_code(),
            2
        );
        let p = pod(json!({"agentic-sdlc/branch": "b"}));
        assert!(
            from_pod(&p, None, &Given::default())
                .unwrap_err()
                .to_string()
                .contains("--repo")
        );
    }
}
