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
use crate::marker::{self, Marker};
use crate::task::{ANN_BRANCH, LABEL_TASK_ID, SELECTOR};

/// How one task ended, as printed and as written for spec-kit.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub task: String,
    pub pod: String,
    pub phase: String,
    pub code: Option<i32>,
    pub duration: Option<Duration>,
    pub branch: Option<String>,
    pub marker: Option<Marker>,
    pub log_tail: String,
    pub finished: Timestamp,
    /// Why the container ended when that says more than the code (OOMKilled, DeadlineExceeded).
    pub reason: Option<String>,
    /// Where the task came from, as its pod says (for spec-kit's delegation file).
    pub origin: Origin,
}

/// The pod's namespace and the repo/spec dir asdo spawn annotated it with.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub namespace: Option<String>,
    pub repo: Option<String>,
    pub spec_dir: Option<String>,
}

impl Origin {
    pub fn of(p: &Pod) -> Origin {
        let ann = |k: &str| p.metadata.annotations.as_ref()?.get(k).cloned();
        Origin {
            namespace: p.metadata.namespace.clone(),
            repo: ann(crate::task::ANN_REPO),
            spec_dir: ann(crate::task::ANN_SPEC_DIR),
        }
    }
}

impl Verdict {
    pub fn succeeded(&self) -> bool {
        self.phase == "Succeeded"
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} exit={} duration={}",
            self.task,
            self.phase,
            self.code.map_or("-".into(), |c| c.to_string()),
            self.duration.map_or("-".into(), humantime::short)
        );
        if let Some(r) = &self.reason {
            s.push_str(&format!(" reason={r}"));
        }
        match &self.marker {
            Some(Marker::Done(sha)) => s.push_str(&format!(" commit={sha}")),
            Some(Marker::NoChanges) => s.push_str(" commit=none (no changes)"),
            Some(Marker::Failed { step, reason }) => {
                s.push_str(&format!(" failed-step={step} reason={reason:?}"))
            }
            _ => {}
        }
        if let Some(url) = marker::pr_url(&self.log_tail) {
            s.push_str(&format!(" pr={url}"));
        }
        // What the session used, from the agent's summary line (older agents print none).
        if let Some(sum) = marker::last_summary(&self.log_tail) {
            s.push_str(&format!(" tokens={}/{}", sum.tokens_in, sum.tokens_out));
            if let Some(c) = sum.cost {
                s.push_str(&format!(" cost=${c:.4}"));
            }
        }
        s
    }
}

impl Verdict {
    /// What the completion hooks are told.
    pub fn outcome(&self) -> hooks::Outcome {
        let (commit, failed_step, reason) = match &self.marker {
            Some(Marker::Done(sha)) => (Some(sha.clone()), None, None),
            Some(Marker::Failed { step, reason }) => {
                (None, Some(step.clone()), Some(reason.clone()))
            }
            _ => (None, None, None),
        };
        hooks::Outcome {
            task_id: self.task.clone(),
            pod: self.pod.clone(),
            phase: self.phase.clone(),
            exit_code: self.code,
            duration_seconds: self.duration.map(|d| d.as_secs()),
            branch: self.branch.clone(),
            commit,
            pr_url: marker::pr_url(&self.log_tail),
            failed_step,
            reason,
            text: self.line(),
        }
    }
}

pub fn task_of(p: &Pod) -> Option<String> {
    p.metadata.labels.as_ref()?.get(LABEL_TASK_ID).cloned()
}

pub fn branch_of(p: &Pod) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(ANN_BRANCH).cloned()
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
        done.insert(v.pod.clone());
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
                        let v = vanished(missing, id, "not found");
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
        let finished = follow::is_finished(&pod);
        // Gone before it finished, or finished by the kill of a deletion (137/143).
        let killed_by_deletion = follow::deleted_mid_run(&pod) && finished;
        let deleted_early = (deleted && !finished) || killed_by_deletion;
        if deleted_early {
            // Deleted before it finished, gone or still terminating with the kill's code:
            // the same verdict and words as `asdo logs`.
            let id = task_of(&pod).unwrap_or_else(|| wanted[&name].clone());
            let mut v = vanished(&name, &id, "deleted");
            v.branch = branch_of(&pod);
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
    Verdict {
        log_tail: format!(
            "pod {pod} was replaced by another run (uid {new_uid}); run asdo wait {task}{} again to wait for it\n",
            crate::error::scope_flags()
        ),
        phase: "Replaced".into(),
        ..vanished(pod, task, "replaced")
    }
}

pub fn vanished(pod: &str, task: &str, why: &str) -> Verdict {
    Verdict {
        task: task.to_string(),
        pod: pod.to_string(),
        phase: if why == "not found" {
            "NotFound"
        } else {
            "Deleted"
        }
        .into(),
        code: None,
        duration: None,
        branch: None,
        marker: None,
        log_tail: if why == "deleted" {
            format!("{}\n", follow::deleted_words(pod))
        } else {
            format!("pod {pod} {why}\n")
        },
        finished: Timestamp::now(),
        reason: None,
        origin: Origin::default(),
    }
}

/// Read the end of the log for the agent's last marker.
pub async fn verdict(api: &Api<Pod>, pod: &Pod) -> Verdict {
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Best effort: without the tail the verdict still has the phase and the exit code.
    let log_tail = match cluster::agent_log_tail(api, &name).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!("{e}; the verdict of {name} has no agent marker");
            String::new()
        }
    };
    let (phase, code) = follow::outcome(pod);
    let started = follow::started(pod);
    let finished = follow::finished(pod);
    let duration = match (started, finished) {
        (Some(s), Some(f)) => Some(Duration::from_secs(
            f.as_second().saturating_sub(s.as_second()).max(0) as u64,
        )),
        _ => None,
    };
    Verdict {
        task: task_of(pod).unwrap_or_else(|| name.clone()),
        pod: name,
        phase,
        code: follow::exit_code(pod).or(Some(code)),
        duration,
        branch: branch_of(pod),
        marker: marker::last(&log_tail),
        log_tail,
        finished: finished.unwrap_or_else(Timestamp::now),
        reason: follow::termination_reason(pod),
        origin: Origin::of(pod),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn v(phase: &str, marker: Option<Marker>) -> Verdict {
        Verdict {
            task: "T001".into(),
            pod: "agent-t001".into(),
            phase: phase.into(),
            code: Some(if phase == "Succeeded" { 0 } else { 12 }),
            duration: Some(Duration::from_secs(190)),
            branch: Some("specs/1/T001-async".into()),
            marker,
            log_tail: "asdo: running opencode\nasdo: failed agent: opencode exited 1\n".into(),
            finished: Timestamp::now(),
            reason: None,
            origin: Origin::default(),
        }
    }

    #[test]
    fn lines_name_the_commit_or_the_failed_step() {
        assert_eq!(
            v("Succeeded", Some(Marker::Done("abc123".into()))).line(),
            "T001 Succeeded exit=0 duration=3m10s commit=abc123"
        );
        let failed = v(
            "Failed",
            Some(Marker::Failed {
                step: "agent".into(),
                reason: "opencode exited 1".into(),
            }),
        );
        assert!(failed.line().contains("failed-step=agent"));
        let mut used = v("Succeeded", Some(Marker::Done("abc123".into())));
        used.log_tail =
            "asdo: summary: files 1, tokens 240 in / 60 out, cost $0.0120\nasdo: done abc123\n"
                .into();
        assert_eq!(
            used.line(),
            "T001 Succeeded exit=0 duration=3m10s commit=abc123 tokens=240/60 cost=$0.0120"
        );
    }

    /// A budget or no-changes failure reads as a failure everywhere: wait's line, the
    /// hooks' env and the report, with the agent's reason as it printed it.
    #[test]
    fn budget_and_no_changes_failures_reach_the_line_hooks_and_report() {
        let log = "asdo: summary: files 2, tokens 360 in / 90 out, cost $0.4500\n\
                   asdo: failed budget: cost $0.4500 > $0.4000; partial work pushed 0a1b2c\n";
        let mut budget = v("Failed", crate::marker::last(log));
        budget.code = Some(17);
        budget.log_tail = log.into();
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
        let mut nothing = v(
            "Failed",
            crate::marker::last("asdo: failed no-changes: \"Done!\"\n"),
        );
        nothing.code = Some(16);
        let report = crate::speckit::report_text(&nothing);
        assert!(
            report.contains("exit_code: 16\nbranch: specs/1/T001-async\n")
                && report.contains("failed_step: no-changes\nreason: \"Done!\"\n"),
            "{report}"
        );
        assert!(!report.contains("commit:"), "{report}");
    }
}
