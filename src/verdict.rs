//! How a task ended (`Verdict`), read from its pod and the agent's last marker, and the
//! watch that waits for a set of task pods to end. Below the verbs: `wait` prints and
//! reports each verdict, `status` shows one, and neither borrows from the other.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};

use crate::cluster;
use crate::error::{Error, Result};
use crate::follow;
use crate::hooks;
use crate::humantime;
use crate::task::SELECTOR;
use crate::taskpod::{Phase, TaskPod, TaskState};

/// How one task ended, as `wait` prints it, reports it to spec-kit and tells its hooks:
/// a projection of the task object plus the word for an ending whose result is unknown.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The task at its end (or as last seen).
    pub task: TaskState,
    /// The word for how it ended: the phase (`Succeeded`, `Failed`), or `NotFound`,
    /// `Deleted`, `Replaced`, `TimedOut(<state>)` when its result is not known.
    pub ending: String,
    /// The end of the agent's log, or what asdo says about a task whose pod is gone.
    pub log_tail: String,
    pub finished: Timestamp,
}

impl Verdict {
    /// A finished pod's verdict, from the end of its log (`None`: it could not be read).
    pub fn of(pod: &Pod, log_tail: Option<String>) -> Verdict {
        let now = Timestamp::now();
        let task = TaskState::new(pod, log_tail.as_deref(), now);
        Verdict {
            ending: task.phase.to_string(),
            finished: task.finished.unwrap_or(now),
            log_tail: log_tail.unwrap_or_default(),
            task,
        }
    }

    /// A task whose result is not known: `ending` says why, `words` are its log line.
    pub fn unknown(task: TaskState, ending: &str, words: String) -> Verdict {
        Verdict {
            task,
            ending: ending.to_string(),
            log_tail: words,
            finished: Timestamp::now(),
        }
    }

    /// Whether the ending is the pod's own phase (not NotFound, Deleted, …).
    fn ended_itself(&self) -> bool {
        self.task.phase.is_final() && self.ending == self.task.phase.as_str()
    }

    pub fn succeeded(&self) -> bool {
        self.ended_itself() && self.task.phase == Phase::Succeeded
    }

    /// The container's exit code (0 or 1 for a pod that ended without one); none for an
    /// ending whose result is unknown.
    pub fn code(&self) -> Option<i32> {
        self.ended_itself().then(|| {
            self.task
                .exit_code
                .unwrap_or(if self.succeeded() { 0 } else { 1 })
        })
    }

    pub fn duration(&self) -> Option<Duration> {
        self.task
            .finished
            .and(self.task.duration_seconds)
            .map(Duration::from_secs)
    }

    /// How the pod was ended when that says more than the code (OOMKilled,
    /// DeadlineExceeded): the task's reason unless it is the agent's own failed step.
    pub fn killed(&self) -> Option<&str> {
        let t = &self.task;
        let r = t.reason.as_deref()?;
        let agents = t.failed_step.as_deref() == Some(r) || r == "no-changes";
        (self.ended_itself() && !agents).then_some(r)
    }

    pub fn line(&self) -> String {
        let t = &self.task;
        let mut s = format!(
            "{} {} exit={} duration={}",
            t.id,
            self.ending,
            self.code().map_or("-".into(), |c| c.to_string()),
            self.duration().map_or("-".into(), humantime::short)
        );
        if let Some(r) = self.killed() {
            s.push_str(&format!(" reason={r}"));
        }
        if let Some(sha) = &t.commit {
            s.push_str(&format!(" commit={sha}"));
        } else if let Some(step) = &t.failed_step {
            let why = t.message.as_deref().unwrap_or_default();
            s.push_str(&format!(" failed-step={step} reason={why:?}"));
        } else if t.phase == Phase::Succeeded && t.reason.as_deref() == Some("no-changes") {
            s.push_str(" commit=none (no changes)");
        }
        if let Some(url) = &t.pr_url {
            s.push_str(&format!(" pr={url}"));
        }
        // What the session used, from the agent's summary line (older agents print none).
        if let (Some(tin), Some(tout)) = (t.tokens_in, t.tokens_out) {
            s.push_str(&format!(" tokens={tin}/{tout}"));
            if let Some(c) = t.cost {
                s.push_str(&format!(" cost=${c:.4}"));
            }
        }
        s
    }

    /// What the completion hooks are told.
    pub fn outcome(&self) -> hooks::Outcome {
        hooks::Outcome::of(&self.task, &self.ending, self.line())
    }
}

/// One watch over all task pods; returns when every wanted pod has a verdict (with
/// `any`, when the first one has).
///
/// Each verdict goes to `on_verdict` as it is reached (the caller prints, reports and
/// fires hooks), so the loop knows nothing of `wait`'s outputs. Dropping the future
/// (a timeout) stops the watch; the caller keeps what it was given.
pub async fn watch_until_done(
    api: &Api<Pod>,
    wanted: &BTreeMap<String, String>,
    any: bool,
    mut on_verdict: impl FnMut(Verdict),
) -> Result<()> {
    let cfg = watcher::Config::default().labels(SELECTOR);
    let mut events = pin!(watcher::watcher(api.clone(), cfg));
    let mut seen_in_init = BTreeSet::new();
    // Bounded by --timeout only: wait keeps waiting through an outage, saying so.
    let mut outage = follow::Outage::new(Duration::ZERO, "wait");
    let mut backoff = Duration::from_millis(250);
    // One bounded list first: a hung or unreachable API server is said on stderr (and
    // waited through), a refusal (400/401/403) ends the wait at once.
    let probe = ListParams::default().labels(SELECTOR).limit(1);
    loop {
        match crate::cluster::within_timeout("list task pods", api.list(&probe)).await {
            Ok(Ok(_)) => {
                outage.ok();
                break;
            }
            Ok(Err(e)) if follow::is_refusal(&e) => {
                return Err(follow::fatal_api_error("list task pods", &e));
            }
            Ok(Err(e)) => {
                outage.failed(&crate::error::brief(&e));
            }
            Err(timed_out) => {
                outage.failed(&timed_out.to_string());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    // The pods that have their verdict (given to `on_verdict`).
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut finish = |v: Verdict, done: &mut BTreeSet<String>| {
        done.insert(v.task.pod.clone());
        on_verdict(v);
    };
    // Each wanted pod's uid when first seen: a pod of the same name with another uid is
    // another run (deleted and re-spawned while the watch was away), never this one's result.
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    let need = if any { 1 } else { wanted.len() };
    while done.len() < need {
        let ev = match events.next().await {
            Some(Ok(ev)) => {
                outage.ok();
                backoff = Duration::from_millis(250);
                ev
            }
            Some(Err(e)) => {
                if let Some(fatal) = follow::fatal_watch_error(&e, "watch task pods") {
                    return Err(fatal);
                }
                outage.failed(&follow::describe_watch(&e));
                tracing::debug!("watch interrupted: {e}; resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            None => return Err(Error::Api("the pod watch ended unexpectedly".into())),
        };
        let (pod, deleted) = match ev {
            Event::Init => {
                seen_in_init.clear();
                continue;
            }
            Event::InitApply(p) => {
                seen_in_init.insert(p.metadata.name.clone().unwrap_or_default());
                (p, false)
            }
            Event::InitDone => {
                // A wanted pod the list did not return does not exist.
                for (missing, id) in wanted.iter().filter(|(w, _)| !seen_in_init.contains(*w)) {
                    // --any: one answer, the rest are not waited for.
                    if done.len() >= need {
                        break;
                    }
                    if !done.contains(missing) {
                        let v = not_found(missing, id);
                        finish(v, &mut done);
                    }
                }
                continue;
            }
            Event::Apply(p) => (p, false),
            Event::Delete(p) => (p, true),
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !wanted.contains_key(&name) || done.contains(&name) {
            continue;
        }
        if let Some(uid) = pod.metadata.uid.clone() {
            match uids.get(&name) {
                Some(first) if *first != uid => {
                    let v = replaced(&name, &wanted[&name], &uid);
                    eprintln!("{}", v.log_tail.trim_end());
                    finish(v, &mut done);
                    continue;
                }
                Some(_) => {}
                None => {
                    uids.insert(name.clone(), uid);
                }
            }
        }
        let finished = TaskPod(&pod).is_finished();
        // Gone before it finished, or finished by the kill of a deletion (137/143).
        let killed_by_deletion = TaskPod(&pod).deleted_mid_run() && finished;
        let deleted_early = (deleted && !finished) || killed_by_deletion;
        if deleted_early {
            // Deleted before it finished, gone or still terminating with the kill's code:
            // the same verdict and words as `asdo logs`.
            let v = deleted_before_end(&pod, &wanted[&name]);
            eprintln!("{}", v.log_tail.trim_end());
            finish(v, &mut done);
        } else if finished {
            let v = verdict(api, &pod).await;
            finish(v, &mut done);
        }
    }
    Ok(())
}

/// The pod waited for is gone and another run holds its name: its result is unknown.
pub fn replaced(pod: &str, task: &str, new_uid: &str) -> Verdict {
    let words = format!(
        "pod {pod} was replaced by another run (uid {new_uid}); run asdo wait {task}{} again to wait for it",
        crate::error::scope_flags()
    );
    Verdict::unknown(
        TaskState::vanished(task, pod, "", "replaced", &words),
        "Replaced",
        format!("{words}\n"),
    )
}

/// A wanted pod the watch's list did not return.
pub fn not_found(pod: &str, task: &str) -> Verdict {
    let words = format!("pod {pod} not found");
    Verdict::unknown(
        TaskState::vanished(task, pod, "", "not-found", &words),
        "NotFound",
        format!("{words}\n"),
    )
}

/// Deleted before it finished, gone or still terminating with the kill's code: the same
/// words as `asdo logs`.
pub fn deleted_before_end(pod: &Pod, task: &str) -> Verdict {
    let name = TaskPod(pod).name();
    let words = follow::deleted_words(name);
    let mut t = TaskState::gone(pod, "deleted", &words);
    t.id = TaskPod(pod).task_label().unwrap_or(task).to_string();
    Verdict::unknown(t, "Deleted", format!("{words}\n"))
}

/// Read the end of the log for the agent's last marker.
pub async fn verdict(api: &Api<Pod>, pod: &Pod) -> Verdict {
    let name = TaskPod(pod).name();
    // Best effort: without the tail the verdict still has the phase and the exit code.
    let log = match cluster::agent_log(api, name).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::info!("{e}; the verdict of {name} has no agent marker");
            None
        }
    };
    let session = log.as_ref().and_then(|l| l.session.clone());
    let mut v = Verdict::of(pod, log.map(|l| l.tail));
    // A long run's tail no longer announces its session; the log's head does.
    v.task.session_id = v.task.session_id.or(session);
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The verdict on task T001's pod, ended with `code` after 3m10s, whose log ends with `log`.
    pub(crate) fn v(code: i32, log: &str) -> Verdict {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-t001", "namespace": "ns", "labels": {"task-id": "T001"},
                "annotations": {"agentic-sdlc/branch": "specs/1/T001-async"}},
            "status": {"phase": if code == 0 { "Succeeded" } else { "Failed" },
                "startTime": "2026-11-24T10:00:05Z",
                "containerStatuses": [{"name": "agent", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": code,
                    "reason": if code == 0 { "Completed" } else { "Error" },
                    "finishedAt": "2026-11-24T10:03:15Z"}}}]}
        }))
        .unwrap();
        // Reported now (as wait would), whatever the pod's clock said.
        Verdict {
            finished: Timestamp::now(),
            ..Verdict::of(&pod, Some(log.to_string()))
        }
    }

    #[test]
    fn lines_name_the_commit_or_the_failed_step() {
        assert_eq!(
            v(0, "asdo: done abc123\n").line(),
            "T001 Succeeded exit=0 duration=3m10s commit=abc123"
        );
        let failed = v(
            12,
            "asdo: running opencode\nasdo: failed agent: opencode exited 1\n",
        );
        assert!(
            failed
                .line()
                .contains("exit=12 duration=3m10s failed-step=agent reason=\"opencode exited 1\""),
            "{}",
            failed.line()
        );
        assert_eq!(
            v(
                0,
                "asdo: summary: files 1, tokens 240 in / 60 out, cost $0.0120\nasdo: done abc123\n"
            )
            .line(),
            "T001 Succeeded exit=0 duration=3m10s commit=abc123 tokens=240/60 cost=$0.0120"
        );
        assert_eq!(
            v(0, "asdo: done no-changes\n").line(),
            "T001 Succeeded exit=0 duration=3m10s commit=none (no changes)"
        );
        // Unknown results: no exit code, the word for why.
        let gone = not_found("agent-t9", "T9");
        assert_eq!(gone.line(), "T9 NotFound exit=- duration=-");
        assert!(!gone.succeeded());
        assert_eq!(gone.task.status, "Unknown (not-found)");
    }

    /// A budget or no-changes failure reads as a failure everywhere: wait's line, the
    /// hooks' env and the report, with the agent's reason as it printed it.
    #[test]
    fn budget_and_no_changes_failures_reach_the_line_hooks_and_report() {
        let log = "asdo: summary: files 2, tokens 360 in / 90 out, cost $0.4500\n\
                   asdo: failed budget: cost $0.4500 > $0.4000; partial work pushed 0a1b2c\n";
        let budget = v(17, log);
        assert!(
            budget.line().contains(
                "exit=17 duration=3m10s failed-step=budget reason=\"cost $0.4500 > $0.4000; partial work pushed 0a1b2c\""
            ),
            "{}",
            budget.line()
        );
        let env = budget.outcome().env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ASDO_FAILED_STEP"), Some("budget"));
        assert_eq!(get("ASDO_EXIT"), Some("17"));
        assert_eq!(get("ASDO_COMMIT"), Some(""));
        assert_eq!(get("ASDO_STATUS"), Some("Failed (budget)"));
        let nothing = v(16, "asdo: failed no-changes: \"Done!\"\n");
        let report = crate::speckit::report_text(&nothing);
        assert!(
            report.contains("exit_code: 16\nbranch: specs/1/T001-async\n")
                && report.contains("failed_step: no-changes\nreason: \"Done!\"\n")
                && report.contains("status: Failed (no-changes)\n"),
            "{report}"
        );
        assert!(!report.contains("commit:"), "{report}");
    }

    /// OOMKilled is how the pod ended, not a step of the agent: `reason=` on the line.
    #[test]
    fn a_kill_is_named() {
        let mut oom = v(137, "");
        oom.task.reason = Some("OOMKilled".into());
        assert!(
            oom.line()
                .ends_with("exit=137 duration=3m10s reason=OOMKilled"),
            "{}",
            oom.line()
        );
        assert_eq!(v(16, "asdo: failed no-changes: x\n").killed(), None);
    }
}
