//! `asdo diff`: what a task changed, as `git diff <base>...<task commit>` in the user's
//! own clone (one branch fetched into refs/asdo/tasks/<id>; nothing else touched).

use clap::Args;

use super::Global;
use crate::error::{Result, exit};
use crate::localgit;
use crate::results::{self, Given};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo diff T001                 the task's changes since it branched off
  asdo diff T001 --stat
  asdo diff T001 --base release-1.2
  asdo diff T001 --repo git@github.com:org/app.git --branch specs/001-auth/T001-async   pod already cleaned up

Run it inside a clone of the task's repository.")]
pub struct DiffArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// Only the diffstat.
    #[arg(long)]
    pub stat: bool,
    /// Diff against this branch, tag or commit (default: recorded at spawn, else the remote's default branch).
    #[arg(long)]
    pub base: Option<String>,
    /// The task's repository (default: the pod's annotation).
    #[arg(long)]
    pub repo: Option<String>,
    /// The task's branch (default: the pod's annotation).
    #[arg(long)]
    pub branch: Option<String>,
}

pub async fn run(global: &Global, args: DiffArgs) -> Result<i32> {
    let scope = global.scope()?;
    let given = Given {
        repo: args.repo.clone(),
        branch: args.branch.clone(),
    };
    let task = results::lookup(&scope, &args.task, &given).await?;
    localgit::toplevel()?;
    let range = task.diff_range(args.base.as_deref())?;
    // The commit the agent reported is the task's result; a branch that moved on since
    // (a second run, a human push) is diffed at that commit, and we say so.
    if range.branch_moved()? {
        eprintln!(
            "note: branch {} has moved past the task's commit {}; diffing the task's commit",
            task.branch, range.tip
        );
    }
    localgit::diff(&range.base, &range.tip, args.stat)?;
    Ok(exit::OK)
}
