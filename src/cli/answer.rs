//! `asdo answer`: a person's answer to a running task's permission request or question.
//!
//! The model in the pod can read the OpenCode server's password and call its reply routes,
//! so an answer given there cannot be told from one the model gave itself. This goes
//! through the one channel the pod cannot write: an annotation on the pod, patched with the
//! caller's own Kubernetes credentials (task pods have no token). The kubelet writes the
//! pod's annotations into a read-only downwardAPI file, and the agent sends the reply.
//! The value building lives in `crate::agent::answers` beside its reader.

use clap::Args;

use super::Global;
use crate::agent::answers;
use crate::error::{Error, Result, exit};
use crate::runtime::Runtime;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo answer T001 per_2b6c4e1f9a001x once        approve the permission request, once
  asdo answer T001 per_2b6c4e1f9a001x reject      refuse it (the task fails)
  asdo answer T001 que_2b6c4e2aa6001y Postgres    answer a question with an option's label
  asdo answer T001 que_2b6c4e2aa6001y reject      refuse to answer it

The request id is in the task's log (`asdo logs T001`): `· permission … → waiting for a
person (…; asdo answer T001 per_… once|reject)` or `asdo: question que_…: \"…\"`. The
answer is an annotation on the pod (needs `patch` on pods); the agent sees it when the
kubelet refreshes the pod's annotations file, usually within a minute.")]
pub struct AnswerArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// The request, as the log names it: per_… (a permission) or que_… (a question).
    pub request: String,
    /// A permission: once or reject. A question: one answer per question it asked (an
    /// option's label or your own words), or reject.
    #[arg(required = true, num_args = 1..)]
    pub answer: Vec<String>,
}

pub async fn run(global: &Global, args: AnswerArgs) -> Result<i32> {
    let scope = global.scope()?;
    let pod = crate::task::pod_name_for(&args.task)?;
    let value = answers::person_value(&args.request, &args.answer, &who()).map_err(Error::usage)?;
    let key = format!("{}{}", crate::task::ANN_ANSWER_PREFIX, args.request);
    let rt = Runtime::connect(&scope).await?;
    let delivered = rt.answer(&pod, &key, &value).await?;
    eprintln!(
        "answered {} {delivered} — watch `{}`",
        args.request,
        rt.command(&format!("logs {}", args.task))
    );
    Ok(exit::OK)
}

/// Who answers, as this machine knows them: the local user name. The API server's audit
/// log has the identity the patch was made with.
fn who() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into())
}
