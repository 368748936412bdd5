//! `asdo list`: task pods as a table (or yaml/json/name), from paged list calls.

use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, ObjectList};

use super::{Global, Output, print_object};
use crate::cluster;
use crate::error::{Result, exit};
use crate::follow;
use crate::humantime;
use crate::task::{ANN_BRANCH, ANN_REPO, LABEL_TASK_ID};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo list
  asdo list --phase Failed -o wide
  asdo list -A -o name")]
pub struct ListArgs {
    /// Output format: wide adds NODE, IMAGE and REPO.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Only pods in this phase (Pending, Running, Succeeded, Failed, Unknown).
    #[arg(long)]
    pub phase: Option<String>,
    /// Extra label selector, added to app=agent-orchestrator.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// List task pods in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub async fn run(global: &Global, args: ListArgs) -> Result<i32> {
    let scope = global.scope()?;
    let phase = args
        .phase
        .as_deref()
        .map(crate::task::check_phase)
        .transpose()?;
    let labels = crate::task::selector(args.selector.as_deref())?;
    let client = cluster::client(&scope.cluster).await?;
    let ns = (!args.all_namespaces).then_some(scope.namespace.as_str());
    let api = cluster::pods(&client, ns)?;
    let mut lp = ListParams::default().labels(&labels);
    if let Some(p) = phase {
        lp = lp.fields(&format!("status.phase={p}"));
    }
    let where_ = ns.map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let what = format!("list pods in {where_}");

    if let Some(f @ (Output::Yaml | Output::Json)) = args.output {
        let mut pods = cluster::list_all(&api, &lp, &what).await?;
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let list = ObjectList::<Pod> {
            types: kube::core::TypeMeta {
                api_version: "v1".into(),
                kind: "List".into(),
            },
            metadata: Default::default(),
            items: pods,
        };
        print_object(&list, f)?;
        return Ok(exit::OK);
    }

    // Names and tables keep a few strings per pod, not the pods: 10,000 task pods would
    // otherwise sit in memory as full objects.
    let wide = args.output == Some(Output::Wide);
    let now = Timestamp::now();
    let mut rows: Vec<((String, String), Vec<String>)> = Vec::new();
    cluster::for_each_page(&api, &lp, &what, |page| {
        for p in &page {
            let key = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
            let cells = if args.output == Some(Output::Name) {
                vec![]
            } else {
                row(p, wide, args.all_namespaces, now)
            };
            rows.push((key, cells));
        }
    })
    .await?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));

    if args.output == Some(Output::Name) {
        for ((_, name), _) in &rows {
            println!("pod/{name}");
        }
    } else if rows.is_empty() {
        eprintln!("No task pods found in {where_}.");
    } else {
        let cells: Vec<Vec<String>> = rows.into_iter().map(|(_, c)| c).collect();
        print!("{}", layout(header(wide, args.all_namespaces), cells));
    }
    Ok(exit::OK)
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
    header.extend(["TASK", "POD", "PHASE", "EXIT", "AGE", "DURATION", "BRANCH"]);
    if wide {
        header.extend(["NODE", "IMAGE", "REPO"]);
    }
    header.into_iter().map(String::from).collect()
}

/// One pod's table cells, in `header` order.
fn row(p: &Pod, wide: bool, with_ns: bool, now: Timestamp) -> Vec<String> {
    let meta = &p.metadata;
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k).cloned())
            .unwrap_or_else(|| "<none>".into())
    };
    let started = follow::started(p);
    let finished = follow::finished(p);
    let duration = match (started, finished) {
        (Some(s), Some(f)) => since(Some(s), f),
        (Some(s), None) => since(Some(s), now),
        _ => None,
    };
    let mut row = vec![];
    if with_ns {
        row.push(meta.namespace.clone().unwrap_or_default());
    }
    row.extend([
        meta.labels
            .as_ref()
            .and_then(|l| l.get(LABEL_TASK_ID).cloned())
            .unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        follow::phase(p).to_string(),
        follow::exit_code(p).map_or("-".into(), |c| c.to_string()),
        since(meta.creation_timestamp.as_ref().map(|t| t.0), now)
            .map_or("-".into(), humantime::short),
        duration.map_or("-".into(), humantime::short),
        ann(ANN_BRANCH),
    ]);
    if wide {
        let spec = p.spec.as_ref();
        row.extend([
            spec.and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".into()),
            spec.and_then(|s| s.containers.first()?.image.clone())
                .unwrap_or_default(),
            ann(ANN_REPO),
        ]);
    }
    row
}

#[cfg(test)]
fn table(pods: &[Pod], wide: bool, with_ns: bool, now: Timestamp) -> String {
    let rows = pods.iter().map(|p| row(p, wide, with_ns, now)).collect();
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
    use serde_json::json;

    #[test]
    fn table_columns() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "agent-t001", "namespace": "ns",
                "labels": {"app": "agent-orchestrator", "task-id": "T001"},
                "annotations": {"agentic-sdlc/branch": "specs/1/T001-async", "agentic-sdlc/repo": "git@h:o/r.git"},
                "creationTimestamp": "2026-11-24T10:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "agent", "image": "img:1"}]},
            "status": {"phase": "Failed", "startTime": "2026-11-24T10:00:05Z",
                "containerStatuses": [{"name": "agent", "image": "img:1", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 3, "finishedAt": "2026-11-24T10:03:15Z"}}}]}
        }))
        .unwrap();
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        let t = table(std::slice::from_ref(&pod), false, false, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TASK   POD          PHASE"), "{t}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "T001",
                "agent-t001",
                "Failed",
                "3",
                "120m",
                "3m10s",
                "specs/1/T001-async"
            ]
        );
        let wide = table(&[pod], true, true, now);
        assert!(wide.lines().next().unwrap().starts_with("NAMESPACE"));
        assert!(
            wide.contains("n1") && wide.contains("img:1") && wide.contains("git@h:o/r.git"),
            "{wide}"
        );
    }
}
