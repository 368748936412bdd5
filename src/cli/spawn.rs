//! `asdo spawn`: validate, render, create one pod, return. spec-kit calls this once
//! per [ASYNC] task and reads only the exit code, so the default path makes one
//! read (the chart's ConfigMap) and one write (the Pod), and never waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::Deserialize;
use serde_json::Value;

use clap::builder::TypedValueParser as _;

use super::{Global, Output, Scope, print_object};
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::existing::{self, Decision, IfExists};
use crate::render::{self, Target};
use crate::speckit;
use crate::task::{self, Task};
use crate::values::{self, Values};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo spawn --task-id T001 --branch specs/001-auth/T001-async --repo git@github.com:org/repo.git
  asdo spawn T001 specs/001-auth/T001-async https://github.com/org/repo.git --prompt 'Add login'
  asdo spawn --task-id T001 --branch b --repo git@github.com:o/r.git --dry-run -o yaml")]
pub struct SpawnArgs {
    /// Task id, e.g. T001 (the pod is agent-<id lowercased>).
    #[arg(value_name = "TASK_ID")]
    pos_task_id: Option<String>,
    /// Git branch the agent works on and pushes.
    #[arg(value_name = "BRANCH")]
    pos_branch: Option<String>,
    /// Git repository URL.
    #[arg(value_name = "REPO")]
    pos_repo: Option<String>,
    /// Context directory (see --context-dir).
    #[arg(value_name = "CONTEXT_DIR")]
    pos_context_dir: Option<String>,

    /// Task id, e.g. T001.
    #[arg(long)]
    pub task_id: Option<String>,
    /// Git branch the agent works on and pushes, e.g. specs/001-auth/T001-async.
    #[arg(long)]
    pub branch: Option<String>,
    /// Git repository URL (https://, ssh://, git@host:path or file://).
    #[arg(long)]
    pub repo: Option<String>,
    /// After the push, open (or update) a draft pull/merge request to the base (value
    /// agent.pullRequest; needs pod.gitTokenSecret: the forge API takes a token).
    #[arg(long)]
    pub pr: bool,
    /// A run that changes no file succeeds (`done no-changes`, exit 0) instead of failing
    /// with exit 16: for tasks that only review or answer (value agent.allowNoChanges).
    #[arg(long)]
    pub allow_no_changes: bool,
    /// Branch, tag or commit the task branch is created from when it does not exist yet
    /// (default: the remote's default branch). An existing task branch is continued, never reset.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// A pod path under /workspace, or the spec directory (spec-kit's FEATURE_DIR):
    /// a host path inside a git checkout becomes TASK_SPEC_DIR relative to the repository root.
    #[arg(long)]
    pub context_dir: Option<String>,
    /// Secret holding the git SSH private key (mounted read-only, mode 0400).
    #[arg(long, env = "SSH_SECRET_NAME", hide_env_values = true)]
    pub ssh_secret: Option<String>,
    /// What the agent should do (default: implement the task from the spec's tasks.md).
    #[arg(long, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the task instructions from a file (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// OpenCode model, provider/model (OPENCODE_MODEL).
    #[arg(long)]
    pub model: Option<String>,
    /// Container image, overriding pod.image.repository and pod.image.tag.
    #[arg(long)]
    pub image: Option<String>,
    /// Set a chart value, Helm style (repeatable): --set pod.activeDeadlineSeconds=3600
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Values file(s) with chart keys, applied in order before --set.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values_files: Vec<PathBuf>,
    /// Print the pod that would be created; contact no cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// Output: yaml or json prints the pod, name prints pod/<name>.
    // Not `value_enum`: `wide` is list's, and help must not offer what spawn refuses.
    #[arg(
        short = 'o',
        long,
        value_name = "FORMAT",
        value_parser = clap::builder::PossibleValuesParser::new(["yaml", "json", "name"])
            .map(|s: String| <Output as clap::ValueEnum>::from_str(&s, false).unwrap_or(Output::Yaml))
    )]
    pub output: Option<Output>,
    /// Wait until the pod runs (or has already finished).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting for the pod to start after this long (with --wait or --follow);
    /// image pulls and Secrets not yet synced are waited through, with the reason on stderr.
    #[arg(long, visible_alias = "start-timeout", default_value = "120s", value_parser = crate::humantime::parse)]
    pub timeout: Duration,
    /// Stream the task's logs after creating it; exit with the task's exit code.
    #[arg(long, conflicts_with = "wait")]
    pub follow: bool,
    /// Same as --if-exists replace: re-run a finished pod of the task, or one that cannot start.
    #[arg(long, conflicts_with = "if_exists")]
    pub replace: bool,
    /// When the task's pod exists: skip (a running or succeeded pod of the same branch and
    /// repo stays, "unchanged", exit 0), fail, or replace (a finished or stuck pod).
    /// Default: skip when run as spawn-pod.sh (spec-kit re-runs), fail otherwise.
    #[arg(long, value_enum, env = "ASDO_IF_EXISTS", hide_env_values = true)]
    pub if_exists: Option<IfExists>,
    /// Where spec-kit reads its delegation files; spawn writes delegation_prompts/<id>.md
    /// there. Default, when --context-dir is a spec-kit feature directory here: the
    /// directory the detected spec-kit version reads (the repository root, or
    /// <feature>/.async_state).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

impl SpawnArgs {
    fn if_exists(&self) -> IfExists {
        match (self.replace, self.if_exists) {
            (true, _) => IfExists::Replace,
            (false, Some(p)) => p,
            (false, None) => IfExists::default_for(super::invoked_as_spawn_pod()),
        }
    }

    /// Flags win over positionals, like the old spawn-pod.sh.
    fn pick(flag: &Option<String>, pos: &Option<String>) -> String {
        flag.clone().or_else(|| pos.clone()).unwrap_or_default()
    }
}

/// Everything checked, before any API call.
struct Plan {
    tasks: Vec<Task>,
    /// True when the tasks came from a task list file.
    batch: bool,
    user_values: Value,
    image: Option<String>,
    ssh_secret: Option<String>,
    pr: bool,
    allow_no_changes: bool,
    /// spec-kit's delegation directory (`--report-dir`, or the detected one).
    report_dir: Option<PathBuf>,
}

/// How many creates a task list sends at once: enough to hide latency, few
/// enough not to trip API priority and fairness limits.
const PARALLEL_CREATES: usize = 8;

pub async fn run(global: &Global, args: SpawnArgs) -> Result<i32> {
    let scope = global.scope()?;
    let plan = plan(&args)?;
    // Render from the compiled-in values first so bad values fail before the cluster is touched.
    let offline: Vec<Rendered> = plan
        .tasks
        .iter()
        .map(|t| render_pod(&scope, &plan, t, None))
        .collect::<Result<_>>()?;
    for (pod, _) in &offline {
        crate::validate::pod(pod)?;
    }
    if args.dry_run {
        for (i, (pod, prompt)) in offline.iter().enumerate() {
            if let Some(cm) = prompt {
                eprintln!(
                    "note: the prompt goes in ConfigMap {}, created with the pod and owned by it",
                    cm.metadata.name.as_deref().unwrap_or("")
                );
            }
            if i > 0 && args.output != Some(Output::Name) {
                println!("---");
            }
            print_pod(pod, args.output.unwrap_or(Output::Yaml))?;
        }
        return Ok(exit::OK);
    }

    if let Some(dir) = &plan.report_dir {
        speckit::check_writable(dir)?;
    }
    let client = cluster::client(&scope.cluster).await?;
    let cm_name = Values::from_value(scope.defaults.clone())?.config_map_name(&scope.release);
    let cluster_values =
        cluster::config_values(&client, &scope.namespace, &cm_name, values::CONFIGMAP_KEY).await?;
    let pods: Vec<Rendered> = match cluster_values {
        Some(text) => {
            let v = values::unwrap_subchart(values::parse_yaml(
                &format!("ConfigMap {cm_name}"),
                &text,
            )?);
            plan.tasks
                .iter()
                .map(|t| render_pod(&scope, &plan, t, Some(v.clone())))
                .collect::<Result<_>>()?
        }
        None => offline,
    };
    // The cluster's values may bring their own bad values; and each pod is marked with
    // this call's id so a create retried after a lost answer recognises its own pod.
    let call_id = call_id();
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
    let api = cluster::pods(&client, Some(&scope.namespace))?;
    let ns = scope.namespace.as_str();

    if plan.batch {
        return create_all(&api, ns, pods, &args, &plan).await;
    }
    let (pod, prompt) = pods
        .into_iter()
        .next()
        .ok_or_else(|| Error::other("no task to spawn"))?;
    let (name, uid) = create_one(&api, ns, &pod, prompt, &args, &plan, &plan.tasks[0]).await?;
    if args.output.is_none() {
        eprintln!("follow it: asdo logs {} -n {ns}", plan.tasks[0].id);
        if let Some(dir) = &plan.report_dir {
            eprintln!(
                "spec-kit's result: asdo wait {} -n {ns} --report-dir {}",
                plan.tasks[0].id,
                dir.display()
            );
        }
    }
    if args.follow {
        let opts = crate::follow::LogOptions {
            follow: true,
            start_timeout: Some(args.timeout),
            ..Default::default()
        };
        return crate::follow::follow_one(&client, ns, &name, &opts).await;
    }
    if args.wait {
        crate::follow::wait_started(&api, &name, uid.as_deref(), args.timeout).await?;
    }
    Ok(exit::OK)
}

/// Create one pod (or leave or replace the task's existing one, per --if-exists), print
/// it as -o says, and record it for spec-kit.
async fn create_one(
    api: &kube::Api<Pod>,
    ns: &str,
    pod: &Pod,
    prompt: Option<ConfigMap>,
    args: &SpawnArgs,
    plan: &Plan,
    task: &Task,
) -> Result<(String, Option<String>)> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (created, fresh) = match create_or_keep(api, ns, pod, args, task).await? {
        (p, true) => (p, true),
        (p, false) => {
            match args.output {
                Some(f @ (Output::Yaml | Output::Json)) => print_pod(&p, f)?,
                _ => println!("pod/{name} unchanged"),
            }
            (p, false)
        }
    };
    if fresh {
        if let Some(cm) = prompt {
            // Second write, only for a big prompt: owned by the pod, so deleting the pod
            // (cleanup, --replace) deletes it too. Until it exists the pod waits to mount it.
            // Refused (a 413, a 500, no answer), the pod would wait forever for it: the pod
            // goes again, so nothing is left half-created.
            if let Err(e) = cluster::create_owned_config_map(api, &created, cm, ns).await {
                return Err(undo_pod(api, &created, ns, e).await);
            }
        }
        match args.output {
            Some(f @ (Output::Yaml | Output::Json)) => print_pod(&created, f)?,
            _ => println!("pod/{name} created"),
        }
    }
    if let Some(dir) = &plan.report_dir {
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
        if let Some(path) = speckit::record(dir, &d, fresh)? {
            tracing::info!("recorded {}", path.display());
        }
    }
    Ok((name, created.metadata.uid.clone()))
}

/// The pod this call created (true), or the task's existing one that --if-exists keeps (false).
async fn create_or_keep(
    api: &kube::Api<Pod>,
    ns: &str,
    pod: &Pod,
    args: &SpawnArgs,
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
                    match existing::decide(
                        &existing,
                        &task.id,
                        &task.branch,
                        &task.repo,
                        args.if_exists(),
                    ) {
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
fn call_id() -> String {
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

/// A task list: every pod is attempted; the ones that fail are named at the end.
/// Pods already created stay (they are independent tasks).
async fn create_all(
    api: &kube::Api<Pod>,
    ns: &str,
    pods: Vec<Rendered>,
    args: &SpawnArgs,
    plan: &Plan,
) -> Result<i32> {
    use futures::StreamExt;
    let results: Vec<(String, Result<String>)> =
        futures::stream::iter(pods.into_iter().zip(&plan.tasks))
            .map(|((pod, prompt), t)| async move {
                let task = t.id.clone();
                let r = create_one(api, ns, &pod, prompt, args, plan, t).await;
                if let (true, Ok((name, uid))) = (args.wait, &r)
                    && let Err(e) =
                        crate::follow::wait_started(api, name, uid.as_deref(), args.timeout).await
                {
                    return (task, Err(e));
                }
                (task, r.map(|(name, _)| name))
            })
            .buffer_unordered(PARALLEL_CREATES)
            .collect()
            .await;
    let failed: Vec<&str> = results
        .iter()
        .filter_map(|(task, r)| {
            r.as_ref().err().map(|e| {
                eprintln!("error: task {task}: {e}");
                task.as_str()
            })
        })
        .collect();
    if failed.is_empty() {
        return Ok(exit::OK);
    }
    eprintln!(
        "error: {} of {} tasks failed: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    );
    Ok(exit::FAILURE)
}

fn print_pod(pod: &Pod, format: Output) -> Result<()> {
    match format {
        Output::Name => {
            println!("pod/{}", pod.metadata.name.as_deref().unwrap_or(""));
            Ok(())
        }
        Output::Wide => Err(Error::usage(
            "-o wide is for `asdo list`; use yaml, json or name",
        )),
        f => print_object(pod, f),
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

fn read_prompt(args: &SpawnArgs) -> Result<Option<String>> {
    Ok(match (&args.prompt, &args.prompt_file) {
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

fn make_task(
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
    let (context_dir, spec_dir) = split_context_dir(context)?;
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

fn plan(args: &SpawnArgs) -> Result<Plan> {
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
    let prompt = read_prompt(args)?;

    let single_given = [
        &args.task_id,
        &args.pos_task_id,
        &args.branch,
        &args.pos_branch,
    ]
    .iter()
    .any(|o| o.is_some());
    let batch = !lists.is_empty();
    let tasks = if !batch {
        let context = args
            .context_dir
            .clone()
            .or_else(|| args.pos_context_dir.clone());
        vec![make_task(
            SpawnArgs::pick(&args.task_id, &args.pos_task_id),
            SpawnArgs::pick(&args.branch, &args.pos_branch),
            SpawnArgs::pick(&args.repo, &args.pos_repo),
            context.as_deref(),
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
        let context = args
            .context_dir
            .as_deref()
            .or(args.pos_context_dir.as_deref());
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
    })
}

/// Defaults < cluster ConfigMap < -f files < --set < dedicated flags.
fn render_pod(
    scope: &Scope,
    plan: &Plan,
    task: &Task,
    cluster_values: Option<Value>,
) -> Result<Rendered> {
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
    if v.pod.ssh_secret.enabled && v.pod.ssh_secret.name.is_empty() {
        return Err(Error::usage(
            "pod.sshSecret.enabled needs a Secret name: pass --ssh-secret NAME",
        ));
    }
    if v.pod.git_token_secret.enabled && v.pod.git_token_secret.name.is_empty() {
        return Err(Error::usage(
            "pod.gitTokenSecret.enabled needs a Secret name: --set pod.gitTokenSecret.name=NAME",
        ));
    }
    if v.agent.pull_request && !v.pod.git_token_secret.enabled {
        return Err(Error::usage(
            "agent.pullRequest (--pr) needs a forge token: --set pod.gitTokenSecret.enabled=true --set pod.gitTokenSecret.name=NAME",
        ));
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
    let pod = render::pod(&v, &task, &target);
    let prompt = render::prompt_config_map(&pod, &task);
    Ok((pod, prompt))
}

/// A task's Pod, plus the ConfigMap carrying its prompt when that is too big for an env value.
type Rendered = (Pod, Option<ConfigMap>);

/// `--context-dir` carries two meanings in the wild: a pod path (`/workspace/...`) or
/// spec-kit's FEATURE_DIR, a path on the caller's machine that means nothing in the pod.
/// Returns (pod context dir, repository-relative spec dir).
fn split_context_dir(dir: Option<&str>) -> Result<(Option<String>, Option<String>)> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Ok((None, None));
    };
    if dir == "/workspace" || dir.starts_with("/workspace/") {
        return Ok((Some(dir.trim_end_matches('/').to_string()), None));
    }
    let path = Path::new(dir);
    if path.is_relative() {
        return clean_relative(dir).map(|d| (None, Some(d)));
    }
    match repo_relative(path) {
        Some(rel) if !rel.is_empty() => Ok((None, Some(rel))),
        Some(_) => Ok((None, None)),
        None => {
            eprintln!(
                "warning: --context-dir {dir} is not inside a git checkout here; the agent works in the pod's default directory"
            );
            Ok((None, None))
        }
    }
}

fn clean_relative(dir: &str) -> Result<String> {
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Error::usage(format!(
            "invalid --context-dir {dir:?}: a repository-relative path must not contain '..'"
        )));
    }
    Ok(parts.join("/"))
}

/// The path relative to the root of the git checkout that contains it.
fn repo_relative(path: &Path) -> Option<String> {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let root = abs.ancestors().find(|a| a.join(".git").exists())?;
    let rel = abs.strip_prefix(root).ok()?;
    Some(rel.to_string_lossy().replace('\\', "/"))
}

/// Delete the pod `existing::decide` chose to replace and wait until it is gone.
async fn delete_existing(api: &kube::Api<Pod>, existing: &Pod, ns: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_dir_meanings() {
        assert_eq!(split_context_dir(None).unwrap(), (None, None));
        assert_eq!(
            split_context_dir(Some("/workspace/sub/")).unwrap(),
            (Some("/workspace/sub".into()), None)
        );
        assert_eq!(
            split_context_dir(Some("./specs/001-auth")).unwrap(),
            (None, Some("specs/001-auth".into()))
        );
        assert!(split_context_dir(Some("../x")).is_err());
        // This crate is a git checkout: a host path inside it becomes repo-relative.
        let here = env!("CARGO_MANIFEST_DIR");
        if Path::new(here).join(".git").exists() {
            assert_eq!(
                split_context_dir(Some(&format!("{here}/src/cli"))).unwrap(),
                (None, Some("src/cli".into()))
            );
        }
        assert_eq!(
            split_context_dir(Some("/nonexistent-host-dir/specs/1")).unwrap(),
            (None, None),
            "a host path outside any checkout must not leak into the pod"
        );
    }
}
