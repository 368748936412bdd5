//! `asdo list`: tasks as a table (or name, or the task objects as json/yaml), from paged
//! list calls and, where the output shows what the agent printed, the end of each log.

use std::time::Duration;

use clap::Args;
use k8s_openapi::jiff::Timestamp;

use super::{Global, Output};
use crate::error::{Result, exit};
use crate::humantime;
use crate::output::{self, Format};
use crate::runtime::Runtime;
use crate::runtime::tasks::{Query, Tails};
use crate::taskpod::{Phase, TaskState};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo list
  asdo list --phase Failed -o wide
  asdo list -A -o name
  asdo list -o json | jq -r '.[] | select(.phase == \"Failed\") | .id'

STATUS is the phase and, in brackets, why (as kubectl's): Pending (ImagePullBackOff),
Failed (no-changes), Failed (OOMKilled), Queued (team-a). STEP is a running agent's last step.
-o json|yaml prints the task objects (src/task.schema.json); the Pods themselves:
  kubectl get pods -l app=agent-orchestrator -o json")]
pub struct ListArgs {
    /// Output format: wide adds NODE, IMAGE, REPO, TOKENS, COST and PR; json/yaml print the
    /// task objects (a list); name prints pod/<name>.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Only tasks in this phase (Queued, Pending, Running, Succeeded, Failed, Unknown).
    #[arg(long)]
    pub phase: Option<String>,
    /// Extra label selector, added to app=agent-orchestrator.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// List task pods in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// The longest STEP cell; a step line can be a whole shell command.
const STEP_MAX: usize = 60;

pub async fn run(global: &Global, args: ListArgs) -> Result<i32> {
    let scope = global.scope()?;
    let phase = args.phase.as_deref().map(Phase::parse).transpose()?;
    let labels = crate::task::selector(args.selector.as_deref())?;
    let rt = Runtime::connect(&scope).await?;
    let tails = match args.output {
        Some(Output::Name) => Tails::NamesOnly,
        Some(_) => Tails::EverRan,
        None => Tails::Running,
    };
    let found = rt
        .tasks(&Query {
            labels: &labels,
            phase,
            all_namespaces: args.all_namespaces,
            tails,
        })
        .await?;
    let empty = format!(
        "No {} found in {}.",
        rt.tasks_noun(),
        rt.place(args.all_namespaces)
    );
    print_tasks(&args, &found.tasks, &found.names, &empty, Timestamp::now())?;
    Ok(exit::OK)
}

/// One printer for both runtimes: names, the task objects, or the table.
fn print_tasks(
    args: &ListArgs,
    tasks: &[TaskState],
    names: &[(String, String)],
    empty: &str,
    now: Timestamp,
) -> Result<()> {
    match args.output {
        Some(Output::Name) => {
            for (_, name) in names {
                println!("pod/{name}");
            }
        }
        Some(Output::Json) => output::print(&tasks, Format::Json)?,
        Some(Output::Yaml) => output::print(&tasks, Format::Yaml)?,
        _ if tasks.is_empty() => eprintln!("{empty}"),
        _ => {
            let wide = args.output == Some(Output::Wide);
            let cells = tasks
                .iter()
                .map(|t| row(t, wide, args.all_namespaces, now))
                .collect();
            print!("{}", layout(header(wide, args.all_namespaces), cells));
        }
    }
    Ok(())
}

fn since(t: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let t = t?;
    Some(Duration::from_secs(
        now.as_second().saturating_sub(t.as_second()).max(0) as u64,
    ))
}

fn header(wide: bool, with_ns: bool) -> Vec<String> {
    let mut header = vec![];
    if with_ns {
        header.push("NAMESPACE");
    }
    header.extend(["TASK", "POD", "STATUS", "EXIT", "AGE", "DURATION", "BRANCH"]);
    if wide {
        header.extend(["NODE", "IMAGE", "REPO", "TOKENS", "COST", "PR"]);
    }
    header.push("STEP");
    header.into_iter().map(String::from).collect()
}

/// One task's table cells, in `header` order.
fn row(t: &TaskState, wide: bool, with_ns: bool, now: Timestamp) -> Vec<String> {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "<none>".into());
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut row = vec![];
    if with_ns {
        row.push(t.namespace.clone());
    }
    row.extend([
        t.id.clone(),
        t.pod.clone(),
        t.status.clone(),
        or_dash(t.exit_code.map(|c| c.to_string())),
        or_dash(since(t.created, now).map(humantime::short)),
        or_dash(
            t.duration_seconds
                .map(|s| humantime::short(Duration::from_secs(s))),
        ),
        or_none(&t.branch),
    ]);
    if wide {
        row.extend([
            or_none(&t.node),
            t.image.clone().unwrap_or_default(),
            or_none(&t.repo),
            or_dash(
                t.tokens_in
                    .zip(t.tokens_out)
                    .map(|(i, o)| format!("{i}/{o}")),
            ),
            or_dash(t.cost.map(|c| format!("${c:.4}"))),
            or_dash(t.pr_url.clone()),
        ]);
    }
    let step = match (&t.last_step, t.phase) {
        (Some(s), Phase::Running) if s.chars().count() > STEP_MAX => {
            format!("{}…", s.chars().take(STEP_MAX - 1).collect::<String>())
        }
        (Some(s), Phase::Running) => s.clone(),
        _ => String::new(),
    };
    row.push(step);
    row
}

#[cfg(test)]
fn table(tasks: &[TaskState], wide: bool, with_ns: bool, now: Timestamp) -> String {
    let rows = tasks.iter().map(|t| row(t, wide, with_ns, now)).collect();
    layout(header(wide, with_ns), rows)
}

/// The table, kubectl style: left-aligned columns, three spaces apart.
fn layout(header: Vec<String>, body: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(body).collect();
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-t001", "namespace": "ns",
                "labels": {"app": "agent-orchestrator", "task-id": "T001"},
                "annotations": {"agentic-sdlc/branch": "specs/1/T001-async", "agentic-sdlc/repo": "git@h:o/r.git"},
                "creationTimestamp": "2026-11-24T10:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "img:1"}]},
            "status": status
        }))
        .unwrap()
    }

    /// The cells of `line` under each header, by the header's columns (a STATUS cell
    /// holds a space: `Failed (push)`).
    fn cells<'a>(header: &str, line: &'a str) -> Vec<(String, &'a str)> {
        let starts: Vec<(usize, &str)> = header
            .match_indices(|c: char| c != ' ')
            .filter(|(i, _)| *i == 0 || header.as_bytes()[i - 1] == b' ')
            .map(|(i, _)| (i, header[i..].split(' ').next().unwrap()))
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, (i, name))| {
                let end = starts
                    .get(n + 1)
                    .map_or(line.len(), |(j, _)| *j)
                    .min(line.len());
                (name.to_string(), line.get(*i..end).unwrap_or("").trim())
            })
            .collect()
    }

    #[test]
    fn table_columns() {
        let failed = pod(
            json!({"phase": "Failed", "startTime": "2026-11-24T10:00:05Z",
            "containerStatuses": [{"name": "agent", "image": "img:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 14, "finishedAt": "2026-11-24T10:03:15Z"}}}]}),
        );
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let tail = "asdo: summary: files 1, tokens 240 in / 60 out, cost $0.0123\nasdo: failed push: rejected\n";
        let t = TaskState::new(&failed, Some(tail), now);
        let table_text = table(std::slice::from_ref(&t), false, false, now);
        let lines: Vec<&str> = table_text.lines().collect();
        assert!(
            lines[0].starts_with("TASK   POD          STATUS"),
            "{table_text}"
        );
        let got: Vec<&str> = cells(lines[0], lines[1])
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert_eq!(
            got,
            [
                "T001",
                "agent-t001",
                "Failed (push)",
                "14",
                "120m",
                "3m10s",
                "specs/1/T001-async",
                ""
            ]
        );
        let wide = table(std::slice::from_ref(&t), true, true, now);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        let got = cells(lines[0], lines[1]);
        let cell = |h: &str| got.iter().find(|(n, _)| n == h).unwrap().1;
        assert_eq!(
            (cell("NODE"), cell("IMAGE"), cell("REPO")),
            ("n1", "img:1", "git@h:o/r.git")
        );
        assert_eq!(
            (cell("TOKENS"), cell("COST"), cell("PR")),
            ("240/60", "$0.0123", "-")
        );

        // A running task shows its agent's last step; a stuck one why it is stuck.
        let running = pod(
            json!({"phase": "Running", "startTime": "2026-11-24T11:59:00Z",
            "containerStatuses": [{"name": "agent", "image": "img:1", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-24T11:59:00Z"}}}]}),
        );
        let step = format!("bash {}", "x".repeat(100));
        let t = TaskState::new(&running, Some(&format!("· {step}\n")), now);
        let text = table(&[t], false, false, now);
        let lines: Vec<&str> = text.lines().collect();
        let got = cells(lines[0], lines[1]);
        assert_eq!(got[2].1, "Running");
        assert_eq!(got[7].1.chars().count(), STEP_MAX, "{text}");
        assert!(got[7].1.starts_with("bash xxx") && got[7].1.ends_with('…'));
        let stuck = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "img:1",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}}]}),
        );
        let text = table(&[TaskState::new(&stuck, None, now)], false, false, now);
        assert!(text.contains("Pending (ImagePullBackOff)"), "{text}");
    }
}
