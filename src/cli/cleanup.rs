//! `asdo cleanup`: delete finished task pods (the engine, for both runtimes, is
//! `crate::cleanup`: one deletecollection call when the selection can be said with
//! selectors, so a CI job clearing 1,000 pods makes one request).

use std::time::Duration;

use clap::Args;

use super::Global;
use crate::cleanup::{self, Selection};
use crate::error::{Result, exit};
use crate::output::{self, Format};
use crate::runtime::Runtime;

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

pub async fn run(global: &Global, args: CleanupArgs) -> Result<i32> {
    let scope = global.scope()?;
    let sel = Selection::new(
        args.phase.as_deref(),
        args.all,
        args.force,
        args.task_id.as_deref(),
        args.older_than,
    )?;
    let labels = crate::task::selector(args.selector.as_deref())?;
    let archive = match (&args.save_logs, args.dry_run) {
        (Some(dir), false) => Some(crate::archive::Archive::open(dir)?),
        _ => None,
    };
    let rt = Runtime::connect(&scope).await?;
    let done = cleanup::run(&rt, &labels, &sel, args.dry_run, archive.as_ref()).await?;
    let verb = if args.dry_run {
        "deleted (dry run)"
    } else {
        "deleted"
    };
    match args.output {
        Some(f) => output::print(&done.deleted, f)?,
        None => {
            for t in &done.deleted {
                println!("pod/{} {verb}", t.pod);
            }
        }
    }
    if done.deleted.is_empty() && done.kept == 0 && done.cancelled == 0 {
        eprintln!("No {} to delete in {}.", rt.tasks_noun(), rt.place(false));
    }
    Ok(if done.kept > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}
