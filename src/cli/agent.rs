//! `asdo agent`: the container entrypoint. The work is in `crate::agent`; this is its flags.

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
#[command(
    after_help = "Reads the task from the environment (TASK_ID, GIT_REPO, GIT_BRANCH, TASK_CONTEXT_PATH,
TASK_PROMPT or TASK_PROMPT_FILE, TASK_SPEC_DIR, OPENCODE_MODEL, GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL,
GIT_SSH_KEY_DIR or GIT_TOKEN), prints `asdo: …` progress lines and ends with
`asdo: done <sha>`, `asdo: done no-changes` or `asdo: failed <step>: <reason>`.
Exit codes: 0 pushed (or nothing to change), 10 config, 11 clone/checkout, 12 agent,
13 commit, 14 push, 15 pr (pushed, but the forge refused the pull/merge request),
130 SIGINT, 143 SIGTERM."
)]
pub struct AgentArgs {
    /// Print the resolved settings and the prompt (no secrets), then exit; runs nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: AgentArgs) -> Result<i32> {
    Ok(crate::agent::run(args.dry_run).await)
}
