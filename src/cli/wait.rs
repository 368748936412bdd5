//! `asdo wait`: block until tasks end (one watch for all of them), print a line per
//! task as it ends, and optionally write spec-kit's delegation markers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, SystemTime};

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};

use super::Global;
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::follow;
use crate::hooks::{self, Hooks};
use crate::humantime;
use crate::marker::{self, Marker};
use crate::task::{self, ANN_BRANCH, LABEL_TASK_ID, SELECTOR};

/// Exit code when the timeout passes first, as timeout(1) uses.
pub const EXIT_TIMEOUT: i32 = crate::error::exit::TIMEOUT;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo wait T001 T002            exit 0 only if both succeed
  asdo wait --all --timeout 2h --report-dir specs/001-auth/.async_state
  asdo wait --any T001 T002 T003 return when the first of them ends

Each finished task prints one line:
  T001 Succeeded exit=0 duration=3m10s commit=0123abcd…
Exit codes: 0 all succeeded, 1 a task failed or vanished, 124 the timeout passed first.
With --any: the exit code of the first task to end.")]
pub struct WaitArgs {
    /// Task ids (T001) or pod names (agent-t001).
    #[arg(required_unless_present_any = ["all", "any"])]
    pub tasks: Vec<String>,
    /// Every task pod in the namespace now.
    #[arg(long, conflicts_with = "tasks")]
    pub all: bool,
    /// Return as soon as the first of the tasks ends (every task pod now, without task ids),
    /// with its line, its report and its hooks; the exit code is that task's.
    #[arg(long)]
    pub any: bool,
    /// Give up after this long.
    #[arg(long, default_value = "2h", value_parser = crate::humantime::parse)]
    pub timeout: Duration,
    /// Write spec-kit markers: <dir>/delegation_completed/<id>.txt or <dir>/delegation_errors/<id>.txt.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Run this shell command for each task as it is reported, with ASDO_TASK_ID, ASDO_PHASE,
    /// ASDO_EXIT, ASDO_COMMIT, ASDO_PR_URL, ASDO_BRANCH, … in its environment.
    #[arg(long, value_name = "CMD")]
    pub on_done: Option<String>,
    /// POST each task's result as JSON (Slack-compatible "text") to this URL. Prefer the env
    /// var: a webhook URL is a secret, and argv is visible to every user of the machine.
    #[arg(
        long,
        value_name = "URL",
        env = "ASDO_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub webhook: Option<String>,
    /// Bound on each --on-done run and each webhook attempt (more than 0: `0` is refused,
    /// it would stop every hook at once).
    #[arg(long, default_value = "30s", value_parser = crate::humantime::parse)]
    pub hook_timeout: Duration,
}

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
            ..Default::default()
        }
    }
}

/// What `asdo wait` alone is told (clap's "required <TASKS>" does not say what else works).
pub const NEEDS_TASKS: &str = "name the tasks to wait for (asdo wait T001 T002), or pass --all (every task pod now) or --any (the first of them to end)";

/// How long, past `--timeout`, the last look at the unfinished pods may take.
const LAST_LOOK: Duration = Duration::from_secs(1);

pub async fn run(global: &Global, args: WaitArgs) -> Result<i32> {
    if args.tasks.is_empty() && !args.all && !args.any {
        return Err(Error::usage(NEEDS_TASKS));
    }
    let scope = global.scope()?;
    if let Some(url) = &args.webhook {
        crate::http::check_url(url).map_err(|e| Error::usage(format!("invalid --webhook: {e}")))?;
    }
    let hooks_cfg = hooks::Config {
        on_done: args.on_done.clone(),
        webhook: args.webhook.clone(),
        timeout: args.hook_timeout,
    };
    hooks_cfg.check().map_err(Error::usage)?;
    let mut hooks = Hooks::new(hooks_cfg);
    // Pod name → the task id as the user spelled it, for pods that never show up.
    let mut wanted: BTreeMap<String, String> = args
        .tasks
        .iter()
        .map(|t| Ok((task::pod_name_for(t)?, t.clone())))
        .collect::<Result<_>>()?;
    let ns = scope.namespace.clone();
    // --timeout is a hard bound on the whole command: every call below runs inside it
    // (or, for the last look after it, inside a short grace), so a server that accepts
    // and never answers cannot stretch it by a request timeout.
    let deadline = tokio::time::Instant::now() + args.timeout;
    let client = cluster::client(&scope.cluster).await?;
    let api = cluster::pods(&client, Some(&ns))?;
    if args.all || (args.any && args.tasks.is_empty()) {
        let lp = ListParams::default().labels(SELECTOR);
        let what = format!("list task pods in namespace {ns}");
        let pods = tokio::time::timeout_at(deadline, cluster::list_all(&api, &lp, &what))
            .await
            .map_err(|_| {
                Error::Cluster(format!(
                    "cannot {what}: no answer from the API server {} within {} (--timeout)",
                    cluster::server_url(),
                    humantime::short(args.timeout)
                ))
            })??;
        wanted = pods
            .iter()
            // --any without ids: a pod that has already ended is not what is waited for
            // (it frees no quota slot and would answer at once).
            .filter(|p| !args.any || !follow::is_finished(p))
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                let id = task_of(p).unwrap_or_else(|| name.clone());
                Some((name, id))
            })
            .collect();
        if wanted.is_empty() {
            let which = if args.any { "running " } else { "" };
            eprintln!("No {which}task pods in namespace {ns}.");
            return Ok(exit::OK);
        }
    }

    if let Some(dir) = &args.report_dir {
        check_writable(dir)?;
    }

    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut write_failed = false;
    let watch = watch_until_done(
        &api,
        &wanted,
        &mut verdicts,
        args.report_dir.as_deref(),
        &mut write_failed,
        &mut hooks,
        args.any,
    );
    let timed_out = match tokio::time::timeout_at(deadline, watch).await {
        Ok(Ok(())) => false,
        // 400/401/403 or a watch that cannot go on: the command's answer.
        Ok(Err(e)) => return Err(e),
        Err(_) => true,
    };

    let mut code = exit::OK;
    if verdicts.values().any(|v| !v.succeeded()) || write_failed {
        code = exit::FAILURE;
    }
    if timed_out {
        // One last look at the pods still waited for, all at once and within a short
        // grace: the deadline has passed, so a server that does not answer gets no more.
        let left: Vec<(&String, &String)> = wanted
            .iter()
            .filter(|(p, _)| !verdicts.contains_key(*p))
            .collect();
        let looks = futures::future::join_all(
            left.iter()
                .map(|(pod, _)| async { cluster::get_pod(&api, pod, &ns).await.ok().flatten() }),
        );
        let current_pods = tokio::time::timeout(LAST_LOOK, looks)
            .await
            .unwrap_or_else(|_| vec![None; left.len()]);
        for ((pod, id), current) in left.into_iter().zip(current_pods) {
            // `Pending: CreateContainerError: …`: a stuck pod says why, not just "Pending".
            let phase = current
                .as_ref()
                .map_or("Unknown".into(), crate::existing::describe);
            let v = Verdict {
                task: current
                    .as_ref()
                    .and_then(task_of)
                    .unwrap_or_else(|| id.clone()),
                pod: pod.clone(),
                phase: format!("TimedOut({phase})"),
                code: None,
                duration: None,
                branch: current.as_ref().and_then(branch_of),
                marker: None,
                log_tail: format!("still {phase} after {}\n", humantime::short(args.timeout)),
                finished: Timestamp::now(),
                reason: None,
                origin: current.as_ref().map(Origin::of).unwrap_or_default(),
            };
            println!("{}", v.line());
            if let Some(dir) = &args.report_dir
                && let Err(e) = write_report(dir, &v)
            {
                eprintln!("error: {e}");
                code = exit::FAILURE;
            }
            hooks.fire(&v.outcome());
        }
        if code == exit::OK {
            code = EXIT_TIMEOUT;
        }
    }
    hooks.finish().await;
    if write_failed {
        eprintln!(
            "error: some reports could not be written (see above); spec-kit will not see those tasks' results"
        );
    }
    Ok(code)
}

/// Fail before waiting (hours, maybe) if the report directory cannot take a file.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".asdo-write-check-{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::other(format!(
                "cannot write reports in {}: {e}; pick a writable --report-dir",
                dir.display()
            ))
        })
}

fn task_of(p: &Pod) -> Option<String> {
    p.metadata.labels.as_ref()?.get(LABEL_TASK_ID).cloned()
}

fn branch_of(p: &Pod) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(ANN_BRANCH).cloned()
}

/// One watch over all task pods; returns when every wanted pod has a verdict (with
/// `any`, when the first one has).
async fn watch_until_done(
    api: &Api<Pod>,
    wanted: &BTreeMap<String, String>,
    verdicts: &mut BTreeMap<String, Verdict>,
    report_dir: Option<&Path>,
    write_failed: &mut bool,
    hooks: &mut Hooks,
    any: bool,
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
    let mut finish = |v: Verdict, verdicts: &mut BTreeMap<String, Verdict>| {
        if let Err(e) = conclude(v, verdicts, report_dir, hooks) {
            // Every task still gets its outcome; the exit code says a report is missing.
            eprintln!("error: {e}");
            *write_failed = true;
        }
    };
    // Each wanted pod's uid when first seen: a pod of the same name with another uid is
    // another run (deleted and re-spawned while the watch was away), never this one's result.
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    let need = if any { 1 } else { wanted.len() };
    while verdicts.len() < need {
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
                    if verdicts.len() >= need {
                        break;
                    }
                    if !verdicts.contains_key(missing) {
                        let v = vanished(missing, id, "not found");
                        finish(v, verdicts);
                    }
                }
                continue;
            }
            Event::Apply(p) => (p, false),
            Event::Delete(p) => (p, true),
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !wanted.contains_key(&name) || verdicts.contains_key(&name) {
            continue;
        }
        if let Some(uid) = pod.metadata.uid.clone() {
            match uids.get(&name) {
                Some(first) if *first != uid => {
                    let v = replaced(&name, &wanted[&name], &uid);
                    eprintln!("{}", v.log_tail.trim_end());
                    finish(v, verdicts);
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
            finish(v, verdicts);
        } else if finished {
            let v = verdict(api, &pod).await;
            finish(v, verdicts);
        }
    }
    Ok(())
}

/// The pod waited for is gone and another run holds its name: its result is unknown.
fn replaced(pod: &str, task: &str, new_uid: &str) -> Verdict {
    Verdict {
        log_tail: format!(
            "pod {pod} was replaced by another run (uid {new_uid}); run asdo wait {task}{} again to wait for it\n",
            crate::error::scope_flags()
        ),
        phase: "Replaced".into(),
        ..vanished(pod, task, "replaced")
    }
}

fn vanished(pod: &str, task: &str, why: &str) -> Verdict {
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

fn conclude(
    v: Verdict,
    verdicts: &mut BTreeMap<String, Verdict>,
    report_dir: Option<&Path>,
    hooks: &mut Hooks,
) -> Result<()> {
    println!("{}", v.line());
    // The outcome counts even when its report cannot be written.
    let written = report_dir.map_or(Ok(()), |dir| write_report(dir, &v));
    hooks.fire(&v.outcome());
    verdicts.insert(v.pod.clone(), v);
    written
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

/// Write `<dir>/delegation_completed/<id>.txt` or `<dir>/delegation_errors/<id>.txt`
/// atomically (temp file + rename). A marker of either kind newer than this verdict
/// wins; an older marker of the other kind is retired so spec-kit sees one answer.
pub fn write_report(dir: &Path, v: &Verdict) -> Result<()> {
    // spec-kit answers `no_job` without the prompt file, whatever else exists.
    let d = crate::speckit::Delegation {
        task: &v.task,
        pod: &v.pod,
        namespace: v.origin.namespace.as_deref(),
        branch: v.branch.as_deref().unwrap_or("-"),
        repo: v.origin.repo.as_deref(),
        spec_dir: v.origin.spec_dir.as_deref(),
        prompt: None,
        by: "asdo wait",
    };
    crate::speckit::record(dir, &d, false)?;
    let (kind, other) = if v.succeeded() {
        ("delegation_completed", "delegation_errors")
    } else {
        ("delegation_errors", "delegation_completed")
    };
    let file = format!("{}.txt", v.task);
    let target = dir.join(kind).join(&file);
    let finished = SystemTime::from(v.finished);
    let newer = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > finished)
    };
    let stale = dir.join(other).join(&file);
    if let Some(newer_marker) = [&target, &stale].into_iter().find(|p| newer(p)) {
        eprintln!(
            "{} is newer than this result; left as it is",
            newer_marker.display()
        );
        return Ok(());
    }
    let io =
        |e: std::io::Error| Error::other(format!("cannot write report in {}: {e}", dir.display()));
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::other(format!("cannot write report in {}: {e}", parent.display())))?;
    marker::write_atomic(&target, report_text(v).as_bytes())
        .map_err(|e| Error::other(format!("cannot write report {}: {e}", target.display())))?;
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(io)?;
        if let Some(p) = stale.parent() {
            marker::sync_dir(p).map_err(io)?;
        }
    }
    Ok(())
}

fn report_text(v: &Verdict) -> String {
    let mut s = format!(
        "task: {}\npod: {}\nphase: {}\nexit_code: {}\nbranch: {}\nfinished: {}\n",
        v.task,
        v.pod,
        v.phase,
        v.code.map_or("-".into(), |c| c.to_string()),
        v.branch.as_deref().unwrap_or("-"),
        v.finished,
    );
    if let Some(r) = &v.reason {
        s.push_str(&format!("reason_terminated: {r}\n"));
    }
    match &v.marker {
        Some(Marker::Done(sha)) => s.push_str(&format!("commit: {sha}\n")),
        Some(Marker::NoChanges) => s.push_str("commit: none (no changes)\n"),
        Some(Marker::Failed { step, reason }) => {
            s.push_str(&format!("failed_step: {step}\nreason: {reason}\n"))
        }
        _ => {}
    }
    if !v.succeeded() {
        s.push_str("last_log_lines: |\n");
        for l in v.log_tail.lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(phase: &str, marker: Option<Marker>) -> Verdict {
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
        let report = report_text(&nothing);
        assert!(
            report.contains("exit_code: 16\nbranch: specs/1/T001-async\n")
                && report.contains("failed_step: no-changes\nreason: \"Done!\"\n"),
            "{report}"
        );
        assert!(!report.contains("commit:"), "{report}");
    }

    #[test]
    fn reports_are_atomic_exclusive_and_not_overwritten_by_older_results() {
        let dir = std::env::temp_dir().join(format!("asdo-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut failed = v(
            "Failed",
            Some(Marker::Failed {
                step: "agent".into(),
                reason: "x".into(),
            }),
        );
        failed.finished = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
        write_report(&dir, &failed).unwrap();
        let err = dir.join("delegation_errors/T001.txt");
        let text = std::fs::read_to_string(&err).unwrap();
        assert!(
            text.contains("failed_step: agent") && text.contains("  asdo: running opencode"),
            "{text}"
        );

        // A newer success replaces the older failure.
        write_report(&dir, &v("Succeeded", Some(Marker::Done("abc".into())))).unwrap();
        let ok = dir.join("delegation_completed/T001.txt");
        assert!(
            std::fs::read_to_string(&ok)
                .unwrap()
                .contains("commit: abc")
        );
        assert!(!err.exists(), "the stale error marker is retired");

        // An older failure does not overwrite or retire the newer success.
        write_report(&dir, &failed).unwrap();
        assert!(ok.exists());
        assert!(!err.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("delegation_completed"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
