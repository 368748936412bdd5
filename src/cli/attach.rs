//! `asdo attach`: the task's live OpenCode session in the local TUI
//! (`opencode attach`), through a port-forward to the pod; `--print-url` only
//! serves the forward, for a browser or another client.

use std::path::{Path, PathBuf};

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::wait::await_condition;

use super::Global;
use crate::cluster;
use crate::contract::PASSWORD_ENV;
use crate::error::{Error, Result, exit};
use crate::remote;
use crate::taskpod::TaskPod;

/// The CLI `opencode attach` needs, as the task image pins it.
const OPENCODE_PACKAGE: &str = "opencode-ai@1.18.33";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo attach T001               the task's session in the local OpenCode TUI
  asdo attach T001 --print-url   print http://127.0.0.1:<port> and keep the forward open

The password comes from --password-file, else OPENCODE_SERVER_PASSWORD, else the
Secret the pod takes it from (needs `get` on that Secret). It reaches opencode
through its environment, never its arguments. Needs `create` on pods/portforward.")]
pub struct AttachArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// Print the local URL and keep the forward open until Ctrl-C (or the task ends).
    #[arg(long)]
    pub print_url: bool,
    /// Local port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// File holding the server password (instead of the pod's Secret).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

pub async fn run(global: &Global, args: AttachArgs) -> Result<i32> {
    let scope = global.scope()?;
    crate::task::pod_name_for(&args.task)?;
    let password = remote::password_override(args.password_file.as_deref())?;
    let opencode = if args.print_url {
        None
    } else {
        Some(find_opencode()?)
    };
    let ns = &scope.namespace;
    let client = cluster::client(&scope.cluster).await?;
    let r = remote::open(&client, ns, &args.task, password, args.port).await?;
    let session = r
        .session
        .as_deref()
        .map_or(String::new(), |s| format!(", session {s}"));
    let Some(opencode) = opencode else {
        println!("{}", r.forward.url());
        eprintln!(
            "forwarding {} -> pod/{} port {}{session}; user opencode, password from {}; Ctrl-C stops",
            r.forward.url(),
            r.pod,
            r.port,
            r.password_from
        );
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        // The watch failing (the API server restarting, this process out of file
        // descriptors) says nothing about the pod: watch again after a pause, and only
        // a pod seen finished or gone ends the forward.
        let ended = async {
            let mut pause = std::time::Duration::from_millis(500);
            loop {
                match await_condition(api.clone(), &r.pod, |p: Option<&Pod>| {
                    p.is_none_or(|p| TaskPod(p).is_finished())
                })
                .await
                {
                    Ok(p) => return p,
                    Err(e) => {
                        tracing::debug!("watching pod {}: {e}; watching again", r.pod);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(std::time::Duration::from_secs(10));
                    }
                }
            }
        };
        return tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(exit::OK),
            done = ended => {
                let phase = done.map(|p| TaskPod(&p).phase());
                Err(Error::other(format!(
                    "task {} ended (pod {}): the forward is closed; read what it did with `asdo logs {} -n {ns}`",
                    r.task,
                    phase.map_or("deleted".to_string(), |p| format!("phase {p}")),
                    r.task
                )))
            }
        };
    };
    let mut cmd = tokio::process::Command::new(&opencode);
    cmd.arg("attach").arg(r.forward.url());
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
                "opencode is not on PATH: install it with `npm install -g {OPENCODE_PACKAGE}`, or use `asdo attach --print-url` with another client"
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
