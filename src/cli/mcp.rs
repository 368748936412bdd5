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
Tools: spawn_task, list_tasks, task_status, task_logs, wait_tasks, send_message,
answer_task, cleanup_tasks. Each declares an outputSchema and returns structuredContent.
Every tool argument is checked as the CLI's typed value before a child asdo runs; a
value never becomes a flag, and prompts and messages go to the child on stdin.
A client of the MCP Tasks extension (io.modelcontextprotocol/tasks) gets spawn_task and
wait_tasks as tasks (tasks/get, tasks/cancel); a wait_tasks call with a progressToken
gets a progress notification as each task ends."
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::argv::Argv;
    use crate::cli::Cli;

    /// Every global flag reaches the child, and as the value given: a global flag added
    /// to `Global` but not to `child_flags` fails here (only -v stays with the server,
    /// whose stderr is not the child's).
    #[test]
    fn the_child_gets_every_global_flag_as_given() {
        let given = [
            "asdo",
            "--kubeconfig=/k/config",
            "--context=ctx",
            "--namespace=ns",
            "--environment=stg",
            "--release-name=rel",
            "--connect-timeout=7s",
            "--request-timeout=9s",
            "mcp",
        ];
        let server = Cli::try_parse_from(given).unwrap();
        let mut argv = Argv::new("list");
        server.global.child_flags().push_onto(&mut argv);
        let words: Vec<String> = argv
            .into_args()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect();
        let child =
            Cli::try_parse_from(std::iter::once("asdo".to_string()).chain(words.clone())).unwrap();
        let (mut s, c) = (server.global, child.global);
        s.verbose = c.verbose;
        assert_eq!(format!("{s:?}"), format!("{c:?}"));
        let globals: Vec<String> = crate::cli::command()
            .get_arguments()
            .filter(|a| a.is_global_set() && a.get_id() != "verbose")
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        assert!(!globals.is_empty());
        for long in globals {
            assert!(
                words.iter().any(|w| w.starts_with(&format!("--{long}="))),
                "--{long} is a global flag the child never gets: {words:?}"
            );
        }
    }
}
