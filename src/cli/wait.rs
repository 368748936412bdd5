//! `asdo wait`: block until tasks end (one watch for all of them), print a line per
//! task as it ends, and optionally write spec-kit's delegation markers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Global;
use crate::error::{Error, Result};
use crate::hooks::{self, Hooks};
use crate::output::{self, Format};
use crate::runtime::Runtime;
use crate::verdict::Verdict;
use crate::wait;

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
    let req = wait::Request {
        wanted: wait::named(&args.tasks)?,
        all: args.all,
        any: args.any,
        timeout: args.timeout,
        report_dir: args.report_dir.clone(),
        hooks: Hooks::new(hooks_cfg),
    };
    let rt = Runtime::connect(&scope).await?;
    wait::run(&rt, req, |v| say(v, args.output)).await
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
