//! `asdo attach`: the task's live OpenCode session in the local TUI
//! (`opencode attach`), through a port-forward to the pod or (local runtime) straight at
//! the task's own 127.0.0.1 port; `--print-url` only prints where the server is (and
//! keeps the forward open), for a browser or another client.

use std::path::{Path, PathBuf};

use clap::Args;

use super::Global;
use crate::contract::PASSWORD_ENV;
use crate::error::{Error, Result, exit};
use crate::remote;
use crate::runtime::{Kind, Runtime};
use crate::taskpod::TaskPod;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo attach T001               the task's session in the local OpenCode TUI
  asdo attach T001 --print-url   print http://127.0.0.1:<port> and keep the forward open
  asdo --runtime local attach T001 --print-url   a local task's own server (no forward)

The password comes from --password-file, else OPENCODE_SERVER_PASSWORD, else the
Secret the pod takes it from (needs `get` on that Secret; a local task: its 0600
password file). It reaches opencode through its environment, never its arguments.
Needs `create` on pods/portforward (not on the local runtime).")]
pub struct AttachArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// Print the server's local URL and stay (keeping the forward open) until Ctrl-C or
    /// the task ends.
    #[arg(long)]
    pub print_url: bool,
    /// Local port the forward listens on (127.0.0.1); 0 picks a free one. Not on the
    /// local runtime, whose tasks listen on 127.0.0.1 themselves.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// File holding the server password (instead of the pod's Secret).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

pub async fn run(global: &Global, args: AttachArgs) -> Result<i32> {
    let scope = global.scope()?;
    crate::task::pod_name_for(&args.task)?;
    if scope.runtime == Kind::Local && args.port != 0 {
        return Err(crate::runtime::local::remote::port_refused(&args.task));
    }
    let password = remote::password_override(args.password_file.as_deref())?;
    let opencode = if args.print_url {
        None
    } else {
        Some(find_opencode()?)
    };
    let rt = Runtime::connect(&scope).await?;
    let r = rt.remote(&args.task, password, args.port).await?;
    let session = r
        .session
        .as_deref()
        .map_or(String::new(), |s| format!(", session {s}"));
    let Some(opencode) = opencode else {
        let url = r.endpoint.url();
        println!("{url}");
        let what = if r.endpoint.is_forward() {
            format!("forwarding {url} -> pod/{} port {}", r.pod, r.port)
        } else {
            format!("local task {} serves {url}", r.task)
        };
        eprintln!(
            "{what}{session}; user opencode, password from {}; Ctrl-C stops",
            r.password_from
        );
        return tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(exit::OK),
            done = rt.ended(&r.pod) => {
                let phase = done.map(|p| TaskPod(&p).phase());
                let closed = if r.endpoint.is_forward() {
                    "the forward is closed"
                } else {
                    "its OpenCode server is gone"
                };
                Err(Error::other(format!(
                    "task {} ended (pod {}): {closed}; read what it did with `{}`",
                    r.task,
                    phase.map_or("deleted".to_string(), |p| format!("phase {p}")),
                    r.logs
                )))
            }
        };
    };
    let mut cmd = tokio::process::Command::new(&opencode);
    cmd.arg("attach").arg(r.endpoint.url());
    if let Some(s) = &r.session {
        // One argument, `--session=<id>`: the id (checked to be `ses_…` when read from
        // the log) can never be taken for an option of its own.
        cmd.arg(format!("--session={s}"));
    }
    // The password goes through the environment: argv is visible to every user.
    cmd.env(PASSWORD_ENV, r.password());
    let status = cmd
        .status()
        .await
        .map_err(|e| Error::other(format!("cannot run {}: {e}", opencode.display())))?;
    Ok(status.code().unwrap_or(exit::FAILURE))
}

/// `opencode` on PATH, or how to install it.
fn find_opencode() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("opencode"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Error::other(format!(
                "opencode is not on PATH: install it with `npm install -g {}`, or use `asdo attach --print-url` with another client",
                crate::opencode::PACKAGE
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
