//! `asdo mcp`: serve asdo's verbs as MCP tools on stdio (see `crate::mcp`). The
//! global flags given here (--kubeconfig, --context, -n, -e, …) are every tool's
//! defaults; a tool's `namespace`/`environment` arguments override them per call.

use clap::Args;

use super::Global;
use crate::error::{Error, Result, exit};
use crate::mcp;

#[derive(Debug, Args)]
#[command(
    after_help = "Register it with an MCP client, e.g. OpenCode (`asdo init opencode` writes this):
  \"mcp\": {\"asdo\": {\"type\": \"local\", \"command\": [\"asdo\", \"mcp\"]}}
Tools: spawn_task, list_tasks, task_status, task_logs, wait_tasks, send_message, cleanup_tasks.
Every tool argument is checked as the CLI's typed value before a child asdo runs; a
value never becomes a flag, and prompts and messages go to the child on stdin."
)]
pub struct McpArgs {}

pub async fn run(global: &Global, _args: McpArgs) -> Result<i32> {
    // Resolve now: a bad -e is a usage error before the server starts.
    global.scope()?;
    let exe = std::env::current_exe().map_err(|e| {
        Error::other(format!(
            "cannot find the asdo binary to run tools with: {e}"
        ))
    })?;
    mcp::serve(mcp::Defaults {
        exe,
        globals: global.child_flags(),
    })
    .await?;
    Ok(exit::OK)
}
