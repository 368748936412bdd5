//! The runtime's part of `asdo spawn` (`crate::spawn` plans and renders): a cluster's
//! pods rendered over the chart's published values, validated, marked with this call's
//! id and created; a local task started per rendered pod.

use super::{Runtime, local};
use crate::error::{Error, Result};
use crate::scope::Scope;
use crate::spawn::{self, Created, Plan, Rendered};
use crate::values::{self, Values};
use crate::{cluster, task};

/// The local runtime's own spawn flags (a cluster has no use for them).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFlags {
    /// `--no-sandbox`: run the agent with the user's own rights.
    pub no_sandbox: bool,
    /// `--max-parallel`; default: the number of cores.
    pub max_parallel: Option<u32>,
}

/// What a spawn started.
pub enum Spawned {
    /// A task list: each task's pod name, or why it failed.
    Batch(Vec<(String, Result<String>)>),
    /// One task: its pod's name and (on a cluster) uid, for `--wait`/`--follow`.
    One { name: String, uid: Option<String> },
}

impl Runtime {
    /// Starts the plan's tasks from the pods rendered with the compiled-in values
    /// (`offline`), each reported through `report` (the verb prints it) and recorded for
    /// spec-kit. On a cluster the chart's published values, when installed, are rendered
    /// over instead and checked again.
    pub async fn spawn(
        &self,
        scope: &Scope,
        plan: &Plan,
        offline: Vec<Rendered>,
        flags: LocalFlags,
        report: &(dyn Fn(&Created) -> Result<()> + Sync),
    ) -> Result<Spawned> {
        let store = match self {
            Runtime::Kubernetes(c) => return spawn_pods(c, scope, plan, offline, report).await,
            Runtime::Local(store) => store,
        };
        if flags.no_sandbox {
            eprintln!("{}", local::sandbox::NO_SANDBOX_WARNING);
        }
        let opts = local::spawn::Options {
            sandbox: !flags.no_sandbox,
            max_parallel: flags
                .max_parallel
                .map_or_else(local::default_max_parallel, |n| n as usize),
            asdo: std::env::current_exe()
                .map_err(|e| Error::other(format!("cannot find the asdo binary: {e}")))?,
        };
        if plan.batch {
            let results = local::spawn::create_all(store, &offline, plan, &opts, report);
            return Ok(Spawned::Batch(results));
        }
        let rendered = offline
            .first()
            .ok_or_else(|| Error::other("no task to spawn"))?;
        let created =
            local::spawn::create_reported(store, rendered, plan, &plan.tasks[0], &opts, report)?;
        Ok(Spawned::One {
            name: created.pod().metadata.name.clone().unwrap_or_default(),
            uid: created.pod().metadata.uid.clone(),
        })
    }
}

async fn spawn_pods(
    c: &super::Cluster,
    scope: &Scope,
    plan: &Plan,
    offline: Vec<Rendered>,
    report: &(dyn Fn(&Created) -> Result<()> + Sync),
) -> Result<Spawned> {
    let ns = c.namespace.as_str();
    let cm_name = Values::from_value(scope.defaults.clone())?.config_map_name(&scope.release);
    let cluster_values =
        cluster::config_values(&c.client, ns, &cm_name, values::CONFIGMAP_KEY).await?;
    let pods: Vec<Rendered> = match cluster_values {
        Some(text) => {
            let v = values::unwrap_subchart(values::parse_yaml(
                &format!("ConfigMap {cm_name}"),
                &text,
            )?);
            spawn::render_all(scope, plan, Some(v))?
        }
        None => offline,
    };
    // The cluster's values may bring their own bad values; and each pod is marked with
    // this call's id so a create retried after a lost answer recognises its own pod.
    let call_id = spawn::call_id();
    let pods: Vec<Rendered> = pods
        .into_iter()
        .map(|(mut pod, prompt)| {
            crate::validate::pod(&pod)?;
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(task::ANN_SPAWN_ID.into(), call_id.clone());
            Ok((pod, prompt))
        })
        .collect::<Result<_>>()?;
    let api = cluster::pods(&c.client, Some(ns))?;
    if plan.batch {
        let results = spawn::create_all(&api, ns, pods, plan, report).await;
        return Ok(Spawned::Batch(results));
    }
    let rendered = pods
        .into_iter()
        .next()
        .ok_or_else(|| Error::other("no task to spawn"))?;
    let created = spawn::create_reported(&api, ns, rendered, plan, &plan.tasks[0], report).await?;
    Ok(Spawned::One {
        name: created.pod().metadata.name.clone().unwrap_or_default(),
        uid: created.pod().metadata.uid.clone(),
    })
}
