//! `asdo spawn`: validate, render, create one pod, return. spec-kit calls this once
//! per [ASYNC] task and reads only the exit code, so the default path makes one
//! read (the chart's ConfigMap) and one write (the Pod), and never waits.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Pod;

use clap::builder::TypedValueParser as _;

use super::{Global, Output, print_object};
use crate::error::{Error, Result, exit};
use crate::existing::IfExists;
use crate::follow::StartBounds;
use crate::output::{self, Format};
use crate::runtime::Runtime;
use crate::runtime::follow::Follow;
use crate::runtime::spawn::{LocalFlags, Spawned};
use crate::spawn::{self, Created, Rendered, SpawnRequest};
use crate::speckit;
use crate::taskpod::TaskState;

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
    /// Output: yaml or json prints the task object created or found unchanged (one JSON
    /// object per line; YAML documents), name prints pod/<name>. With --dry-run, yaml or
    /// json prints the pod that would be created.
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
    /// Not counted while the pod is queued (see --queue).
    #[arg(long, visible_alias = "start-timeout", default_value = "120s", value_parser = crate::humantime::parse)]
    pub timeout: Duration,
    /// Queue the task in this Kueue LocalQueue (label kueue.x-k8s.io/queue-name; value
    /// pod.queueName): Kueue holds the pod (Queued) until the queue has room.
    #[arg(long, value_name = "NAME", value_parser = parse_queue)]
    pub queue: Option<String>,
    /// With --wait or --follow: give up on a pod still queued after this long (default: no
    /// limit; --start-timeout counts only once it has left the queue).
    #[arg(long, value_parser = crate::humantime::parse)]
    pub queue_timeout: Option<Duration>,
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
    /// --runtime local: run the agent without the bubblewrap sandbox, with your own rights
    /// (said on every spawn).
    #[arg(long)]
    pub no_sandbox: bool,
    /// --runtime local: at most this many tasks run at once on this machine; the rest
    /// wait, Queued (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
}

/// A LocalQueue name is an object name and a label value: a DNS-1123 subdomain of at
/// most 63 characters.
fn parse_queue(s: &str) -> std::result::Result<String, String> {
    let label = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    if s.len() <= 63 && s.split('.').all(label) {
        Ok(s.to_string())
    } else {
        Err("a LocalQueue name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 63 characters".into())
    }
}

impl SpawnArgs {
    /// `--start-timeout` (not counted while queued) and `--queue-timeout`.
    fn start_bounds(&self) -> StartBounds {
        StartBounds {
            start: self.timeout,
            queued: self.queue_timeout,
        }
    }

    fn if_exists(&self) -> IfExists {
        match (self.replace, self.if_exists) {
            (true, _) => IfExists::Replace,
            (false, Some(p)) => p,
            (false, None) => IfExists::default_for(super::invoked_as_spawn_pod()),
        }
    }

    /// The call as data for the engine. Flags win over positionals, like the old
    /// spawn-pod.sh.
    fn request(&self) -> SpawnRequest {
        let pick = |flag: &Option<String>, pos: &Option<String>| flag.clone().or(pos.clone());
        SpawnRequest {
            task_id: pick(&self.task_id, &self.pos_task_id),
            branch: pick(&self.branch, &self.pos_branch),
            repo: pick(&self.repo, &self.pos_repo),
            context_dir: pick(&self.context_dir, &self.pos_context_dir),
            prompt: self.prompt.clone(),
            prompt_file: self.prompt_file.clone(),
            model: self.model.clone(),
            base: self.base.clone(),
            image: self.image.clone(),
            ssh_secret: self.ssh_secret.clone(),
            // --queue is pod.queueName, after (so over) any --set of it.
            sets: self
                .sets
                .iter()
                .cloned()
                .chain(self.queue.iter().map(|q| format!("pod.queueName={q}")))
                .collect(),
            values_files: self.values_files.clone(),
            pr: self.pr,
            allow_no_changes: self.allow_no_changes,
            report_dir: self.report_dir.clone(),
            follow: self.follow,
            if_exists: self.if_exists(),
            wait: self.wait.then_some(self.start_bounds()),
        }
    }
}

pub async fn run(global: &Global, args: SpawnArgs) -> Result<i32> {
    let scope = global.scope()?;
    let plan = spawn::plan(&args.request())?;
    // Render from the compiled-in values first so bad values fail before the cluster is touched.
    let offline: Vec<Rendered> = spawn::render_all(&scope, &plan, None)?;
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
    let rt = Runtime::connect(&scope).await?;
    let output = args.output;
    let printed = std::sync::atomic::AtomicUsize::new(0);
    let report = move |c: &Created| print_created(c, output, &printed);
    let flags = LocalFlags {
        no_sandbox: args.no_sandbox,
        max_parallel: args.max_parallel,
    };
    let (name, uid) = match rt.spawn(&scope, &plan, offline, flags, &report).await? {
        Spawned::Batch(results) => return Ok(batch_exit(&results)),
        Spawned::One { name, uid } => (name, uid),
    };
    let id = &plan.tasks[0].id;
    if args.output.is_none() {
        eprintln!("follow it: {}", rt.command(&format!("logs {id}")));
        if let Some(dir) = &plan.report_dir {
            eprintln!(
                "spec-kit's result: {} --report-dir {}",
                rt.command(&format!("wait {id}")),
                dir.display()
            );
        }
    }
    if args.follow {
        let opts = crate::follow::LogOptions {
            follow: true,
            start_timeout: Some(args.timeout),
            queue_timeout: args.queue_timeout,
            ..Default::default()
        };
        return rt.follow(Follow::One(&name), &opts).await;
    }
    if args.wait {
        rt.wait_started(id, &name, uid.as_deref(), args.start_bounds())
            .await?;
    }
    Ok(exit::OK)
}

/// `pod/x created|unchanged`, or with -o yaml|json the task object (the line then goes
/// to stderr): JSON one object per line, YAML one document per task.
fn print_created(
    c: &Created,
    output: Option<Output>,
    printed: &std::sync::atomic::AtomicUsize,
) -> Result<()> {
    let name = c.pod().metadata.name.as_deref().unwrap_or_default();
    let verb = match c {
        Created::Created(_) => "created",
        Created::Unchanged(_) => "unchanged",
    };
    let task = || TaskState::new(c.pod(), None, k8s_openapi::jiff::Timestamp::now());
    match (output, c) {
        (Some(Output::Json), _) => {
            eprintln!("pod/{name} {verb}");
            output::print_line(&task())
        }
        (Some(Output::Yaml), _) => {
            eprintln!("pod/{name} {verb}");
            if printed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                println!("---");
            }
            output::print(&task(), Format::Yaml)
        }
        (_, Created::Created(_)) => {
            println!("pod/{name} created");
            Ok(())
        }
        (_, Created::Unchanged(_)) => {
            println!("pod/{name} unchanged");
            Ok(())
        }
    }
}

/// A task list's end: each failed task named, then how many failed (exit 1), or exit 0.
fn batch_exit(results: &[(String, Result<String>)]) -> i32 {
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
        return exit::OK;
    }
    eprintln!(
        "error: {} of {} tasks failed: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    );
    exit::FAILURE
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
