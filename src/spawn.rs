//! Spawn's engine: the inputs read and checked into a `Plan`, each task rendered into a
//! Pod, and the pods created (one, or a task list in parallel) with `--if-exists` and a
//! lost answer handled. Below the verbs so `asdo spawn` (and, later, MCP in-process) can
//! call it; `cli/spawn.rs` keeps the flags, the printing and the hints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::Deserialize;
use serde_json::Value;

use crate::cluster;
use crate::error::{Error, Result};
use crate::existing::{self, Decision, IfExists};
use crate::follow::StartBounds;
use crate::localgit;
use crate::render::{self, Target};
use crate::scope::Scope;
use crate::speckit;
use crate::task::{self, Task};
use crate::values::{self, Values};

/// One `asdo spawn` call as data: the flags after clap, positionals already folded in
/// (a flag wins over its positional). No I/O has happened yet.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub task_id: Option<String>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub context_dir: Option<String>,
    pub prompt: Option<String>,
    pub prompt_file: Option<PathBuf>,
    pub model: Option<String>,
    pub base: Option<String>,
    pub image: Option<String>,
    pub ssh_secret: Option<String>,
    pub sets: Vec<String>,
    pub values_files: Vec<PathBuf>,
    pub pr: bool,
    pub allow_no_changes: bool,
    pub report_dir: Option<PathBuf>,
    /// `--follow`: one task only (a task list is refused).
    pub follow: bool,
    pub if_exists: IfExists,
    /// `--wait`: with a task list, wait for each pod to start, within these bounds
    /// (`--start-timeout`, not counted while queued; `--queue-timeout`).
    pub wait: Option<StartBounds>,
}

/// Everything checked, before any API call.
pub struct Plan {
    pub tasks: Vec<Task>,
    /// True when the tasks came from a task list file.
    pub batch: bool,
    pub user_values: Value,
    pub image: Option<String>,
    pub ssh_secret: Option<String>,
    pub pr: bool,
    pub allow_no_changes: bool,
    /// spec-kit's delegation directory (`--report-dir`, or the detected one).
    pub report_dir: Option<PathBuf>,
    pub if_exists: IfExists,
    /// Wait for each pod of a task list to start, within these bounds.
    pub wait: Option<StartBounds>,
}

/// How many creates a task list sends at once: enough that 100 tasks take a few round
/// trips, few enough to stay well inside API priority and fairness (the default
/// `workload-low` level has dozens of seats; excess requests queue there, not fail).
const PARALLEL_CREATES: usize = 32;

/// What `create_one` did: made the task's pod, or left its existing one (`--if-exists`).
#[derive(Debug, Clone)]
pub enum Created {
    Created(Pod),
    Unchanged(Pod),
}

impl Created {
    pub fn pod(&self) -> &Pod {
        match self {
            Created::Created(p) | Created::Unchanged(p) => p,
        }
    }

    /// True when this call made the pod (spec-kit's record is then rewritten).
    pub fn is_new(&self) -> bool {
        matches!(self, Created::Created(_))
    }
}

/// Create one pod (or leave or replace the task's existing one, per `if_exists`), with
/// its prompt ConfigMap when the prompt is too big for an env value.
pub async fn create_one(
    api: &kube::Api<Pod>,
    ns: &str,
    pod: &Pod,
    prompt: Option<ConfigMap>,
    if_exists: IfExists,
    task: &Task,
) -> Result<Created> {
    let (created, fresh) = create_or_keep(api, ns, pod, if_exists, task).await?;
    if !fresh {
        return Ok(Created::Unchanged(created));
    }
    if let Some(cm) = prompt {
        // Second write, only for a big prompt: owned by the pod, so deleting the pod
        // (cleanup, --replace) deletes it too. Until it exists the pod waits to mount it.
        // Refused (a 413, a 500, no answer), the pod would wait forever for it: the pod
        // goes again, so nothing is left half-created.
        if let Err(e) = cluster::create_owned_config_map(api, &created, cm, ns).await {
            return Err(undo_pod(api, &created, ns, e).await);
        }
    }
    Ok(Created::Created(created))
}

/// spec-kit's delegation record for a task this call created or kept (when a report
/// directory is known): rewritten for a new pod, kept for an unchanged one.
pub fn record(plan: &Plan, task: &Task, ns: &str, created: &Created) -> Result<()> {
    let Some(dir) = &plan.report_dir else {
        return Ok(());
    };
    let name = created.pod().metadata.name.clone().unwrap_or_default();
    let d = speckit::Delegation {
        task: &task.id,
        pod: &name,
        namespace: Some(ns),
        branch: &task.branch,
        repo: Some(&task.repo),
        spec_dir: task.spec_dir.as_deref(),
        prompt: task.prompt.as_deref(),
        by: "asdo spawn",
    };
    if let Some(path) = speckit::record(dir, &d, created.is_new())? {
        tracing::info!("recorded {}", path.display());
    }
    Ok(())
}

/// `create_one`, then `report` (the verb prints the pod), then spec-kit's record: the
/// order a caller sees, one pod at a time or many at once.
pub async fn create_reported(
    api: &kube::Api<Pod>,
    ns: &str,
    (pod, prompt): Rendered,
    plan: &Plan,
    task: &Task,
    report: &(dyn Fn(&Created) -> Result<()> + Sync),
) -> Result<Created> {
    let created = create_one(api, ns, &pod, prompt, plan.if_exists, task).await?;
    report(&created)?;
    record(plan, task, ns, &created)?;
    Ok(created)
}

/// The pod this call created (true), or the task's existing one that --if-exists keeps (false).
async fn create_or_keep(
    api: &kube::Api<Pod>,
    ns: &str,
    pod: &Pod,
    if_exists: IfExists,
    task: &Task,
) -> Result<(Pod, bool)> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let created = match cluster::create_pod(api, pod, ns).await {
        Ok(p) => p,
        // The create may have been stored while its answer was lost (a 504 from a proxy,
        // retried by the client; or no answer within --request-timeout): the pod that is
        // there now is ours if it carries this call's id.
        Err(e @ (Error::AlreadyExists(_) | Error::Cluster(_) | Error::Api(_))) => {
            match own_pod(api, &name, ns, pod).await {
                Some(p) => {
                    tracing::info!(
                        "pod {name} was created by this call although the answer said: {e}"
                    );
                    p
                }
                None if matches!(e, Error::AlreadyExists(_)) => {
                    let Some(existing) = cluster::get_pod(api, &name, ns).await? else {
                        // Deleted in between: create once more, and say so if that fails.
                        return Ok((cluster::create_pod(api, pod, ns).await?, true));
                    };
                    match existing::decide(&existing, &task.id, &task.branch, &task.repo, if_exists)
                    {
                        Decision::Unchanged => return Ok((existing, false)),
                        Decision::Refuse(e) => return Err(e),
                        Decision::Replace => {
                            delete_existing(api, &existing, ns).await?;
                            cluster::create_pod(api, pod, ns).await?
                        }
                    }
                }
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Ok((created, true))
}

/// Deletes the pod this call just created (by uid) because its prompt ConfigMap could
/// not be written; the error says both what failed and whether the pod is gone.
async fn undo_pod(api: &kube::Api<Pod>, pod: &Pod, ns: &str, cause: Error) -> Error {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    match cluster::delete_pod_uid(api, name, uid, ns).await {
        Ok(_) => Error::Api(format!(
            "{cause}; pod {name} was deleted again, nothing of this spawn is left"
        )),
        Err(e) => Error::Api(format!(
            "{cause}; and pod {name} (waiting for that ConfigMap) could not be deleted: {e}; delete it with `kubectl delete pod {name} -n {ns}`"
        )),
    }
}

/// The pod of this name if it carries `ours`'s spawn id (one bounded get, errors = not ours).
async fn own_pod(api: &kube::Api<Pod>, name: &str, ns: &str, ours: &Pod) -> Option<Pod> {
    let id = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(task::ANN_SPAWN_ID).cloned())
    };
    let existing = cluster::get_pod(api, name, ns).await.ok().flatten()?;
    (id(&existing).is_some() && id(&existing) == id(ours)).then_some(existing)
}

/// A per-call id: unique enough to tell this spawn's pod from another caller's. No
/// crate needed: std's RandomState is seeded from the OS for every process.
pub fn call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// A task list: every pod is attempted (`PARALLEL_CREATES` at once), each reported as
/// it is made; the result per task id says which failed. Pods already created stay
/// (they are independent tasks). The task pods that exist already are listed first (one
/// request), so a re-run decides `unchanged` (or refuses) without a create per task;
/// only a pod to replace, or one that appeared since, takes the create path.
pub async fn create_all(
    api: &kube::Api<Pod>,
    ns: &str,
    pods: Vec<Rendered>,
    plan: &Plan,
    report: &(dyn Fn(&Created) -> Result<()> + Sync),
) -> Vec<(String, Result<String>)> {
    use futures::StreamExt;
    let existing = existing_pods(api, ns).await;
    let existing = &existing;
    futures::stream::iter(pods.into_iter().zip(&plan.tasks))
        .map(|(rendered, t)| async move {
            let task = t.id.clone();
            let name = rendered.0.metadata.name.clone().unwrap_or_default();
            let known = existing.get(&name).and_then(|p| {
                match existing::decide(p, &t.id, &t.branch, &t.repo, plan.if_exists) {
                    Decision::Unchanged => Some(Ok(Created::Unchanged(p.clone()))),
                    Decision::Refuse(e) => Some(Err(e)),
                    Decision::Replace => None,
                }
            });
            let r = match known {
                Some(Ok(created)) => report(&created)
                    .and_then(|_| record(plan, t, ns, &created))
                    .map(|_| created),
                Some(Err(e)) => Err(e),
                None => create_reported(api, ns, rendered, plan, t, report).await,
            };
            let r = r.map(|c| {
                let p = c.pod();
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    p.metadata.uid.clone(),
                )
            });
            if let (Some(bounds), Ok((name, uid))) = (plan.wait, &r)
                && let Err(e) = crate::follow::wait_started(api, name, uid.as_deref(), bounds).await
            {
                return (task, Err(e));
            }
            (task, r.map(|(name, _)| name))
        })
        .buffer_unordered(PARALLEL_CREATES)
        .collect()
        .await
}

/// The namespace's task pods by name, for a task list's re-run. A list that fails is no
/// error: every task then takes the create path, which decides per pod.
async fn existing_pods(api: &kube::Api<Pod>, ns: &str) -> std::collections::HashMap<String, Pod> {
    let lp = kube::api::ListParams::default().labels(task::SELECTOR);
    match cluster::list_all(api, &lp, &format!("list task pods in {ns}")).await {
        Ok(pods) => pods
            .into_iter()
            .filter_map(|p| Some((p.metadata.name.clone()?, p)))
            .collect(),
        Err(e) => {
            tracing::debug!("listing the existing task pods failed: {e}; creating one by one");
            Default::default()
        }
    }
}

/// A `-f` file with a top-level `tasks:` list is a task list, not chart values
/// (the chart has no `tasks` key, and its schema forbids unknown keys).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskList {
    /// Default repository for every task.
    #[serde(default)]
    repo: Option<String>,
    /// Default base for every task.
    #[serde(default)]
    base: Option<String>,
    /// Branch-name template for tasks without a `branch`: `{id}` and `{feature}`.
    #[serde(default)]
    branch: Option<String>,
    /// What `{feature}` stands for (default: the last part of each task's spec dir).
    #[serde(default)]
    feature: Option<String>,
    tasks: Vec<TaskEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskEntry {
    id: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    context_dir: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// A task's branch: its own, else the list's template with `{id}` and `{feature}` filled in.
fn branch_for(e: &TaskEntry, list: &TaskList, context: Option<&str>) -> Result<String> {
    if let Some(b) = &e.branch {
        return Ok(b.clone());
    }
    let Some(template) = &list.branch else {
        return Err(Error::usage(format!(
            "task {} has no branch: give it `branch:` or give the list a template (branch: \"specs/{{feature}}/{{id}}-async\")",
            e.id
        )));
    };
    let feature = || {
        list.feature.clone().or_else(|| {
            context
                .map(|c| c.trim_end_matches('/'))
                .and_then(|c| c.rsplit('/').next())
                .filter(|f| !f.is_empty() && *f != "workspace")
                .map(str::to_string)
        })
    };
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|i| start + i)
            .ok_or_else(|| Error::usage(format!("branch template {template:?}: unclosed '{{'")))?;
        match &rest[start + 1..end] {
            "id" => out.push_str(&e.id),
            "feature" => out.push_str(&feature().ok_or_else(|| {
                Error::usage(format!(
                    "branch template {template:?} uses {{feature}}: set `feature:` in the task list or a contextDir for task {}",
                    e.id
                ))
            })?),
            other => {
                return Err(Error::usage(format!(
                    "branch template {template:?}: unknown placeholder {{{other}}} (use {{id}} and {{feature}})"
                )));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `--prompt` as given, or `--prompt-file` read (`-`: stdin); blank counts as none.
fn read_prompt(prompt: Option<&String>, prompt_file: Option<&Path>) -> Result<Option<String>> {
    Ok(match (prompt, prompt_file) {
        (Some(p), _) => Some(p.clone()),
        // `-`: stdin, how `asdo mcp` passes a prompt of any size or text.
        (None, Some(file)) if file.as_os_str() == "-" => Some(
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| Error::usage(format!("cannot read --prompt-file - (stdin): {e}")))?,
        ),
        (None, Some(file)) => Some(std::fs::read_to_string(file).map_err(|e| {
            Error::usage(format!("cannot read --prompt-file {}: {e}", file.display()))
        })?),
        (None, None) => None,
    }
    .filter(|p| !p.trim().is_empty()))
}

pub fn make_task(
    id: String,
    branch: String,
    repo: String,
    context: Option<&str>,
    prompt: Option<String>,
    model: Option<String>,
    base: Option<String>,
) -> Result<Task> {
    task::validate_task_id(&id)?;
    task::validate_branch(&branch)?;
    task::validate_repo(&repo)?;
    let base = base.filter(|b| !b.is_empty());
    if let Some(b) = &base {
        // A branch, tag or commit: git's ref rules cover all three.
        task::validate_branch(b).map_err(|e| Error::usage(format!("--base: {e}")))?;
    }
    let model = model.filter(|m| !m.is_empty());
    if let Some(m) = &model {
        task::validate_model(m)?;
    }
    let (context_dir, spec_dir) = localgit::split_context_dir(context)?;
    Ok(Task {
        id,
        branch,
        repo,
        context_dir: context_dir.unwrap_or_default(),
        spec_dir,
        base,
        prompt,
        model,
    })
}

/// Every input read and checked (values files, task lists, --set, the prompt), before
/// any API call.
pub fn plan(args: &SpawnRequest) -> Result<Plan> {
    let mut user_values = Value::Object(Default::default());
    let mut lists = Vec::new();
    for file in &args.values_files {
        let origin = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::usage(format!("cannot read values file {origin}: {e}")))?;
        let v = values::parse_yaml(&origin, &text)?;
        if v.get("tasks").is_some() {
            let list: TaskList = serde_json::from_value(v)
                .map_err(|e| Error::usage(format!("invalid task list {origin}: {e}")))?;
            lists.push((origin, list));
        } else {
            let v = values::unwrap_subchart(v);
            values::check_keys(&origin, &v)?;
            values::layer(&mut user_values, v);
        }
    }
    for s in &args.sets {
        let mut one = Value::Object(Default::default());
        values::apply_set(&mut one, s)?;
        values::check_keys(&format!("--set {s}"), &one)?;
        values::layer(&mut user_values, one);
    }
    let prompt = read_prompt(args.prompt.as_ref(), args.prompt_file.as_deref())?;

    let single_given = args.task_id.is_some() || args.branch.is_some();
    let batch = !lists.is_empty();
    let tasks = if !batch {
        vec![make_task(
            args.task_id.clone().unwrap_or_default(),
            args.branch.clone().unwrap_or_default(),
            args.repo.clone().unwrap_or_default(),
            args.context_dir.as_deref(),
            prompt,
            args.model.clone(),
            args.base.clone(),
        )?]
    } else {
        if single_given {
            return Err(Error::usage(
                "a task list (-f with `tasks:`) and --task-id/--branch can't be combined; use one or the other",
            ));
        }
        if args.follow {
            return Err(Error::usage(
                "--follow takes one task; with a task list use `asdo logs --all` or `asdo wait --all`",
            ));
        }
        let mut tasks = Vec::new();
        for (origin, mut list) in lists {
            for e in std::mem::take(&mut list.tasks) {
                let context = e.context_dir.clone().or_else(|| args.context_dir.clone());
                let branch = branch_for(&e, &list, context.as_deref());
                let repo = e
                    .repo
                    .or_else(|| list.repo.clone())
                    .or_else(|| args.repo.clone())
                    .unwrap_or_default();
                let t = branch
                    .and_then(|branch| {
                        make_task(
                            e.id,
                            branch,
                            repo,
                            context.as_deref(),
                            e.prompt.or_else(|| prompt.clone()),
                            e.model.or_else(|| args.model.clone()),
                            e.base
                                .or_else(|| list.base.clone())
                                .or_else(|| args.base.clone()),
                        )
                    })
                    .map_err(|err| Error::usage(format!("{origin}: {err}")))?;
                tasks.push(t);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = tasks.iter().find(|t| !seen.insert(task::pod_name(&t.id))) {
            return Err(Error::usage(format!(
                "task {} appears twice in the task list (pod names are case-insensitive)",
                dup.id
            )));
        }
        tasks
    };
    let report_dir = args.report_dir.clone().or_else(|| {
        let context = args.context_dir.as_deref();
        let feature = speckit::feature(Path::new(context.filter(|_| !batch)?))?;
        tracing::info!(
            "spec-kit feature {}: delegation files in {} ({})",
            feature.dir.display(),
            feature.report_dir().display(),
            feature.evidence
        );
        Some(feature.report_dir())
    });
    Ok(Plan {
        report_dir,
        batch,
        tasks,
        user_values,
        image: args.image.clone(),
        ssh_secret: args.ssh_secret.clone().filter(|s| !s.is_empty()),
        pr: args.pr,
        allow_no_changes: args.allow_no_changes,
        if_exists: args.if_exists,
        wait: args.wait,
    })
}

/// The values every task of the plan renders with: the compiled-in defaults, the cluster's
/// ConfigMap, then the user's files, sets and flags, checked once (the schema walk is the
/// costly part of rendering, and a task list shares it).
pub fn plan_values(scope: &Scope, plan: &Plan, cluster_values: Option<Value>) -> Result<Values> {
    let mut merged = scope.defaults.clone();
    if let Some(cv) = cluster_values {
        values::merge(&mut merged, cv);
    }
    values::merge(&mut merged, plan.user_values.clone());
    if let Some(secret) = &plan.ssh_secret {
        values::merge(
            &mut merged,
            serde_json::json!({"pod": {"sshSecret": {"enabled": true, "name": secret}}}),
        );
    }
    if plan.pr {
        values::merge(
            &mut merged,
            serde_json::json!({"agent": {"pullRequest": true}}),
        );
    }
    if plan.allow_no_changes {
        values::merge(
            &mut merged,
            serde_json::json!({"agent": {"allowNoChanges": true}}),
        );
    }
    let mut v = Values::from_value(merged)?;
    if let Some(image) = &plan.image {
        v.image_override = Some(image.clone());
    }
    v.check_for_spawn()?;
    Ok(v)
}

/// One task's Pod (and prompt ConfigMap) from the plan's values.
pub fn render_task(scope: &Scope, v: &Values, task: &Task) -> Result<Rendered> {
    let mut task = task.clone();
    if task.context_dir.is_empty() {
        task.context_dir = v.task.context_dir.clone();
    }
    if !task.context_dir.starts_with('/') {
        return Err(Error::usage(format!(
            "task.contextDir {:?} must be an absolute path inside the pod, e.g. /workspace",
            task.context_dir
        )));
    }
    if task.spec_dir.is_none() && !v.task.spec_dir.is_empty() {
        task.spec_dir = Some(v.task.spec_dir.clone());
    }
    if task.base.is_none() && !v.task.base.is_empty() {
        task::validate_branch(&v.task.base).map_err(|e| Error::usage(format!("task.base: {e}")))?;
        task.base = Some(v.task.base.clone());
    }
    if task.prompt.is_none() && !v.task.prompt.is_empty() {
        task.prompt = Some(v.task.prompt.clone());
    }
    if task.model.is_none() && !v.task.model.is_empty() {
        // From values (a -f file, --set or the cluster's ConfigMap): the same shape rule.
        task::validate_model(&v.task.model)
            .map_err(|e| Error::usage(format!("values task.model: {e}")))?;
        task.model = Some(v.task.model.clone());
    }
    let target = Target {
        release: scope.release.clone(),
        namespace: scope.namespace.clone(),
        environment: scope.environment.clone(),
    };
    if let Some(p) = task
        .prompt
        .as_ref()
        .filter(|p| p.len() > render::PROMPT_MAX)
    {
        return Err(Error::usage(format!(
            "task {}: the prompt is {} KiB, over the 1 MiB a ConfigMap can hold (the API server's limit); put the details in a file in the repository and point the prompt at it",
            task.id,
            p.len() / 1024
        )));
    }
    let pod = render::pod(v, &task, &target);
    let prompt = render::prompt_config_map(&pod, &task);
    Ok((pod, prompt))
}

/// Every task of the plan rendered with the same values (the cluster's ConfigMap's, if any).
pub fn render_all(
    scope: &Scope,
    plan: &Plan,
    cluster_values: Option<Value>,
) -> Result<Vec<Rendered>> {
    let v = plan_values(scope, plan, cluster_values)?;
    plan.tasks
        .iter()
        .map(|t| render_task(scope, &v, t))
        .collect()
}

/// A task's Pod, plus the ConfigMap carrying its prompt when that is too big for an env value.
pub type Rendered = (Pod, Option<ConfigMap>);

/// Delete the pod `existing::decide` chose to replace and wait until it is gone.
pub async fn delete_existing(api: &kube::Api<Pod>, existing: &Pod, ns: &str) -> Result<()> {
    let name = existing.metadata.name.as_deref().unwrap_or_default();
    // Delete exactly the finished pod we saw: if another spawn replaced it meanwhile,
    // the uid precondition fails and that run's pod is left alone.
    let uid = existing.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Err(Error::Api(format!(
            "pod {name} in namespace {ns} has no uid; cannot replace it safely"
        )));
    }
    cluster::delete_pod_uid(api, name, &uid, ns).await?;
    crate::follow::wait_deleted(api, name, &uid, Duration::from_secs(60)).await
}
