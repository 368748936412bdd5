//! `asdo wait`: block until tasks end (one watch for all of them), print a line per
//! task as it ends, and optionally write spec-kit's delegation markers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;

use super::Global;
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::hooks::{self, Hooks};
use crate::humantime;
use crate::output::{self, Format};
use crate::speckit;
use crate::task::{self, SELECTOR};
use crate::taskpod::{TaskPod, TaskState};
use crate::verdict::{self, Verdict};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo wait T001 T002            exit 0 only if both succeed
  asdo wait --all --timeout 2h --report-dir specs/001-auth/.async_state
  asdo wait --any T001 T002 T003 return when the first of them ends

Each finished task prints one line:
  T001 Succeeded exit=0 duration=3m10s commit=0123abcd…
With -o json, one task object per line instead (JSON Lines, src/task.schema.json).
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
    /// Print each task object as it ends instead of the line: json is one object per line
    /// (JSON Lines), yaml one document per task (`---`).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
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
    if global.runtime == crate::runtime::Kind::Local {
        return wait_local(&args, wanted, deadline, hooks).await;
    }
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
            .filter(|p| !args.any || !TaskPod(p).is_finished())
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                let id = TaskPod(p).task_id().to_string();
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
        speckit::check_reports_writable(dir)?;
    }

    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut write_failed = false;
    let format = args.output;
    let watch = verdict::watch_until_done(&api, &wanted, args.any, |v| {
        if let Err(e) = conclude(
            v,
            &mut verdicts,
            args.report_dir.as_deref(),
            &mut hooks,
            format,
        ) {
            // Every task still gets its outcome; the exit code says a report is missing.
            eprintln!("error: {e}");
            write_failed = true;
        }
    });
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
            let v = timed_out_verdict(pod, id, &ns, current.as_ref(), args.timeout);
            if conclude_timed_out(&v, args.report_dir.as_deref(), &mut hooks, format)? {
                code = exit::FAILURE;
            }
        }
        if code == exit::OK {
            code = exit::TIMEOUT;
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

/// The line for a task as it ends, or its task object with `-o`.
fn say(v: &Verdict, format: Option<Format>) -> Result<()> {
    match format {
        None => {
            println!("{}", v.line());
            Ok(())
        }
        Some(Format::Json) => output::print_line(&v.task),
        Some(Format::Yaml) => {
            println!("---");
            output::print(&v.task, Format::Yaml)
        }
    }
}

/// A task still not ended at --timeout gets its line, its report and its hooks as an ended
/// one does (both runtimes). Returns whether its report could not be written.
fn conclude_timed_out(
    v: &Verdict,
    report_dir: Option<&Path>,
    hooks: &mut Hooks,
    format: Option<Format>,
) -> Result<bool> {
    say(v, format)?;
    let failed = match report_dir.map(|dir| speckit::complete(dir, v)) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            true
        }
        _ => false,
    };
    hooks.fire(&v.outcome());
    Ok(failed)
}

/// The verdict of a task still not ended at --timeout: `TimedOut(<what it is doing>)`.
fn timed_out_verdict(
    pod: &str,
    id: &str,
    ns: &str,
    current: Option<&k8s_openapi::api::core::v1::Pod>,
    timeout: Duration,
) -> Verdict {
    // `Pending: CreateContainerError: …`: a stuck pod says why, not just "Pending".
    let phase = current.map_or("Unknown".into(), |p| TaskPod(p).describe());
    let words = format!("still {phase} after {}", humantime::short(timeout));
    let task = match current {
        Some(p) => TaskState::new(p, None, Timestamp::now()),
        None => TaskState::vanished(id, pod, ns, "timed-out", &words),
    };
    Verdict::unknown(task, &format!("TimedOut({phase})"), format!("{words}\n"))
}

/// `wait` on the local runtime: the same verdicts, reports and hooks, from the local
/// tasks' state files (read every half second) instead of a pod watch.
async fn wait_local(
    args: &WaitArgs,
    mut wanted: BTreeMap<String, String>,
    deadline: tokio::time::Instant,
    mut hooks: Hooks,
) -> Result<i32> {
    use crate::runtime::local;
    let store = local::Store::from_env()?;
    if args.all || (args.any && args.tasks.is_empty()) {
        wanted = store
            .pods(SELECTOR)?
            .iter()
            .filter(|p| !args.any || !TaskPod(p).is_finished())
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                Some((name, TaskPod(p).task_id().to_string()))
            })
            .collect();
        if wanted.is_empty() {
            let which = if args.any { "running " } else { "" };
            eprintln!("No {which}local tasks.");
            return Ok(exit::OK);
        }
    }
    for (pod, id) in &wanted {
        if store.pod(pod)?.is_none() {
            return Err(local::logs::not_found(&store, id));
        }
    }
    if let Some(dir) = &args.report_dir {
        speckit::check_reports_writable(dir)?;
    }
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut write_failed = false;
    let mut timed_out_now = false;
    loop {
        for pod in wanted.keys() {
            if verdicts.contains_key(pod) {
                continue;
            }
            if let Some((t, p)) = store.pod(pod)?
                && TaskPod(&p).is_finished()
            {
                let tail = t.log_tail(crate::marker::TAIL_LINES as usize);
                let v = Verdict::of(&p, Some(tail));
                if let Err(e) = conclude(
                    v,
                    &mut verdicts,
                    args.report_dir.as_deref(),
                    &mut hooks,
                    args.output,
                ) {
                    eprintln!("error: {e}");
                    write_failed = true;
                }
            }
        }
        let done = verdicts.len() == wanted.len() || (args.any && !verdicts.is_empty());
        if done {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            timed_out_now = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut code = exit::OK;
    if verdicts.values().any(|v| !v.succeeded()) || write_failed {
        code = exit::FAILURE;
    }
    if timed_out_now {
        for (pod, id) in wanted.iter().filter(|(p, _)| !verdicts.contains_key(*p)) {
            let current = store.pod(pod)?.map(|(_, p)| p);
            let v = timed_out_verdict(pod, id, "", current.as_ref(), args.timeout);
            if conclude_timed_out(&v, args.report_dir.as_deref(), &mut hooks, args.output)? {
                code = exit::FAILURE;
            }
        }
        if code == exit::OK {
            code = exit::TIMEOUT;
        }
    }
    hooks.finish().await;
    Ok(code)
}

fn conclude(
    v: Verdict,
    verdicts: &mut BTreeMap<String, Verdict>,
    report_dir: Option<&Path>,
    hooks: &mut Hooks,
    format: Option<Format>,
) -> Result<()> {
    say(&v, format)?;
    // The outcome counts even when its report cannot be written.
    let written = report_dir.map_or(Ok(()), |dir| speckit::complete(dir, &v));
    hooks.fire(&v.outcome());
    verdicts.insert(v.task.pod.clone(), v);
    written
}
