//! `asdo status`: one task's state, the agent's last marker, and the pod's recent
//! Events (the only place the reason a pod is stuck Pending is written down).

use clap::Args;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;

use super::Global;
use crate::error::{Result, exit};
use crate::humantime;
use crate::output::{self, Format};
use crate::runtime::Runtime;
use crate::task;
use crate::taskpod::{TaskPod, TaskState};

#[derive(Debug, Args)]
#[command(after_help = "Example:
  asdo status T001")]
pub struct StatusArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
    /// Print the task object (src/task.schema.json) instead of the description.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

pub async fn run(global: &Global, args: StatusArgs) -> Result<i32> {
    let scope = global.scope()?;
    task::pod_name_for(&args.task)?;
    let rt = Runtime::connect(&scope).await?;
    let (pod, task) = rt.task(&args.task).await?;
    if let Some(f) = args.output {
        output::print(&task, f)?;
        return Ok(exit::OK);
    }
    let events = rt.events(TaskPod(&pod).name()).await;
    print!(
        "{}",
        describe(&pod, &task, events.as_deref().ok(), Timestamp::now())
    );
    Ok(exit::OK)
}

fn ago(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or("-".into(), |t| {
        let secs = now.as_second().saturating_sub(t.as_second()).max(0) as u64;
        format!(
            "{t} ({} ago)",
            humantime::short(std::time::Duration::from_secs(secs))
        )
    })
}

fn describe(pod: &Pod, t: &TaskState, events: Option<&[Event]>, now: Timestamp) -> String {
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let view = TaskPod(pod);
    let mut rows = vec![
        ("Task", t.id.clone()),
        (
            "Pod",
            format!(
                "{} (namespace {})",
                t.pod,
                Some(t.namespace.as_str())
                    .filter(|n| !n.is_empty())
                    .unwrap_or("-")
            ),
        ),
        ("Phase", view.api_phase().to_string()),
        ("Status", t.status.clone()),
        (
            "Exit code",
            match (t.exit_code, view.termination_reason()) {
                (Some(c), Some(r)) => format!("{c} ({r})"),
                (Some(c), None) => c.to_string(),
                (None, _) => "-".into(),
            },
        ),
        ("Branch", or_dash(t.branch.as_deref())),
        ("Repo", or_dash(t.repo.as_deref())),
        ("Node", or_dash(t.node.as_deref())),
        ("Created", ago(t.created, now)),
        ("Started", ago(t.started, now)),
        ("Finished", ago(t.finished, now)),
    ];
    if let Some(q) = &t.queue {
        rows.push(("Queue", q.clone()));
    }
    if let Some((reason, message)) = view.waiting_reason() {
        rows.push(("Waiting", format!("{reason}: {message}")));
    }
    let status = pod.status.as_ref();
    if let Some(reason) = status.and_then(|s| s.reason.clone()) {
        rows.push((
            "Reason",
            format!(
                "{reason}: {}",
                status.and_then(|s| s.message.clone()).unwrap_or_default()
            ),
        ));
    }
    rows.push(("Last marker", or_dash(t.last_marker.as_deref())));
    if let Some(url) = &t.pr_url {
        rows.push(("Pull request", url.clone()));
    }
    // What the agent is doing now, from its step and totals lines.
    if let Some(step) = &t.last_step {
        rows.push(("Last step", step.clone()));
    }
    if let (Some(files), Some(tokens_in), Some(tokens_out)) = (t.files, t.tokens_in, t.tokens_out) {
        let sum = crate::marker::Summary {
            files,
            tokens_in,
            tokens_out,
            cost: t.cost,
        };
        rows.push(("Agent", sum.to_string()));
    }
    let mut out: String = rows
        .iter()
        .map(|(k, val)| format!("{:<12} {val}\n", format!("{k}:")))
        .collect();
    out.push_str("Events:\n");
    match events {
        None => out.push_str("  (cannot list events here)\n"),
        Some([]) => out.push_str("  <none>\n"),
        Some(evs) => {
            for e in evs {
                let when = e
                    .last_timestamp
                    .as_ref()
                    .or(e.first_timestamp.as_ref())
                    .map(|t| t.0);
                out.push_str(&format!(
                    "  {:<8} {:<20} {:<8} {}\n",
                    e.type_.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("-"),
                    when.map_or("-".into(), |t| humantime::short(
                        std::time::Duration::from_secs(
                            now.as_second().saturating_sub(t.as_second()).max(0) as u64
                        )
                    )),
                    e.message.as_deref().unwrap_or("").trim()
                ));
            }
        }
    }
    out
}
