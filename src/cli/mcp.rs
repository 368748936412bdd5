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
Tools: spawn_task, list_tasks, task_status, task_logs, wait_tasks, send_message, cleanup_tasks."
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
    let mut global_args = vec![
        "--release-name".to_string(),
        global.release_name.clone(),
        "--connect-timeout".into(),
        format!("{}ms", global.connect_timeout.as_millis()),
        "--request-timeout".into(),
        format!("{}ms", global.request_timeout.as_millis()),
    ];
    if let Some(k) = &global.kubeconfig {
        global_args.extend(["--kubeconfig".into(), k.display().to_string()]);
    }
    if let Some(c) = &global.context {
        global_args.extend(["--context".into(), c.clone()]);
    }
    mcp::serve(mcp::Defaults {
        exe,
        global_args,
        namespace: global.namespace.clone(),
        environment: global.environment.clone(),
    })
    .await?;
    Ok(exit::OK)
}
