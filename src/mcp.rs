//! `asdo mcp`: asdo's verbs as MCP tools on stdio, with rmcp (the official Rust SDK).
//!
//! Every tool runs the asdo CLI itself (this same binary) with the flags its
//! arguments name, so a tool has exactly the CLI's validation, API calls, messages
//! and exit codes: there is no second implementation to drift. Running it as a
//! child also keeps stdout, which carries the MCP protocol here, out of reach of
//! the verbs' own printing, and a verb that fails cannot take the server down.
//!
//! Results: every tool declares an `outputSchema` and returns `structuredContent`
//! of that shape (`output`), plus short text for clients that read only text. A
//! usage error (exit 2) or a run-time failure is `isError: true` with the CLI's
//! one-line `error: …` message. For `wait_tasks`, `task_logs` and `send_message` a
//! failed task or a timeout is a result, not a tool error: the tool did its job.
//!
//! Long calls: a `wait_tasks` call with a `progressToken` gets one
//! `notifications/progress` per task as it ends. A client that declares the MCP
//! Tasks extension (`io.modelcontextprotocol/tasks`) gets `spawn_task` and
//! `wait_tasks` as tasks: the call returns a task handle at once, `tasks/get` shows
//! how far it got (`statusMessage`) and then its result, and `tasks/cancel` kills
//! the child as a cancelled call does.
//!
//! Hostile input: the client may be a prompt-injected model. Every argument is
//! checked (`args`) as the CLI's typed value before any process starts, and refused
//! with `isError` and one line; the child's command line is built by `crate::argv`,
//! where a value can never become a flag. Prompts and messages, which are free text
//! of any size, go to the child on stdin, never into argv or a file. Each child runs
//! in its own process group, killed when its request or task is cancelled or the
//! server goes away.

mod args;
mod output;

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock, CreateTaskResult,
    GetTaskParams, GetTaskResult, ProgressNotificationParam, ProgressToken, ServerCapabilities,
    ServerConfig, UpdateTaskParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::task_manager::{TaskContext, TaskExit, TaskManager, TaskOptions};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::args::{
    AnswerTask, Checked, CleanupTasks, ListTasks, Place, Refused, SendMessage, SpawnTask, TaskLogs,
    TaskStatus, WaitTasks,
};
use crate::argv::{Argv, GlobalFlags};
use crate::error::{Error, Result, exit};

/// Text results are cut to this many bytes (the end is kept: it is the newest).
const MAX_TEXT: usize = 64 * 1024;
/// `task_logs` never returns more than this, whatever max_bytes asks.
const MAX_LOG_BYTES: usize = 1024 * 1024;
/// How long an MCP task lives beyond the work it runs: a finished task's result stays
/// readable (`tasks/get`) for about this long, and a task still running this long after
/// its own bound (a wait's timeout) is failed and its child killed.
const TASK_GRACE: Duration = Duration::from_secs(10 * 60);
/// `spawn_task` as a task: spawn returns at once, bounded by the request timeouts.
const SPAWN_BOUND: Duration = Duration::from_secs(5 * 60);

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
    /// The MCP tasks this server runs (rmcp's store: ids, states, results, expiry).
    tasks: TaskManager,
    #[allow(dead_code, reason = "read by the tool_handler macro")]
    tool_router: ToolRouter<Server>,
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
    r.structured_content = serde_json::to_value(output::Failure {
        exit_code: code,
        error: msg,
    })
    .ok();
    r
}

/// A tool argument refused before anything ran: as the CLI's usage error (exit 2).
fn refused(e: Refused) -> CallToolResult {
    error_result(exit::USAGE, e.0)
}

/// A call cancelled by the client (it no longer reads the answer).
fn cancelled() -> CallToolResult {
    error_result(exit::INTERRUPTED, "cancelled".into())
}

/// A result: `text` for older clients, `value` as structuredContent (of the tool's
/// outputSchema type).
fn ok(text: String, value: &impl Serialize) -> CallToolResult {
    match serde_json::to_value(value) {
        Ok(v) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(v);
            r
        }
        Err(e) => error_result(exit::FAILURE, format!("cannot encode the result: {e}")),
    }
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

/// Where a long call reports how far it got, as the tasks it waits for end.
enum Progress {
    /// The caller asked for nothing.
    None,
    /// `notifications/progress` with the request's progressToken.
    Notify {
        peer: Peer<RoleServer>,
        token: ProgressToken,
    },
    /// The MCP task's `statusMessage`, read by `tasks/get` (a task's request has
    /// already been answered, so its progressToken is no longer live).
    Task(TaskContext),
}

impl Progress {
    fn of(ctx: &RequestContext<RoleServer>) -> Progress {
        match ctx.meta.get_progress_token() {
            Some(token) => Progress::Notify {
                peer: ctx.peer.clone(),
                token,
            },
            None => Progress::None,
        }
    }

    /// `done` of `total` (when known) have ended; `line` is the latest.
    async fn report(&self, done: usize, total: Option<usize>, line: &str) {
        let of = total.map_or(String::new(), |t| format!(" of {t}"));
        let message = format!("{done}{of} ended; last: {line}");
        match self {
            Progress::None => {}
            Progress::Notify { peer, token } => {
                let mut p = ProgressNotificationParam::new(token.clone(), done as f64)
                    .with_message(message);
                if let Some(t) = total {
                    p = p.with_total(t as f64);
                }
                // A client gone away is noticed by the call itself.
                let _ = peer.notify_progress(p).await;
            }
            Progress::Task(t) => t.set_status_message(message),
        }
    }
}

/// A checked call: the child's argv and its global flags.
struct Prepared {
    argv: Argv,
    globals: GlobalFlags,
}

/// Whether this request may be answered with an MCP task: the client declared the
/// Tasks extension (per request, or at initialize for a session).
fn wants_task(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

impl Server {
    pub fn new(defaults: Defaults) -> Server {
        Server {
            defaults,
            tasks: TaskManager::new(),
            tool_router: Self::tool_router(),
        }
    }

    /// Checks the arguments and the place; a refusal is the tool's result.
    fn prepare(
        &self,
        place: &Place,
        argv: Checked<Argv>,
    ) -> std::result::Result<Prepared, CallToolResult> {
        let argv = argv.map_err(refused)?;
        let globals = args::globals(&self.defaults.globals, place).map_err(refused)?;
        Ok(Prepared { argv, globals })
    }

    /// Runs `asdo <argv> <global flags>`, `input` on its stdin (else stdin closed),
    /// output collected, each stdout line also sent to `lines` as it comes. The
    /// child's process group is killed if `cancel` resolves first (None then).
    async fn asdo(
        &self,
        Prepared { mut argv, globals }: Prepared,
        input: Option<String>,
        cancel: impl Future<Output = ()>,
        lines: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Option<Ran>> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
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
        let cannot = |e: std::io::Error| Error::other(format!("cannot run {}: {e}", exe.display()));
        let mut child = cmd.spawn().map_err(cannot)?;
        let mut group = Group(child.id());
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let (Some(mut pipe), Some(text)) = (stdin, input) {
                // A child that exits early (bad input) closes its end: not our error.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        // Line by line, so a caller hears of each line (a task's end) when it is printed.
        let read_out = async move {
            let mut all = Vec::new();
            if let Some(out) = stdout {
                let mut out = tokio::io::BufReader::new(out);
                let mut line = Vec::new();
                while out.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
                    if let Some(tx) = &lines {
                        let text = String::from_utf8_lossy(&line);
                        let _ = tx.send(text.trim_end_matches('\n').to_string());
                    }
                    all.append(&mut line);
                }
            }
            all
        };
        let read_err = async move {
            let mut all = Vec::new();
            if let Some(mut err) = stderr {
                let _ = err.read_to_end(&mut all).await;
            }
            all
        };
        let run = async {
            let (_, out, err, status) = tokio::join!(feed, read_out, read_err, child.wait());
            status.map(|s| (s, out, err))
        };
        let (status, out, err) = tokio::select! {
            r = run => r.map_err(cannot)?,
            () = cancel => {
                group.kill();
                return Ok(None);
            }
        };
        // Exited: its group id may be reused from now on, so it is not signalled.
        group.0 = None;
        Ok(Some(Ran {
            code: status.code().unwrap_or(exit::FAILURE),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }))
    }

    /// Runs a checked call and makes the tool's result; None when cancelled.
    async fn run(
        &self,
        prepared: Prepared,
        input: Option<String>,
        cancel: impl Future<Output = ()>,
        lines: Option<mpsc::UnboundedSender<String>>,
        ok_codes: &[i32],
        make: impl FnOnce(&Ran) -> CallToolResult,
    ) -> Option<CallToolResult> {
        Some(match self.asdo(prepared, input, cancel, lines).await {
            Err(e) => error_result(exit::FAILURE, e.to_string()),
            Ok(None) => return None,
            Ok(Some(ran)) if ran.code == exit::OK || ok_codes.contains(&ran.code) => make(&ran),
            Ok(Some(ran)) => ran.tool_error(),
        })
    }

    /// The usual tool: checked, run while the request lives, its result made by `make`.
    async fn call(
        &self,
        place: &Place,
        argv: Checked<Argv>,
        input: Option<String>,
        ctx: &RequestContext<RoleServer>,
        ok_codes: &[i32],
        make: impl FnOnce(&Ran) -> CallToolResult,
    ) -> CallToolResult {
        match self.prepare(place, argv) {
            Ok(p) => self
                .run(p, input, ctx.ct.cancelled(), None, ok_codes, make)
                .await
                .unwrap_or_else(cancelled),
            Err(refusal) => refusal,
        }
    }

    /// Runs `work` as an MCP task and answers the request with its handle. The task
    /// ends `cancelled` when `tasks/cancel` stops the work (its child killed), and is
    /// failed (child killed too) if it is still running `bound` + TASK_GRACE on.
    fn as_task<F>(&self, bound: Duration, work: impl FnOnce(TaskContext) -> F) -> CallToolResponse
    where
        F: Future<Output = Option<CallToolResult>> + Send + 'static,
    {
        let ttl = u64::try_from((bound + TASK_GRACE).as_millis()).unwrap_or(u64::MAX);
        let task = self.tasks.spawn(
            TaskOptions::new()
                .with_ttl_ms(ttl)
                .with_status_message("running"),
            |t| {
                let run = work(t);
                Box::pin(async move { run.await.ok_or(TaskExit::Cancelled) })
            },
        );
        CreateTaskResult::new(task).into()
    }

    async fn spawn_work(
        &self,
        prepared: Prepared,
        a: SpawnTask,
        cancel: impl Future<Output = ()>,
    ) -> Option<CallToolResult> {
        let input = a.prompt.clone();
        self.run(prepared, input, cancel, None, &[], |ran| {
            // A dry run prints the pod it would create (the manifest, kept for the
            // text); a real one the task object.
            let task = if a.dry_run {
                serde_json::from_str::<k8s_openapi::api::core::v1::Pod>(&ran.stdout)
                    .ok()
                    .map(|pod| {
                        crate::taskpod::TaskState::new(
                            &pod,
                            None,
                            k8s_openapi::jiff::Timestamp::now(),
                        )
                    })
                    .and_then(|t| serde_json::to_value(t).ok())
            } else {
                output::task(&ran.stdout)
            };
            let Some(task) = task else {
                return error_result(
                    exit::FAILURE,
                    format!(
                        "asdo spawn -o json printed no task: {:?}",
                        keep_tail(&ran.stdout, 200).0
                    ),
                );
            };
            let text = if a.dry_run {
                format!(
                    "dry run: task {} would create this pod\n{}",
                    a.task_id,
                    keep_tail(&ran.stdout, MAX_TEXT).0
                )
            } else {
                format!(
                    "task {}: pod {} ({}) in namespace {}; follow it with task_logs or wait_tasks",
                    a.task_id,
                    task["pod"].as_str().unwrap_or("-"),
                    task["phase"].as_str().unwrap_or("Pending"),
                    task["namespace"].as_str().unwrap_or("-"),
                )
            };
            ok(text, &task)
        })
        .await
    }

    /// `asdo wait`, each ended task reported to `progress` as its line is printed.
    async fn wait_work(
        &self,
        prepared: Prepared,
        total: Option<usize>,
        cancel: impl Future<Output = ()>,
        progress: Progress,
    ) -> Option<CallToolResult> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let report = async {
            let mut done = 0;
            while let Some(line) = rx.recv().await {
                if let Some(task) = output::task(&line) {
                    done += 1;
                    progress.report(done, total, &output::line(&task)).await;
                }
            }
        };
        let ok_codes = [exit::FAILURE, exit::TIMEOUT];
        let run = self.run(prepared, None, cancel, Some(tx), &ok_codes, wait_result);
        tokio::join!(run, report).0
    }
}

/// `wait_tasks`' result from `asdo wait`'s lines and exit code.
fn wait_result(ran: &Ran) -> CallToolResult {
    // `wait` says "error: …" only for what stopped it from waiting at all.
    if ran.code == exit::FAILURE && ran.stdout.trim().is_empty() {
        return ran.tool_error();
    }
    let Some(tasks) = ran
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(output::task)
        .collect::<Option<Vec<_>>>()
    else {
        return error_result(
            exit::FAILURE,
            format!(
                "asdo wait -o json printed a line that is no task: {:?}",
                keep_tail(&ran.stdout, 200).0
            ),
        );
    };
    let head = match ran.code {
        exit::OK => "all succeeded",
        exit::TIMEOUT => "timed out",
        _ => "some failed",
    };
    let text = format!("{head}\n{}", output::lines(&tasks, "no tasks"));
    let waited = json!({
        "all_succeeded": ran.code == exit::OK,
        "timed_out": ran.code == exit::TIMEOUT,
        "exit_code": ran.code,
        "tasks": tasks,
    });
    ok(text, &waited)
}

#[tool_router]
impl Server {
    #[tool(
        description = "Create the pod for one task (asdo spawn): the agent clones repo, works on branch, commits and pushes. Returns at once (as an MCP task when the client supports tasks).",
        output_schema = output::task_schema()
    )]
    async fn spawn_task(
        &self,
        Parameters(a): Parameters<SpawnTask>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let prepared = match self.prepare(&a.place, args::spawn_argv(&a)) {
            Ok(p) => p,
            Err(refusal) => return Ok(refusal.into()),
        };
        if wants_task(&ctx) {
            let server = self.clone();
            return Ok(self.as_task(SPAWN_BOUND, move |t| async move {
                server.spawn_work(prepared, a, t.cancelled()).await
            }));
        }
        Ok(self
            .spawn_work(prepared, a, ctx.ct.cancelled())
            .await
            .unwrap_or_else(cancelled)
            .into())
    }

    #[tool(
        description = "List task pods (asdo list): task, pod, phase, exit code, branch.",
        output_schema = output::list_schema()
    )]
    async fn list_tasks(
        &self,
        Parameters(a): Parameters<ListTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call(&a.place, args::list_argv(&a), None, &ctx, &[], |ran| {
            let Some(tasks) = output::tasks(&ran.stdout) else {
                return error_result(exit::FAILURE, "asdo list -o json printed no list".into());
            };
            let text = output::lines(&tasks, "no task pods");
            ok(text, &json!({ "tasks": tasks }))
        })
        .await
    }

    #[tool(
        description = "One task's state (asdo status): phase, exit code, branch, the agent's last marker and step, and the pod's events.",
        output_schema = output::task_schema()
    )]
    async fn task_status(
        &self,
        Parameters(a): Parameters<TaskStatus>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call(&a.place, args::status_argv(&a), None, &ctx, &[], |ran| {
            let Some(task) = output::task(&ran.stdout) else {
                return error_result(exit::FAILURE, "asdo status -o json printed no task".into());
            };
            ok(output::line(&task), &task)
        })
        .await
    }

    #[tool(
        description = "A task's log so far (asdo logs --no-follow): the last `tail` lines, bounded to max_bytes (newest kept).",
        output_schema = schema_for_output::<output::Logs>()
    )]
    async fn task_logs(
        &self,
        Parameters(a): Parameters<TaskLogs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let max = a.max_bytes.unwrap_or(MAX_TEXT).min(MAX_LOG_BYTES);
        let task = a.task_id.clone();
        // The exit code of `logs` is the task's own: a failed task's log is still a result.
        let task_codes: Vec<i32> = (1..=255).filter(|c| *c != exit::USAGE).collect();
        self.call(
            &a.place,
            args::logs_argv(&a),
            None,
            &ctx,
            &task_codes,
            |ran| {
                if ran.stdout.is_empty() && ran.stderr.contains("error: ") {
                    return ran.tool_error();
                }
                let (log, truncated) = keep_tail(&ran.stdout, max);
                let logs = output::Logs {
                    task_id: task,
                    lines: log.lines().count(),
                    log: log.clone(),
                    truncated,
                    exit_code: ran.code,
                };
                ok(log, &logs)
            },
        )
        .await
    }

    #[tool(
        description = "Block until the tasks finish or the timeout passes (asdo wait): each task's phase, exit code, commit, PR. Sends a progress notification as each task ends (with a progressToken); runs as an MCP task when the client supports tasks.",
        output_schema = output::wait_schema()
    )]
    async fn wait_tasks(
        &self,
        Parameters(a): Parameters<WaitTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let prepared = match self.prepare(&a.place, args::wait_argv(&a)) {
            Ok(p) => p,
            Err(refusal) => return Ok(refusal.into()),
        };
        // With `all`, how many there are is only known to the child.
        let total = (!a.all).then_some(a.task_ids.len());
        if wants_task(&ctx) {
            let server = self.clone();
            return Ok(self.as_task(args::wait_timeout(&a), move |t| async move {
                let cancel = t.cancelled();
                server
                    .wait_work(prepared, total, cancel, Progress::Task(t.clone()))
                    .await
            }));
        }
        Ok(self
            .wait_work(prepared, total, ctx.ct.cancelled(), Progress::of(&ctx))
            .await
            .unwrap_or_else(cancelled)
            .into())
    }

    #[tool(
        description = "Send a follow-up message into a running task's OpenCode session (asdo send) and return its reply once the session is idle again.",
        output_schema = output::send_schema()
    )]
    async fn send_message(
        &self,
        Parameters(a): Parameters<SendMessage>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let input = Some(a.message.clone());
        let ok_codes = [exit::TIMEOUT];
        self.call(
            &a.place,
            args::send_argv(&a),
            input,
            &ctx,
            &ok_codes,
            |ran| {
                let Ok(mut sent) = serde_json::from_str::<Value>(&ran.stdout) else {
                    return error_result(
                        exit::FAILURE,
                        "asdo send -o json printed no result".into(),
                    );
                };
                let (reply, truncated) = keep_tail(sent["reply"].as_str().unwrap_or(""), MAX_TEXT);
                let text = if ran.code == exit::TIMEOUT {
                    format!("no answer before the timeout\n{reply}")
                } else {
                    reply.clone()
                };
                sent["reply"] = reply.into();
                sent["truncated"] = truncated.into();
                ok(text, &sent)
            },
        )
        .await
    }

    #[tool(
        description = "Answer a running task's permission request (once or reject) or question (asdo answer), as the user this server runs as; the request id is in the task's log (per_… or que_…).",
        output_schema = schema_for_output::<output::Answered>()
    )]
    async fn answer_task(
        &self,
        Parameters(a): Parameters<AnswerTask>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call(&a.place, args::answer_argv(&a), None, &ctx, &[], |ran| {
            let note = ran.stderr.trim().lines().last().unwrap_or("").to_string();
            let answered = output::Answered {
                task_id: a.task_id.clone(),
                request_id: a.request_id.clone(),
                answers: a.answers.clone(),
                note: note.clone(),
            };
            ok(note, &answered)
        })
        .await
    }

    #[tool(
        description = "Delete finished task pods (asdo cleanup); with phase/task_id/selector/older_than to narrow, dry_run to preview.",
        output_schema = output::cleanup_schema()
    )]
    async fn cleanup_tasks(
        &self,
        Parameters(a): Parameters<CleanupTasks>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call(&a.place, args::cleanup_argv(&a), None, &ctx, &[], |ran| {
            let Some(tasks) = output::tasks(&ran.stdout) else {
                return error_result(exit::FAILURE, "asdo cleanup -o json printed no list".into());
            };
            let verb = if a.dry_run { "would delete" } else { "deleted" };
            let text = if tasks.is_empty() {
                "nothing to delete".to_string()
            } else {
                tasks
                    .iter()
                    .map(|t| format!("pod/{} {verb}", t["pod"].as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            ok(text, &json!({ "tasks": tasks, "dry_run": a.dry_run }))
        })
        .await
    }
}

#[tool_handler]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_instructions(
            "asdo runs AI coding agents (OpenCode) as Kubernetes pods, one pod per task on its own git branch. \
             spawn_task starts one; wait_tasks or task_status/task_logs follow it; send_message steers a running one \
             and answer_task answers its questions; cleanup_tasks removes finished pods.",
        )
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.tasks.get_task(&request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<(), ErrorData> {
        self.tasks
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> std::result::Result<(), ErrorData> {
        self.tasks.cancel_task(&request.task_id)
    }
}

/// Serves until the client closes stdin, or SIGINT/SIGTERM. Either way every running
/// tool's request and every MCP task is cancelled first, so no child asdo outlives the
/// server.
pub async fn serve(defaults: Defaults) -> Result<()> {
    let server = Server::new(defaults);
    let tasks = server.tasks.clone();
    let service = server
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
    // Aborted, each task's work is dropped, and with it its child's process group.
    tasks.shutdown();
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
