//! `asdo status`: one task's state, the agent's last marker, and the pod's recent
//! Events (the only place the reason a pod is stuck Pending is written down).

use clap::Args;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;

use super::Global;
use crate::cluster;
use crate::error::{Result, exit};
use crate::follow;
use crate::humantime;
use crate::task::{self, ANN_BRANCH, ANN_REPO};

#[derive(Debug, Args)]
#[command(after_help = "Example:
  asdo status T001")]
pub struct StatusArgs {
    /// Task id (T001) or pod name (agent-t001).
    pub task: String,
}

pub async fn run(global: &Global, args: StatusArgs) -> Result<i32> {
    let scope = global.scope()?;
    let name = task::pod_name_for(&args.task)?;
    let ns = &scope.namespace;
    let client = cluster::client(&scope.cluster).await?;
    let api = cluster::pods(&client, Some(ns))?;
    let pod = cluster::task_pod(&api, &name, ns).await?;
    let verdict = crate::verdict::verdict(&api, &pod).await;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let events = cluster::bounded(&format!("list events of pod {name}"), events.list(&lp))
        .await
        .map(|l| l.items);
    print!(
        "{}",
        describe(&pod, &verdict, events.as_deref().ok(), Timestamp::now())
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

fn describe(
    pod: &Pod,
    v: &crate::verdict::Verdict,
    events: Option<&[Event]>,
    now: Timestamp,
) -> String {
    let ann = |k: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k).cloned())
            .unwrap_or_else(|| "-".into())
    };
    let status = pod.status.as_ref();
    let terminated = follow::agent_status(pod).and_then(|c| c.state.as_ref()?.terminated.as_ref());
    let mut rows = vec![
        ("Task", v.task.clone()),
        (
            "Pod",
            format!(
                "{} (namespace {})",
                v.pod,
                pod.metadata.namespace.as_deref().unwrap_or("-")
            ),
        ),
        ("Phase", follow::phase(pod).to_string()),
        (
            "Exit code",
            match (follow::exit_code(pod), follow::termination_reason(pod)) {
                (Some(c), Some(r)) => format!("{c} ({r})"),
                (Some(c), None) => c.to_string(),
                (None, _) => "-".into(),
            },
        ),
        ("Branch", ann(ANN_BRANCH)),
        ("Repo", ann(ANN_REPO)),
        (
            "Node",
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "Created",
            ago(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        ),
        (
            "Started",
            ago(status.and_then(|s| s.start_time.as_ref()).map(|t| t.0), now),
        ),
        (
            "Finished",
            ago(
                terminated.and_then(|t| t.finished_at.as_ref()).map(|t| t.0),
                now,
            ),
        ),
    ];
    if let Some((reason, message)) = follow::waiting_reason(pod) {
        rows.push(("Waiting", format!("{reason}: {message}")));
    }
    if let Some(reason) = status.and_then(|s| s.reason.clone()) {
        rows.push((
            "Reason",
            format!(
                "{reason}: {}",
                status.and_then(|s| s.message.clone()).unwrap_or_default()
            ),
        ));
    }
    rows.push((
        "Last marker",
        v.marker.as_ref().map_or("-".into(), |m| m.to_string()),
    ));
    if let Some(url) = crate::marker::pr_url(&v.log_tail) {
        rows.push(("Pull request", url));
    }
    // What the agent is doing now, from its step and totals lines.
    if let Some(step) = crate::marker::last_step(&v.log_tail) {
        rows.push(("Last step", step.to_string()));
    }
    if let Some(sum) = crate::marker::last_summary(&v.log_tail) {
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
