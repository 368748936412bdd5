//! `asdo mcp`: asdo's verbs as MCP tools on stdio, with rmcp (the official Rust SDK).
//!
//! Every tool runs the asdo CLI itself (this same binary) with the flags its
//! arguments name, so a tool has exactly the CLI's validation, API calls, messages
//! and exit codes: there is no second implementation to drift. Running it as a
//! child also keeps stdout, which carries the MCP protocol here, out of reach of
//! the verbs' own printing, and a verb that fails cannot take the server down.
//!
//! Results: the CLI's stdout as short text (bounded), plus structured content. A
//! usage error (exit 2) or a run-time failure is `isError: true` with the CLI's
//! one-line `error: …` message. For `wait_tasks`, `task_logs` and `send_message` a
//! failed task or a timeout is a result, not a tool error: the tool did its job.
//!
//! Hostile input: the client may be a prompt-injected model. Every argument is
//! checked here as the CLI's typed value (task id, namespace, selector, duration…)
//! before any process starts, and refused with `isError` and one line; the child's
//! command line is built by `crate::argv`, where a value can never become a flag.
//! Prompts and messages, which are free text of any size, go to the child on stdin,
//! never into argv or a file. Each child runs in its own process group, killed when
//! its request is cancelled or the server goes away.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::argv::{Argv, GlobalFlags};
use crate::error::{Error, Result, exit};

/// Text results are cut to this many bytes (the end is kept: it is the newest).
const MAX_TEXT: usize = 64 * 1024;
/// `task_logs` never returns more than this, whatever max_bytes asks.
const MAX_LOG_BYTES: usize = 1024 * 1024;
/// Bounds on what a tool call may hand the CLI, so a refusal is one short line
/// (and argv never nears the kernel's limit): ids and names are far shorter.
const MAX_NAME: usize = 253;
/// `--set` values and repository URLs.
const MAX_VALUE: usize = 16 * 1024;
/// `wait_tasks` ids per call.
const MAX_TASK_IDS: usize = 1000;
/// A prompt or message (sent on stdin): the size of a ConfigMap, the most spawn can carry.
const MAX_TEXT_INPUT: usize = 1024 * 1024;

/// What every child asdo gets: the server's own global flags.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub exe: PathBuf,
    /// The server's --kubeconfig, --context, -n, -e, --release-name and timeouts; a
    /// tool's `namespace`/`environment` replace those two. Nothing else does: a tool
    /// call cannot choose another cluster or kubeconfig.
    pub globals: GlobalFlags,
}

#[derive(Clone)]
pub struct Server {
    defaults: Defaults,
    #[allow(dead_code, reason = "read by the tool_handler macro")]
    tool_router: ToolRouter<Server>,
}

/// Where a tool works; each field defaults to the server's flags.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct Place {
    /// Namespace of the task pods (default: the server's -n, else the environment's).
    pub namespace: Option<String>,
    /// Environment whose chart values apply: dev, stg or prod.
    pub environment: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SpawnTask {
    /// Task id, e.g. T001 (the pod is agent-<id lowercased>).
    pub task_id: String,
    /// Git branch the agent works on and pushes, e.g. specs/001-auth/T001-async.
    pub branch: String,
    /// Git repository URL (https://, ssh://, git@host:path or file://).
    pub repo: String,
    /// What the agent should do (default: implement the task from the spec's tasks.md).
    pub prompt: Option<String>,
    /// A pod path under /workspace, or the spec directory (spec-kit's FEATURE_DIR).
    pub context_dir: Option<String>,
    /// OpenCode model, provider/model.
    pub model: Option<String>,
    /// Secret holding the git SSH private key.
    pub ssh_secret: Option<String>,
    /// Container image.
    pub image: Option<String>,
    /// Chart values, Helm --set syntax: ["pod.activeDeadlineSeconds=3600"].
    #[serde(default)]
    pub set: Vec<String>,
    /// Delete an existing finished pod of the same task first.
    #[serde(default)]
    pub replace: bool,
    /// Only render the pod; contact no cluster.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListTasks {
    /// Only pods in this phase (Pending, Running, Succeeded, Failed, Unknown).
    pub phase: Option<String>,
    /// Extra label selector, added to app=agent-orchestrator.
    pub selector: Option<String>,
    /// Every namespace.
    #[serde(default)]
    pub all_namespaces: bool,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskStatus {
    /// Task id (T001) or pod name (agent-t001).
    pub task_id: String,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskLogs {
    /// Task id (T001) or pod name (agent-t001).
    pub task_id: String,
    /// The last N lines (default 200).
    pub tail: Option<i64>,
    /// Only lines newer than this, e.g. 10m.
    pub since: Option<String>,
    /// Return at most this many bytes, the newest (default 65536, at most 1048576).
    pub max_bytes: Option<usize>,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitTasks {
    /// Task ids (T001) or pod names; empty with all=true waits for every task pod.
    #[serde(default)]
    pub task_ids: Vec<String>,
    /// Every task pod in the namespace now.
    #[serde(default)]
    pub all: bool,
    /// Give up after this long, e.g. 10m (default 10m).
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SendMessage {
    /// Task id (T001) or pod name (agent-t001).
    pub task_id: String,
    /// The follow-up message for the task's OpenCode session.
    pub message: String,
    /// Give up waiting for the answer after this long, e.g. 10m (default 30m).
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub place: Place,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CleanupTasks {
    /// Only this phase (Pending/Running/Unknown need force).
    pub phase: Option<String>,
    /// Only this task.
    pub task_id: Option<String>,
    /// Extra label selector.
    pub selector: Option<String>,
    /// Only pods finished (else created) longer ago than this, e.g. 2h.
    pub older_than: Option<String>,
    /// Every phase (needs force).
    #[serde(default)]
    pub all: bool,
    /// Allow deleting pods that may still run.
    #[serde(default)]
    pub force: bool,
    /// Only say what would be deleted.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(flatten)]
    pub place: Place,
}

/// One run of the CLI.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The CLI's `error: …` line, without the prefix.
    fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map(str::to_string)
            .unwrap_or_else(|| match self.stderr.trim() {
                "" => format!("asdo exited {}", self.code),
                s => s.lines().last().unwrap_or(s).to_string(),
            })
    }

    fn tool_error(&self) -> CallToolResult {
        error_result(self.code, self.error_line())
    }
}

/// `isError: true` with one line, and the exit code it stands for.
fn error_result(code: i32, msg: String) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(msg.clone())]);
    r.structured_content = Some(json!({"exit_code": code, "error": msg}));
    r
}

/// A tool argument refused before anything ran: as the CLI's usage error (exit 2).
fn refused(e: Refused) -> CallToolResult {
    error_result(exit::USAGE, e.0)
}

fn ok(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

/// Keeps the last `max` bytes (on a line boundary when there is one); true when cut.
fn keep_tail(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_string(), false);
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    let cut = &s[start..];
    let cut = cut.find('\n').map_or(cut, |i| &cut[i + 1..]);
    (cut.to_string(), true)
}

/// Why a tool argument was refused: one line naming the argument.
#[derive(Debug)]
struct Refused(String);

type Checked<T = ()> = std::result::Result<T, Refused>;

/// The argument's name in front of the CLI's own message for the value.
fn named(field: &str, r: Result<impl Sized>) -> Checked {
    r.map(|_| ()).map_err(|e| Refused(format!("{field}: {e}")))
}

/// Length and control characters first, so the typed check's message (which quotes
/// the value) stays one short line.
fn bounded(field: &str, s: &str, max: usize) -> Checked {
    if s.len() > max {
        return Err(Refused(format!(
            "{field}: {} bytes is too long (at most {max})",
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(Refused(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

/// A task id (T001) or pod name (agent-t001), as `logs`/`status`/`wait`/`send` take it.
fn task_ref(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_NAME)?;
    named(field, crate::task::pod_name_for(s))
}

/// A task id as `spawn` takes it.
fn task_id(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_NAME)?;
    named(field, crate::task::validate_task_id(s))
}

fn duration(field: &str, s: &str) -> Checked {
    bounded(field, s, 64)?;
    crate::humantime::parse(s)
        .map(|_| ())
        .map_err(|e| Refused(format!("{field}: {e}")))
}

fn selector(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_VALUE)?;
    named(field, crate::validate::selector(s))
}

/// A pod phase word; the CLI names the known ones when it is not one of them.
fn phase(field: &str, s: &str) -> Checked {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Refused(format!(
            "{field}: use one of Pending, Running, Succeeded, Failed, Unknown"
        )));
    }
    Ok(())
}

/// A free-form single value (model, `--set KEY=VALUE`): bounded, one line, and not
/// looking like a flag (it is passed as `--flag=value` anyway).
fn plain(field: &str, s: &str, max: usize) -> Checked {
    bounded(field, s, max)?;
    if s.starts_with('-') || s.trim().is_empty() {
        return Err(Refused(format!(
            "{field}: must not be empty or start with '-'"
        )));
    }
    Ok(())
}

/// Free text for stdin: any characters, bounded.
fn text(field: &str, s: &str) -> Checked {
    if s.len() > MAX_TEXT_INPUT {
        return Err(Refused(format!(
            "{field}: {} bytes is too long (at most {MAX_TEXT_INPUT})",
            s.len()
        )));
    }
    Ok(())
}

/// `context_dir`: a pod path under /workspace, or a directory of the project the
/// server runs in (relative, or absolute inside the working directory). spawn reads a
/// host path to find the spec-kit feature and writes its delegation file there, so a
/// tool call may not name a directory elsewhere on this machine.
fn context_dir(field: &str, s: &str) -> Checked {
    bounded(field, s, 4096)?;
    if s == "/workspace" || s.starts_with("/workspace/") {
        return if s.split('/').any(|p| p == "..") {
            Err(Refused(format!("{field}: must not contain '..'")))
        } else {
            Ok(())
        };
    }
    let path = Path::new(s);
    if path.is_relative() {
        if s.starts_with('-') || path.components().any(|c| c.as_os_str() == "..") {
            return Err(Refused(format!(
                "{field}: a project-relative path must not start with '-' or contain '..'"
            )));
        }
        return Ok(());
    }
    let inside = std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .zip(path.canonicalize().ok())
        .is_some_and(|(cwd, p)| p.starts_with(cwd));
    if inside {
        Ok(())
    } else {
        Err(Refused(format!(
            "{field}: {s:?} is outside the project this server runs in: give a pod path under /workspace or a directory of the project"
        )))
    }
}

/// A running child's process group, killed (SIGKILL) when this is dropped armed:
/// on cancellation, when the client goes away, or when the server stops. The group,
/// not just the pid: `wait --on-done` and friends start children of their own.
struct Group(Option<u32>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take()
            && let Ok(pgid) = i32::try_from(pgid)
            && pgid > 0
        {
            // SAFETY: kill(2) on a process group we created (process_group(0) below).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Server {
    pub fn new(defaults: Defaults) -> Server {
        Server {
            defaults,
            tool_router: Self::tool_router(),
        }
    }

    /// The server's global flags with the tool's namespace/environment, each checked.
    fn globals(&self, place: &Place) -> Checked<GlobalFlags> {
        let mut g = self.defaults.globals.clone();
        if let Some(ns) = &place.namespace {
            bounded("namespace", ns, MAX_NAME)?;
            named("namespace", crate::validate::namespace(ns))?;
            g.namespace = Some(ns.clone());
        }
        if let Some(env) = &place.environment {
            bounded("environment", env, MAX_NAME)?;
            named("environment", crate::values::defaults_for(env))?;
            g.environment = env.clone();
        }
        Ok(g)
    }

    /// Runs `asdo <argv> <global flags>`, `input` on its stdin (else stdin closed),
    /// output collected; the child's process group is killed if `ctx` is cancelled.
    async fn asdo(
        &self,
        globals: &GlobalFlags,
        mut argv: Argv,
        input: Option<String>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Option<Ran>> {
        use tokio::io::AsyncWriteExt;
        let exe = &self.defaults.exe;
        globals.push_onto(&mut argv);
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(argv.into_args())
            .env("NO_COLOR", "1")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::other(format!("cannot run {}: {e}", exe.display())))?;
        let mut group = Group(child.id());
        let stdin = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(text)) = (stdin, input) {
                // A child that exits early (bad input) closes its end: not our error.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let run = async { tokio::join!(feed, child.wait_with_output()).1 };
        let out = tokio::select! {
            out = run => out.map_err(|e| Error::other(format!("cannot run {}: {e}", exe.display())))?,
            () = ctx.ct.cancelled() => {
                group.kill();
                return Ok(None);
            }
        };
        // Exited: its group id may be reused from now on, so it is not signalled.
        group.0 = None;
        Ok(Some(Ran {
            code: out.status.code().unwrap_or(exit::FAILURE),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }))
    }

    /// Checks the place, runs the CLI, and makes the tool's result.
    async fn run_tool(
        &self,
        place: &Place,
        argv: Checked<Argv>,
        input: Option<String>,
        ctx: &RequestContext<RoleServer>,
        ok_codes: &[i32],
        make: impl FnOnce(&Ran) -> CallToolResult,
    ) -> CallToolResult {
        let (argv, globals) = match argv.and_then(|a| Ok((a, self.globals(place)?))) {
            Ok(v) => v,
            Err(e) => return refused(e),
        };
        match self.asdo(&globals, argv, input, ctx).await {
            Err(e) => error_result(exit::FAILURE, e.to_string()),
            Ok(None) => error_result(exit::FAILURE, "cancelled".into()),
            Ok(Some(ran)) if ran.code == exit::OK || ok_codes.contains(&ran.code) => make(&ran),
            Ok(Some(ran)) => ran.tool_error(),
        }
    }
}

fn spawn_argv(a: &SpawnTask) -> Checked<Argv> {
    task_id("task_id", &a.task_id)?;
    bounded("branch", &a.branch, MAX_NAME)?;
    named("branch", crate::task::validate_branch(&a.branch))?;
    bounded("repo", &a.repo, MAX_VALUE)?;
    named("repo", crate::task::validate_repo(&a.repo))?;
    if let Some(p) = &a.prompt {
        text("prompt", p)?;
    }
    if let Some(d) = &a.context_dir {
        context_dir("context_dir", d)?;
    }
    if let Some(m) = &a.model {
        plain("model", m, MAX_NAME)?;
    }
    if let Some(s) = &a.ssh_secret {
        bounded("ssh_secret", s, MAX_NAME)?;
        named("ssh_secret", crate::validate::object_name("Secret", s))?;
    }
    if let Some(i) = &a.image {
        bounded("image", i, 4096)?;
        if !crate::validate::is_image(i) {
            return Err(Refused(format!(
                "image: invalid image {i:?}: use [registry/]name[:tag][@sha256:digest] in lowercase"
            )));
        }
    }
    if a.set.len() > 100 {
        return Err(Refused("set: at most 100 values".into()));
    }
    for s in &a.set {
        plain("set", s, MAX_VALUE)?;
        if !s.contains('=') {
            return Err(Refused(format!(
                "set: {:?} is not KEY=VALUE",
                s.chars().take(80).collect::<String>()
            )));
        }
    }
    let mut argv = Argv::new("spawn");
    argv.opt("task-id", &a.task_id)
        .opt("branch", &a.branch)
        .opt("repo", &a.repo)
        .opt_some("context-dir", a.context_dir.as_deref())
        .opt_some("model", a.model.as_deref())
        .opt_some("ssh-secret", a.ssh_secret.as_deref())
        .opt_some("image", a.image.as_deref());
    if a.prompt.is_some() {
        // On stdin: any size, and a prompt starting with '-' is just text.
        argv.opt("prompt-file", "-");
    }
    for s in &a.set {
        argv.opt("set", s);
    }
    argv.flag("replace", a.replace);
    if a.dry_run {
        argv.flag("dry-run", true).opt("output", "json");
    }
    Ok(argv)
}

fn list_argv(a: &ListTasks) -> Checked<Argv> {
    if let Some(p) = &a.phase {
        phase("phase", p)?;
    }
    if let Some(s) = &a.selector {
        selector("selector", s)?;
    }
    let mut argv = Argv::new("list");
    argv.opt("output", "json")
        .opt_some("phase", a.phase.as_deref())
        .opt_some("selector", a.selector.as_deref())
        .flag("all-namespaces", a.all_namespaces);
    Ok(argv)
}

fn status_argv(a: &TaskStatus) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    let mut argv = Argv::new("status");
    argv.positional(&a.task_id);
    Ok(argv)
}

fn logs_argv(a: &TaskLogs) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    if let Some(s) = &a.since {
        duration("since", s)?;
    }
    let tail = a.tail.unwrap_or(200);
    if tail < -1 {
        return Err(Refused(format!(
            "tail: {tail} is not a line count (-1 means all)"
        )));
    }
    let mut argv = Argv::new("logs");
    argv.flag("no-follow", true)
        .opt("tail", tail.to_string())
        .opt_some("since", a.since.as_deref())
        .positional(&a.task_id);
    Ok(argv)
}

fn wait_argv(a: &WaitTasks) -> Checked<Argv> {
    if a.task_ids.len() > MAX_TASK_IDS {
        return Err(Refused(format!(
            "task_ids: {} ids; at most {MAX_TASK_IDS} per call",
            a.task_ids.len()
        )));
    }
    for id in &a.task_ids {
        task_ref("task_ids", id)?;
    }
    let timeout = a.timeout.as_deref().unwrap_or("10m");
    duration("timeout", timeout)?;
    let mut argv = Argv::new("wait");
    argv.flag("all", a.all).opt("timeout", timeout);
    for id in &a.task_ids {
        argv.positional(id);
    }
    Ok(argv)
}

fn send_argv(a: &SendMessage) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    text("message", &a.message)?;
    let timeout = a.timeout.as_deref().unwrap_or("30m");
    duration("timeout", timeout)?;
    let mut argv = Argv::new("send");
    // The message on stdin: no file to plant a symlink at, any size, never in argv.
    argv.opt("file", "-")
        .opt("timeout", timeout)
        .positional(&a.task_id);
    Ok(argv)
}

fn cleanup_argv(a: &CleanupTasks) -> Checked<Argv> {
    if let Some(p) = &a.phase {
        phase("phase", p)?;
    }
    if let Some(t) = &a.task_id {
        task_ref("task_id", t)?;
    }
    if let Some(s) = &a.selector {
        selector("selector", s)?;
    }
    if let Some(d) = &a.older_than {
        duration("older_than", d)?;
    }
    let mut argv = Argv::new("cleanup");
    argv.opt_some("phase", a.phase.as_deref())
        .opt_some("task-id", a.task_id.as_deref())
        .opt_some("selector", a.selector.as_deref())
        .opt_some("older-than", a.older_than.as_deref())
        .flag("all", a.all)
        .flag("force", a.force)
        .flag("dry-run", a.dry_run);
    Ok(argv)
}

#[tool_router]
impl Server {
    #[tool(
        description = "Create the pod for one task (asdo spawn): the agent clones repo, works on branch, commits and pushes. Returns at once."
    )]
    async fn spawn_task(
        &self,
        Parameters(a): Parameters<SpawnTask>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let argv = spawn_argv(&a);
        let task = a.task_id.clone();
        Ok(self
            .run_tool(&a.place, argv, a.prompt.clone(), &ctx, &[], |ran| {
                if a.dry_run {
                    let pod: Value = serde_json::from_str(&ran.stdout).unwrap_or(Value::Null);
                    return ok(
                        format!(
                            "dry run: task {task} would create pod agent-{}",
                            task.to_ascii_lowercase()
                        ),
                        json!({"task_id": task, "dry_run": true, "pod": pod}),
                    );
                }
                let line = ran.stdout.trim().to_string();
                let pod = line
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.strip_prefix("pod/"))
                    .unwrap_or_default()
                    .to_string();
                ok(
                    format!("{line}; follow it with task_logs or wait_tasks"),
                    json!({"task_id": task, "pod": pod, "created": true}),
                )
            })
            .await)
    }

    #[tool(description = "List task pods (asdo list): task, pod, phase, exit code, branch.")]
    async fn list_tasks(
        &self,
        Parameters(a): Parameters<ListTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        Ok(self
            .run_tool(&a.place, list_argv(&a), None, &ctx, &[], |ran| {
                let list: Value = serde_json::from_str(&ran.stdout).unwrap_or(Value::Null);
                let tasks: Vec<Value> =
                    list.as_array().into_iter().flatten().map(summary).collect();
                let text = if tasks.is_empty() {
                    "no task pods".to_string()
                } else {
                    tasks
                        .iter()
                        .map(|t| {
                            let exit = t["exit_code"]
                                .as_i64()
                                .map_or(String::new(), |c| format!(" exit={c}"));
                            format!(
                                "{} {}{exit} {}",
                                t["task_id"].as_str().unwrap_or("?"),
                                t["status"].as_str().unwrap_or("?"),
                                t["branch"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                ok(text, json!({"tasks": tasks}))
            })
            .await)
    }

    #[tool(
        description = "One task's state (asdo status): phase, exit code, branch, the agent's last marker and the pod's events."
    )]
    async fn task_status(
        &self,
        Parameters(a): Parameters<TaskStatus>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let task = a.task_id.clone();
        Ok(self
            .run_tool(&a.place, status_argv(&a), None, &ctx, &[], |ran| {
                let (text, _) = keep_tail(&ran.stdout, MAX_TEXT);
                ok(text.clone(), json!({"task_id": task, "status": text}))
            })
            .await)
    }

    #[tool(
        description = "A task's log so far (asdo logs --no-follow): the last `tail` lines, bounded to max_bytes (newest kept)."
    )]
    async fn task_logs(
        &self,
        Parameters(a): Parameters<TaskLogs>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let max = a.max_bytes.unwrap_or(MAX_TEXT).min(MAX_LOG_BYTES);
        let task = a.task_id.clone();
        // The exit code of `logs` is the task's own: a failed task's log is still a result.
        let task_codes: Vec<i32> = (1..=255).filter(|c| *c != exit::USAGE).collect();
        Ok(self
            .run_tool(&a.place, logs_argv(&a), None, &ctx, &task_codes, |ran| {
                if ran.stdout.is_empty() && ran.stderr.contains("error: ") {
                    return ran.tool_error();
                }
                let (text, truncated) = keep_tail(&ran.stdout, max);
                let lines = text.lines().count();
                ok(
                    text.clone(),
                    json!({"task_id": task, "log": text, "lines": lines, "truncated": truncated, "exit_code": ran.code}),
                )
            })
            .await)
    }

    #[tool(
        description = "Block until the tasks finish or the timeout passes (asdo wait); one line per task with its phase, exit code and commit."
    )]
    async fn wait_tasks(
        &self,
        Parameters(a): Parameters<WaitTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let ok_codes = [exit::FAILURE, exit::TIMEOUT];
        Ok(self
            .run_tool(&a.place, wait_argv(&a), None, &ctx, &ok_codes, |ran| {
                // `wait` says "error: …" only for what stopped it from waiting at all.
                if ran.code == exit::FAILURE && ran.stdout.trim().is_empty() {
                    return ran.tool_error();
                }
                let lines: Vec<&str> = ran.stdout.lines().collect();
                let text = match ran.code {
                    exit::OK => format!("all succeeded\n{}", ran.stdout.trim_end()),
                    exit::TIMEOUT => format!("timed out\n{}", ran.stdout.trim_end()),
                    _ => format!("some failed\n{}", ran.stdout.trim_end()),
                };
                ok(
                    text,
                    json!({"all_succeeded": ran.code == exit::OK, "timed_out": ran.code == exit::TIMEOUT, "exit_code": ran.code, "results": lines}),
                )
            })
            .await)
    }

    #[tool(
        description = "Send a follow-up message into a running task's OpenCode session (asdo send) and return its reply once the session is idle again."
    )]
    async fn send_message(
        &self,
        Parameters(a): Parameters<SendMessage>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let task = a.task_id.clone();
        let ok_codes = [exit::TIMEOUT];
        let input = Some(a.message.clone());
        Ok(self
            .run_tool(&a.place, send_argv(&a), input, &ctx, &ok_codes, |ran| {
                let (text, truncated) = keep_tail(&ran.stdout, MAX_TEXT);
                let timed_out = ran.code == exit::TIMEOUT;
                ok(
                    if timed_out { format!("no answer before the timeout\n{text}") } else { text.clone() },
                    json!({"task_id": task, "reply": text, "truncated": truncated, "timed_out": timed_out}),
                )
            })
            .await)
    }

    #[tool(
        description = "Delete finished task pods (asdo cleanup); with phase/task_id/selector/older_than to narrow, dry_run to preview."
    )]
    async fn cleanup_tasks(
        &self,
        Parameters(a): Parameters<CleanupTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        Ok(self
            .run_tool(&a.place, cleanup_argv(&a), None, &ctx, &[], |ran| {
                let deleted: Vec<String> = ran
                    .stdout
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(|p| p.trim_start_matches("pod/").to_string())
                    .collect();
                let text = if deleted.is_empty() {
                    "nothing to delete".to_string()
                } else {
                    ran.stdout.trim_end().to_string()
                };
                ok(text, json!({"pods": deleted, "dry_run": a.dry_run}))
            })
            .await)
    }
}

#[tool_handler]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "asdo runs AI coding agents (OpenCode) as Kubernetes pods, one pod per task on its own git branch. \
             spawn_task starts one; wait_tasks or task_status/task_logs follow it; send_message steers a running one; \
             cleanup_tasks removes finished pods.",
        )
    }
}

/// A task object from `asdo list -o json` as the few fields a caller acts on.
fn summary(task: &Value) -> Value {
    json!({
        "task_id": task["id"],
        "pod": task["pod"],
        "namespace": task["namespace"],
        "phase": task["phase"],
        "status": task["status"],
        "exit_code": task["exit_code"],
        "branch": task["branch"],
    })
}

/// Serves until the client closes stdin, or SIGINT/SIGTERM. Either way every running
/// tool's request is cancelled first, so no child asdo outlives the server.
pub async fn serve(defaults: Defaults) -> Result<()> {
    let service = Server::new(defaults)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::other(format!("MCP: cannot start on stdio: {e}")))?;
    let stop = service.cancellation_token();
    let signals = tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = sigterm => {}
        }
        stop.cancel();
    });
    let quit = service.waiting().await;
    signals.abort();
    quit.map_err(|e| Error::other(format!("MCP: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_tail_keeps_whole_newest_lines() {
        assert_eq!(keep_tail("a\nb\n", 10), ("a\nb\n".into(), false));
        assert_eq!(keep_tail("aaaa\nbb\ncc\n", 6), ("cc\n".into(), true));
    }

    use crate::argv::tests::words;

    #[test]
    fn tool_arguments_become_values_never_flags() {
        let wait = |ids: &[&str], timeout: Option<&str>| {
            wait_argv(&WaitTasks {
                task_ids: ids.iter().map(|s| s.to_string()).collect(),
                all: false,
                timeout: timeout.map(str::to_string),
                place: Place::default(),
            })
        };
        assert_eq!(
            words(wait(&["T1", "agent-t2"], Some("5m")).unwrap()),
            ["wait", "--timeout=5m", "--", "T1", "agent-t2"]
        );
        for ids in [
            &["M1", "--on-done", "id > /tmp/x"][..],
            &["--report-dir=/tmp"],
            &["--kubeconfig=/x"],
            &["--help"],
            &["-n"],
        ] {
            let e = wait(ids, None).unwrap_err();
            assert!(e.0.starts_with("task_ids: "), "{}", e.0);
        }
        assert!(wait(&["T1"], Some("1s --on-done x")).is_err());

        let spawn = |prompt: &str, context_dir: Option<&str>| {
            spawn_argv(&SpawnTask {
                task_id: "T1".into(),
                branch: "specs/1/T1".into(),
                repo: "git@github.com:o/r.git".into(),
                prompt: Some(prompt.into()),
                context_dir: context_dir.map(str::to_string),
                model: None,
                ssh_secret: None,
                image: None,
                set: vec!["pod.x=--y".into()],
                replace: false,
                dry_run: false,
                place: Place::default(),
            })
        };
        // The prompt is not in argv at all (it goes on stdin).
        assert_eq!(
            words(spawn("- add tests", None).unwrap()),
            [
                "spawn",
                "--task-id=T1",
                "--branch=specs/1/T1",
                "--repo=git@github.com:o/r.git",
                "--prompt-file=-",
                "--set=pod.x=--y"
            ]
        );
        spawn("p", Some("/workspace/sub")).unwrap();
        spawn("p", Some("specs/001-auth")).unwrap();
        for bad in ["/etc", "../x", "/workspace/../etc", "-x"] {
            let e = spawn("p", Some(bad)).unwrap_err();
            assert!(e.0.starts_with("context_dir: "), "{bad}: {}", e.0);
        }
        let e = task_ref("task_id", &"T".repeat(300_000)).unwrap_err();
        assert!(e.0.len() < 100, "{}", e.0);
    }

    #[test]
    fn error_line_is_the_clis_message() {
        let r = Ran {
            code: 2,
            stdout: String::new(),
            stderr: "hint\nerror: invalid task id \"x!\": use letters\n".into(),
        };
        assert_eq!(r.error_line(), "invalid task id \"x!\": use letters");
    }
}
