//! `asdo send`: a follow-up message into a running task's OpenCode session,
//! through a port-forward; the reply streams to stdout, and the command returns
//! when the session is idle again. This is how a main session steers a task.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Global;
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::remote::{self, SendOutcome};

/// Exit code when --timeout passes first (as `asdo wait`).
const TIMEOUT_EXIT: i32 = 124;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo send T001 \"Also add a test for the empty input\"
  asdo send T001 --file followup.md --timeout 30m

Exit 0 once the session has answered and is idle, 1 if the session reports an
error or the task is not running, 2 on bad input (nothing sent), 124 if --timeout
passes first.")]
pub struct SendArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// The message.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub message: Option<String>,
    /// Read the message from this file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Give up waiting for the answer after this long.
    #[arg(long, default_value = "30m", value_parser = crate::humantime::parse)]
    pub timeout: Duration,
    /// File holding the server password (instead of the pod's Secret).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// The message from the argument or the file, refused when empty: checked before any call.
pub fn message_text(message: Option<&str>, file: Option<&std::path::Path>) -> Result<String> {
    let text = match (message, file) {
        (Some(m), _) => m.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Error::usage(format!("cannot read --file {}: {e}", f.display())))?,
        (None, None) => return Err(Error::usage("give the message, or --file FILE")),
    };
    if text.trim().is_empty() {
        return Err(Error::usage("the message is empty"));
    }
    Ok(text)
}

pub async fn run(global: &Global, args: SendArgs) -> Result<i32> {
    let scope = global.scope()?;
    crate::task::pod_name_for(&args.task)?;
    let text = message_text(args.message.as_deref(), args.file.as_deref())?;
    let password = remote::password_override(args.password_file.as_deref())?;
    let client = cluster::client(&scope.cluster).await?;
    let r = remote::open(&client, &scope.namespace, &args.task, password, 0).await?;
    let posted = remote::post(&r, &text).await?;
    eprintln!(
        "sent to task {} (session {}); the reply follows",
        r.task,
        posted.session()
    );
    let mut stdout = std::io::stdout();
    let outcome = posted
        .wait(args.timeout, |s| {
            let _ = stdout.write_all(s.as_bytes());
            let _ = stdout.flush();
        })
        .await?;
    match outcome {
        SendOutcome::Answered => {
            eprintln!("task {}: the session is idle again", r.task);
            Ok(exit::OK)
        }
        SendOutcome::Failed(msg) => Err(Error::other(format!(
            "task {}: the session failed: {msg}",
            r.task
        ))),
        SendOutcome::TimedOut => {
            eprintln!(
                "error: task {}: no answer within {}; the message stays queued in the session (watch it with `asdo logs {}`)",
                r.task,
                crate::humantime::short(args.timeout),
                r.task
            );
            Ok(TIMEOUT_EXIT)
        }
    }
}
