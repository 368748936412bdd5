//! `asdo apply`: merge finished tasks' results into the current branch, in the order
//! given, stopping at the first conflict with git's state left as git leaves it.
//! Every task is checked (finished, succeeded, fetched) before the first merge, so a
//! task that is still running never leaves the others half-applied.

use clap::Args;

use super::Global;
use crate::error::{Error, Result, exit};
use crate::localgit::{self, Merge};
use crate::results::{self, Given};
use crate::taskpod::Phase;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo wait T001 T002 && asdo apply T001 T002

Run it inside a clone of the task's repository, on the branch that should receive the work.
Exit codes: 0 all merged (or had nothing to merge), 1 a task is not finished/succeeded, or a merge conflicted.")]
pub struct ApplyArgs {
    /// Task ids (T001) or pod names (agent-t001), merged in this order.
    #[arg(required = true)]
    pub tasks: Vec<String>,
}

pub async fn run(global: &Global, args: ApplyArgs) -> Result<i32> {
    let scope = global.scope()?;
    for t in &args.tasks {
        crate::task::pod_name_for(t)?;
    }
    localgit::toplevel()?;
    localgit::ensure_clean()?;

    // 1. Every task finished and succeeded; the commit each one reported.
    let mut plan = Vec::new();
    for t in &args.tasks {
        let task = results::lookup(&scope, t, &Given::default()).await?;
        let state = task.state.as_ref();
        let phase = state.map_or(Phase::Unknown, |s| s.phase);
        let no_changes = state.is_some_and(|s| s.reason.as_deref() == Some("no-changes"));
        match (task.commit(), phase) {
            (Some(sha), Phase::Succeeded) => plan.push((task.clone(), Some(sha.to_string()))),
            (None, Phase::Succeeded) if no_changes => plan.push((task.clone(), None)),
            (_, Phase::Succeeded) => {
                return Err(Error::other(format!(
                    "task {} succeeded but its log names no commit (asdo: done …); check `asdo logs {}{}`, nothing was merged",
                    task.id,
                    task.id,
                    crate::error::scope_flags()
                )));
            }
            (_, Phase::Failed) => {
                return Err(Error::other(format!(
                    "task {} failed: nothing to apply; see `asdo logs {}{}` (nothing was merged)",
                    task.id,
                    task.id,
                    crate::error::scope_flags()
                )));
            }
            _ => {
                return Err(Error::other(format!(
                    "task {} is {phase}, not finished: run `asdo wait {}{}` first (nothing was merged)",
                    task.id,
                    task.id,
                    crate::error::scope_flags()
                )));
            }
        }
    }
    // 2. Fetch them all before merging any, so a fetch failure changes nothing.
    for (task, sha) in &plan {
        if let Some(sha) = sha {
            task.fetch()?;
            if !localgit::has_commit(sha)? {
                return Err(Error::other(format!(
                    "task {}'s commit {sha} is not on branch {} of {} (was the branch reset?); nothing was merged",
                    task.id, task.branch, task.repo
                )));
            }
        }
    }
    // 3. Merge one by one.
    for (i, (task, sha)) in plan.iter().enumerate() {
        let Some(sha) = sha else {
            println!("{} no changes, skipped", task.id);
            continue;
        };
        let msg = format!("Merge task {} ({})", task.id, task.branch);
        match localgit::merge(sha, &msg)? {
            Merge::Merged { files } => println!("{} merged {sha} ({files} files changed)", task.id),
            Merge::UpToDate => println!("{} already merged", task.id),
            Merge::Conflict(files) => {
                let rest: Vec<&str> = plan[i + 1..].iter().map(|(t, _)| t.id.as_str()).collect();
                let then = if rest.is_empty() {
                    String::new()
                } else {
                    format!("; then `asdo apply {}`", rest.join(" "))
                };
                return Err(Error::other(format!(
                    "task {} conflicted in {}: the merge is left in progress; resolve and `git commit`, or `git merge --abort`{then}",
                    task.id,
                    files.join(", ")
                )));
            }
        }
    }
    Ok(exit::OK)
}
