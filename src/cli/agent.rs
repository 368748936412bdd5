//! `asdo agent`: the container entrypoint. The work is in `crate::agent`; this is its flags.

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
#[command(after_help = help())]
pub struct AgentArgs {
    /// Print the resolved settings and the prompt (no secrets), then exit; runs nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: AgentArgs) -> Result<i32> {
    Ok(crate::agent::run(args.dry_run).await)
}

/// The env list and the exit codes, from the contract and the agent's table.
fn help() -> String {
    let codes: Vec<String> = crate::agent::exit::TABLE
        .iter()
        .map(|(c, m)| format!("{c} {m}"))
        .collect();
    format!(
        "Reads the task from the environment (the pod env contract):\n{}\
Prints `asdo: …` progress lines and ends with `asdo: done <sha>`, `asdo: done no-changes`\n\
or `asdo: failed <step>: <reason>`.\n\
Exit codes: {}.",
        crate::contract::vars_help(),
        codes.join(", ")
    )
}
