//! `asdo cleanup`: delete finished task pods. One deletecollection call when the
//! selection can be said with selectors; a list + per-pod deletes only when it
//! can't (--older-than), so a CI job clearing 1,000 pods makes one request.

use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};

use super::Global;
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::output::{self, Format};
use crate::task;
use crate::taskpod::{Phase, TaskPod, TaskState};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo cleanup                      delete Succeeded and Failed task pods
  asdo cleanup --older-than 2h --dry-run
  asdo cleanup --phase Failed
  asdo cleanup --task-id T001 --all --force   also a running one")]
pub struct CleanupArgs {
    /// Only pods that finished (or, if unfinished, were created) longer ago than this, e.g. 2h.
    #[arg(long, value_parser = crate::humantime::parse)]
    pub older_than: Option<Duration>,
    /// Only this phase (Succeeded or Failed; others need --all --force).
    #[arg(long, conflicts_with = "all")]
    pub phase: Option<String>,
    /// Only this task's pod (T001 or agent-t001, any case: as `logs`/`status`/`wait`).
    #[arg(long)]
    pub task_id: Option<String>,
    /// Extra label selector, added to app=agent-orchestrator.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every task pod, running ones too (needs --force).
    #[arg(long)]
    pub all: bool,
    /// Confirm deleting pods that may still be working.
    #[arg(long)]
    pub force: bool,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Before deleting a pod, write its full log and a JSON summary into DIR/<namespace>/;
    /// a pod whose log could not be saved is kept (exit 1).
    #[arg(long, value_name = "DIR")]
    pub save_logs: Option<std::path::PathBuf>,
    /// Print the removed tasks as task objects (a list, src/task.schema.json) instead of
    /// `pod/<name> deleted` lines.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// The field selector for the phases to delete; `None` means any phase.
fn phase_selector(args: &CleanupArgs) -> Result<Option<String>> {
    if args.all {
        if !args.force {
            return Err(Error::usage(
                "--all also deletes running tasks: add --force to confirm",
            ));
        }
        return Ok(None);
    }
    match args.phase.as_deref().map(Phase::parse).transpose()? {
        Some(p @ (Phase::Succeeded | Phase::Failed)) => Ok(Some(format!("status.phase={p}"))),
        Some(p) if args.force => Ok(Some(format!("status.phase={}", p.api_phase()))),
        Some(p) => Err(Error::usage(format!(
            "--phase {p} pods may still be working: add --force to confirm"
        ))),
        // Succeeded or Failed, said with what field selectors allow (no OR, but !=).
        None => Ok(Some(
            "status.phase!=Pending,status.phase!=Running,status.phase!=Unknown".into(),
        )),
    }
}

pub async fn run(global: &Global, args: CleanupArgs) -> Result<i32> {
    let scope = global.scope()?;
    let mut fields = phase_selector(&args)?;
    let labels = crate::task::selector(args.selector.as_deref())?;
    if let Some(id) = &args.task_id {
        // The one task-id rule of logs/status/wait: the pod is agent-<id lowercased>,
        // whatever case the id was spawned or typed in (its label keeps the spawn's case).
        let name = task::pod_name_for(id)?;
        let by_name = format!("metadata.name={name}");
        fields = Some(match fields {
            Some(f) => format!("{f},{by_name}"),
            None => by_name,
        });
    }
    let mut lp = ListParams::default().labels(&labels);
    if let Some(f) = &fields {
        lp = lp.fields(f);
    }
    let ns = &scope.namespace;
    let archive = match (&args.save_logs, args.dry_run) {
        (Some(dir), false) => Some(crate::archive::Archive::open(dir)?),
        _ => None,
    };
    let mut kept = 0;
    if global.runtime == crate::runtime::Kind::Local {
        return cleanup_local(&args, &labels, fields.as_deref(), archive).await;
    }
    let client = cluster::client(&scope.cluster).await?;
    let api = cluster::pods(&client, Some(ns))?;
    // Queued and Pending are one API phase: only a list can tell them apart.
    let exact = args
        .phase
        .as_deref()
        .and_then(|p| Phase::parse(p).ok())
        .filter(|p| matches!(p, Phase::Queued | Phase::Pending));
    let now = Timestamp::now();

    let deleted: Vec<TaskState> =
        if args.older_than.is_none() && !args.dry_run && archive.is_none() && exact.is_none() {
            let res = cluster::bounded(
                &format!("delete task pods in namespace {ns}"),
                api.delete_collection(&DeleteParams::default(), &lp),
            )
            .await?;
            match res {
                either::Either::Left(list) => list
                    .items
                    .iter()
                    .map(|p| TaskState::new(p, None, now))
                    .collect(),
                either::Either::Right(_) => vec![],
            }
        } else {
            let pods =
                cluster::list_all(&api, &lp, &format!("list task pods in namespace {ns}")).await?;
            let mut chosen: Vec<(String, String, TaskState)> = vec![];
            for p in pods
                .iter()
                .filter(|p| args.older_than.is_none_or(|min| age(p, now) >= min))
                .filter(|p| exact.is_none_or(|want| TaskPod(p).phase() == want))
            {
                let (Some(name), Some(uid)) = (p.metadata.name.clone(), p.metadata.uid.clone())
                else {
                    continue;
                };
                if let Some(a) = &archive {
                    match a.save(&api, p).await {
                        Ok(s) => eprintln!("pod/{name} log saved: {}", s.summary.display()),
                        Err(e) => {
                            eprintln!("pod/{name} kept: its log could not be saved: {e}");
                            kept += 1;
                            continue;
                        }
                    }
                }
                chosen.push((name, uid, TaskState::new(p, None, now)));
            }
            let mut deleted = Vec::new();
            for (name, uid, task) in chosen {
                if args.dry_run {
                    deleted.push(task);
                    continue;
                }
                // Exactly the pod that was judged (and archived): a new run under the same name
                // (spawn --replace meanwhile) fails the uid precondition and is left alone.
                match cluster::delete_pod_uid(&api, &name, &uid, ns).await {
                    Ok(true) => deleted.push(task),
                    // Someone else deleted it meanwhile: the goal is reached.
                    Ok(false) => {}
                    Err(Error::AlreadyExists(m)) => eprintln!("{m}"),
                    Err(e) => return Err(e),
                }
            }
            deleted
        };

    let verb = if args.dry_run {
        "deleted (dry run)"
    } else {
        "deleted"
    };
    match args.output {
        Some(f) => output::print(&deleted, f)?,
        None => {
            for t in &deleted {
                println!("pod/{} {verb}", t.pod);
            }
        }
    }
    if deleted.is_empty() && kept == 0 {
        eprintln!("No task pods to delete in namespace {ns}.");
    }
    Ok(if kept > 0 { exit::FAILURE } else { exit::OK })
}

/// The local runtime: the same choice of tasks (phase, id, selector, age), each task's
/// directory removed (its log archived first with --save-logs); a running one only with
/// --force, and then it is cancelled (SIGTERM, work in progress pushed) and kept until
/// it has ended.
async fn cleanup_local(
    args: &CleanupArgs,
    labels: &str,
    fields: Option<&str>,
    archive: Option<crate::archive::Archive>,
) -> Result<i32> {
    use crate::runtime::local;
    let store = local::Store::from_env()?;
    let now = Timestamp::now();
    // The field selector as built for the API server: phase terms and metadata.name.
    let field_ok = |p: &Pod| {
        fields.is_none_or(|f| {
            f.split(',').all(|term| {
                let phase = TaskPod(p).api_phase();
                let name = p.metadata.name.as_deref().unwrap_or_default();
                match term.split_once("!=") {
                    Some(("status.phase", v)) => phase != v,
                    _ => match term.split_once('=') {
                        Some(("status.phase", v)) => phase == v,
                        Some(("metadata.name", v)) => name == v,
                        _ => true,
                    },
                }
            })
        })
    };
    let (mut kept, mut deleted) = (0, Vec::new());
    for p in store.pods(labels)?.iter().filter(|p| field_ok(p)) {
        if args.older_than.is_some_and(|min| age(p, now) < min) {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let id = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(task::LABEL_TASK_ID))
            .cloned()
            .unwrap_or_default();
        let t = store.task(&id);
        if !TaskPod(p).is_finished() {
            if !args.dry_run && t.cancel()? {
                let how = if matches!(TaskPod(p).phase(), Phase::Pending | Phase::Queued) {
                    "while queued; its agent never starts"
                } else {
                    "(SIGTERM)"
                };
                eprintln!(
                    "pod/{name} cancelled {how}; it is removed by a cleanup once it has ended"
                );
            }
            kept += 1;
            continue;
        }
        if args.dry_run {
            deleted.push(name);
            continue;
        }
        if let Some(a) = &archive {
            let log = std::fs::read(t.log()).unwrap_or_default();
            match a.save_local(p, &log).await {
                Ok(s) => eprintln!("pod/{name} log saved: {}", s.summary.display()),
                Err(e) => {
                    eprintln!("pod/{name} kept: its log could not be saved: {e}");
                    kept += 1;
                    continue;
                }
            }
        }
        t.remove()?;
        deleted.push(name);
    }
    let verb = if args.dry_run {
        "deleted (dry run)"
    } else {
        "deleted"
    };
    for name in &deleted {
        println!("pod/{name} {verb}");
    }
    if deleted.is_empty() && kept == 0 {
        eprintln!(
            "No local tasks to delete in {}.",
            store.tasks_dir().display()
        );
    }
    Ok(if kept > 0 && archive.is_some() {
        exit::FAILURE
    } else {
        exit::OK
    })
}

/// Time since the task finished, or since the pod was created if it has not.
fn age(pod: &Pod, now: Timestamp) -> Duration {
    let finished = TaskPod(pod).finished();
    let since = finished.or(pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
    since.map_or(Duration::ZERO, |t| {
        Duration::from_secs(now.as_second().saturating_sub(t.as_second()).max(0) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> CleanupArgs {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: CleanupArgs,
        }
        let mut v = vec!["t"];
        v.extend(extra);
        T::try_parse_from(v).unwrap().a
    }

    #[test]
    fn selections() {
        assert_eq!(
            phase_selector(&args(&[])).unwrap().unwrap(),
            "status.phase!=Pending,status.phase!=Running,status.phase!=Unknown"
        );
        assert_eq!(
            phase_selector(&args(&["--phase", "failed"]))
                .unwrap()
                .unwrap(),
            "status.phase=Failed"
        );
        assert_eq!(phase_selector(&args(&["--all", "--force"])).unwrap(), None);
        assert_eq!(
            phase_selector(&args(&["--all"])).unwrap_err().exit_code(),
            2
        );
        assert_eq!(
            phase_selector(&args(&["--phase", "Running"]))
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            phase_selector(&args(&["--phase", "Bogus"]))
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
