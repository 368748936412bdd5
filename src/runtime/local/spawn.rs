//! `asdo spawn` on the local runtime: the same plan and rendered pods as on a cluster
//! (`crate::spawn`), each started as a local task instead of created as a Pod, with the
//! same `--if-exists` rules and spec-kit records.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use super::{Phase, Store, pod, request_from_pod};
use crate::error::{Error, Result};
use crate::existing::IfExists;
use crate::spawn::{Created, Plan, Rendered};
use crate::task::Task;

/// The local runtime's own spawn flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// false: `--no-sandbox`.
    pub sandbox: bool,
    /// `--max-parallel`.
    pub max_parallel: usize,
    /// The asdo binary the runner and the agent run (this one).
    pub asdo: PathBuf,
}

/// Starts one task (or keeps or replaces its existing one, per `--if-exists`).
pub fn create_one(
    store: &Store,
    (rendered, prompt): &Rendered,
    plan: &Plan,
    task: &Task,
    opts: &Options,
) -> Result<Created> {
    let t = store.task(&task.id);
    if t.spec_file().exists() {
        let v = t
            .view()
            .map_err(|e| Error::other(format!("local task {}: {e}", task.id)))?;
        let existing = pod::of(&v);
        let same = v.spec.branch == task.branch && v.spec.repo == task.repo;
        let (phase, dir) = (v.phase.name(), t.dir.display());
        match plan.if_exists {
            IfExists::Skip if same && !matches!(v.phase, Phase::Failed { .. }) => {
                return Ok(Created::Unchanged(existing));
            }
            IfExists::Replace if v.phase.is_finished() => t.remove()?,
            IfExists::Replace => {
                return Err(Error::usage(format!(
                    "local task {} is {phase} ({dir}): it is replaced once it has ended",
                    task.id
                )));
            }
            _ => {
                return Err(Error::AlreadyExists(format!(
                    "local task {} already exists ({phase}, {dir}): re-run it with --replace once it has ended, or remove it with `asdo --runtime local cleanup`",
                    task.id
                )));
            }
        }
    }
    let req = request_from_pod(
        rendered,
        prompt.as_ref(),
        opts.sandbox,
        opts.max_parallel,
        opts.asdo.clone(),
    )?;
    let t = super::spawn(store, &req)?;
    let v = t
        .view()
        .map_err(|e| Error::other(format!("local task {}: {e}", task.id)))?;
    Ok(Created::Created(pod::of(&v)))
}

/// `create_one`, then `report` (the verb prints it), then spec-kit's record.
pub fn create_reported(
    store: &Store,
    rendered: &Rendered,
    plan: &Plan,
    task: &Task,
    opts: &Options,
    report: &(dyn Fn(&Created) -> Result<()> + Sync),
) -> Result<Created> {
    let created = create_one(store, rendered, plan, task, opts)?;
    report(&created)?;
    crate::spawn::record(plan, task, pod::NAMESPACE, &created)?;
    Ok(created)
}

/// A task list: every task started (each queues for a slot by itself), one result each.
pub fn create_all(
    store: &Store,
    pods: &[Rendered],
    plan: &Plan,
    opts: &Options,
    report: &(dyn Fn(&Created) -> Result<()> + Sync),
) -> Vec<(String, Result<String>)> {
    pods.iter()
        .zip(&plan.tasks)
        .map(|(r, t)| {
            let res =
                create_reported(store, r, plan, t, opts, report).map(|c| name(c.pod()).to_string());
            (t.id.clone(), res)
        })
        .collect()
}

fn name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}
