//! `asdo send`: a follow-up message into a running task's OpenCode session, through a
//! port-forward (or, local runtime, straight at the task's 127.0.0.1 port); the reply
//! streams to stdout, and the command returns when the session is idle again. This is
//! how a main session steers a task.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Global;
use crate::error::{Error, Result, exit};
use crate::output::{self, Format};
use crate::remote;
use crate::runtime::Runtime;
use crate::send::{self, SendOutcome};
use crate::taskpod::TaskState;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo send T001 \"Also add a test for the empty input\"
  asdo send T001 --file followup.md --timeout 30m

A message is at most 4 MiB. --timeout bounds the whole command (finding the pod,
the port-forward, the post and the answer). On the local runtime the password is the
task's own 0600 file unless --password-file or OPENCODE_SERVER_PASSWORD is given.

Exit 0 once the session has answered and is idle, 1 if the session reports an
error or the task is not running, 2 on bad input (nothing sent), 124 if
--timeout passes first.")]
pub struct SendArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// The message.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub message: Option<String>,
    /// Read the message from this file (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Give up after this long, whatever is still in flight (the whole command).
    #[arg(long, default_value = "30m", value_parser = crate::humantime::parse)]
    pub timeout: Duration,
    /// File holding the server password (instead of the pod's Secret).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Print one object when the session is idle again instead of streaming the reply:
    /// `{task, session_id, outcome, reply, error}` (`task` is the task object after the
    /// answer, null on a timeout; `outcome` answered|failed|timed-out). Exit codes as without.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `send -o json|yaml`: the task after the message, and the reply.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub task: Option<TaskState>,
    pub session_id: Option<String>,
    /// `answered`, `failed` or `timed-out`.
    pub outcome: &'static str,
    /// The session's answer, as it streamed.
    pub reply: String,
    /// The session's error, when it failed.
    pub error: Option<String>,
}

pub async fn run(global: &Global, args: SendArgs) -> Result<i32> {
    let scope = global.scope()?;
    crate::task::pod_name_for(&args.task)?;
    let text = send::message_text(args.message.as_deref(), args.file.as_deref())?;
    let password = remote::password_override(args.password_file.as_deref())?;
    // --timeout bounds the whole command, not only the wait for the answer: a Secret or
    // log read, a port-forward or a server that never answers ends it too, and whatever
    // is in flight is dropped (cancelled) with the future.
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut reply = String::new();
    let mut session = None;
    let quiet = args.output.is_some();
    let mut logs = format!("asdo logs {}", args.task);
    let work = async {
        let rt = Runtime::connect(&scope).await?;
        logs = rt.command(&format!("logs {}", args.task));
        let r = rt.remote(&args.task, password, 0).await?;
        let posted = send::post(&r, &text).await?;
        session = Some(posted.session().to_string());
        eprintln!(
            "sent to task {} (session {}); the reply follows",
            r.task,
            posted.session()
        );
        let mut stdout = std::io::stdout();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome = posted
            .wait(left, |s| {
                if quiet {
                    reply.push_str(s);
                } else {
                    let _ = stdout.write_all(s.as_bytes());
                    let _ = stdout.flush();
                }
            })
            .await?;
        // The task as it is now (its pod and log tail), within what --timeout leaves.
        let state = if quiet {
            Some(rt.task(&args.task).await?.1)
        } else {
            None
        };
        Ok::<_, Error>((r.task.clone(), outcome, state))
    };
    let (task, outcome, state) = match tokio::time::timeout_at(deadline, work).await {
        Ok(done) => done?,
        Err(_) => (args.task.clone(), SendOutcome::TimedOut, None),
    };
    if let Some(f) = args.output {
        let (word, error) = match &outcome {
            SendOutcome::Answered => ("answered", None),
            SendOutcome::Failed(m) => ("failed", Some(m.clone())),
            SendOutcome::TimedOut => ("timed-out", None),
        };
        output::print(
            &Sent {
                task: state,
                session_id: session,
                outcome: word,
                reply,
                error,
            },
            f,
        )?;
    }
    match outcome {
        SendOutcome::Answered => {
            eprintln!("task {task}: the session is idle again");
            Ok(exit::OK)
        }
        SendOutcome::Failed(msg) => Err(Error::other(format!(
            "task {task}: the session failed: {msg}"
        ))),
        SendOutcome::TimedOut => {
            eprintln!(
                "error: task {task}: no answer within {} (--timeout); a message already sent stays queued in the session (watch it with `{logs}`)",
                crate::humantime::short(args.timeout),
            );
            // --timeout passed first (as `asdo wait`).
            Ok(exit::TIMEOUT)
        }
    }
}
