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

use std::path::PathBuf;
use std::process::Stdio;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result, exit};

/// Text results are cut to this many bytes (the end is kept: it is the newest).
const MAX_TEXT: usize = 64 * 1024;
/// `task_logs` never returns more than this, whatever max_bytes asks.
const MAX_LOG_BYTES: usize = 1024 * 1024;

/// What every child asdo gets: the server's own global flags.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub exe: PathBuf,
    /// `--kubeconfig`, `--context`, `--release-name`, `--connect-timeout`.
    pub global_args: Vec<String>,
    pub namespace: Option<String>,
    pub environment: String,
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
        let msg = self.error_line();
        let mut r = CallToolResult::error(vec![ContentBlock::text(msg.clone())]);
        r.structured_content = Some(json!({"exit_code": self.code, "error": msg}));
        r
    }
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

fn push_opt(args: &mut Vec<String>, flag: &str, v: &Option<String>) {
    if let Some(v) = v {
        args.push(flag.into());
        args.push(v.clone());
    }
}

fn push_flag(args: &mut Vec<String>, flag: &str, on: bool) {
    if on {
        args.push(flag.into());
    }
}

impl Server {
    pub fn new(defaults: Defaults) -> Server {
        Server {
            defaults,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs `asdo <verb args> <global flags>`; stdin closed, output collected.
    async fn asdo(&self, place: &Place, verb_args: Vec<String>) -> Result<Ran> {
        let d = &self.defaults;
        let mut cmd = tokio::process::Command::new(&d.exe);
        cmd.args(&verb_args).args(&d.global_args);
        if let Some(ns) = place.namespace.as_ref().or(d.namespace.as_ref()) {
            cmd.args(["--namespace", ns]);
        }
        let env = place.environment.as_deref().unwrap_or(&d.environment);
        cmd.args(["--environment", env]);
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A cancelled tool call must not leave its command running.
            .kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .map_err(|e| Error::other(format!("cannot run {}: {e}", d.exe.display())))?;
        Ok(Ran {
            code: out.status.code().unwrap_or(exit::FAILURE),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn run_tool(
        &self,
        place: &Place,
        args: Vec<String>,
        ok_codes: &[i32],
        make: impl FnOnce(&Ran) -> CallToolResult,
    ) -> CallToolResult {
        match self.asdo(place, args).await {
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
            Ok(ran) if ran.code == exit::OK || ok_codes.contains(&ran.code) => make(&ran),
            Ok(ran) => ran.tool_error(),
        }
    }
}

#[tool_router]
impl Server {
    #[tool(
        description = "Create the pod for one task (asdo spawn): the agent clones repo, works on branch, commits and pushes. Returns at once."
    )]
    async fn spawn_task(
        &self,
        Parameters(a): Parameters<SpawnTask>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let mut args = vec![
            "spawn".into(),
            "--task-id".into(),
            a.task_id.clone(),
            "--branch".into(),
            a.branch.clone(),
            "--repo".into(),
            a.repo.clone(),
        ];
        push_opt(&mut args, "--prompt", &a.prompt);
        push_opt(&mut args, "--context-dir", &a.context_dir);
        push_opt(&mut args, "--model", &a.model);
        push_opt(&mut args, "--ssh-secret", &a.ssh_secret);
        push_opt(&mut args, "--image", &a.image);
        for s in &a.set {
            args.extend(["--set".into(), s.clone()]);
        }
        push_flag(&mut args, "--replace", a.replace);
        if a.dry_run {
            args.extend(["--dry-run".into(), "-o".into(), "json".into()]);
        }
        let task = a.task_id.clone();
        Ok(self
            .run_tool(&a.place, args, &[], |ran| {
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
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let mut args = vec!["list".into(), "-o".into(), "json".into()];
        push_opt(&mut args, "--phase", &a.phase);
        push_opt(&mut args, "--selector", &a.selector);
        push_flag(&mut args, "--all-namespaces", a.all_namespaces);
        Ok(self
            .run_tool(&a.place, args, &[], |ran| {
                let list: Value = serde_json::from_str(&ran.stdout).unwrap_or(Value::Null);
                let tasks: Vec<Value> = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(summary)
                    .collect();
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
                                t["phase"].as_str().unwrap_or("?"),
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
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let args = vec!["status".into(), a.task_id.clone()];
        let task = a.task_id.clone();
        Ok(self
            .run_tool(&a.place, args, &[], |ran| {
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
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let tail = a.tail.unwrap_or(200);
        let mut args = vec![
            "logs".into(),
            a.task_id.clone(),
            "--no-follow".into(),
            "--tail".into(),
            tail.to_string(),
        ];
        push_opt(&mut args, "--since", &a.since);
        let max = a.max_bytes.unwrap_or(MAX_TEXT).min(MAX_LOG_BYTES);
        let task = a.task_id.clone();
        // The exit code of `logs` is the task's own: a failed task's log is still a result.
        let task_codes: Vec<i32> = (1..=255).filter(|c| *c != exit::USAGE).collect();
        Ok(self
            .run_tool(&a.place, args, &task_codes, |ran| {
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
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let mut args = vec!["wait".to_string()];
        args.extend(a.task_ids.iter().cloned());
        push_flag(&mut args, "--all", a.all);
        args.extend([
            "--timeout".into(),
            a.timeout.clone().unwrap_or_else(|| "10m".into()),
        ]);
        Ok(self
            .run_tool(&a.place, args, &[exit::FAILURE, 124], |ran| {
                // `wait` says "error: …" only for what stopped it from waiting at all.
                if ran.code == exit::FAILURE && ran.stdout.trim().is_empty() {
                    return ran.tool_error();
                }
                let lines: Vec<&str> = ran.stdout.lines().collect();
                let text = match ran.code {
                    0 => format!("all succeeded\n{}", ran.stdout.trim_end()),
                    124 => format!("timed out\n{}", ran.stdout.trim_end()),
                    _ => format!("some failed\n{}", ran.stdout.trim_end()),
                };
                ok(
                    text,
                    json!({"all_succeeded": ran.code == 0, "timed_out": ran.code == 124, "exit_code": ran.code, "results": lines}),
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
    ) -> std::result::Result<CallToolResult, ErrorData> {
        // Through a file: a message can be longer than one argument may be.
        let file = std::env::temp_dir().join(format!(
            "asdo-mcp-message-{}-{}.txt",
            std::process::id(),
            crate::mcp::next_id()
        ));
        if let Err(e) = std::fs::write(&file, &a.message) {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "cannot write the message to {}: {e}",
                file.display()
            ))]));
        }
        let args = vec![
            "send".into(),
            a.task_id.clone(),
            "--file".into(),
            file.display().to_string(),
            "--timeout".into(),
            a.timeout.clone().unwrap_or_else(|| "30m".into()),
        ];
        let task = a.task_id.clone();
        let result = self
            .run_tool(&a.place, args, &[124], |ran| {
                let (text, truncated) = keep_tail(&ran.stdout, MAX_TEXT);
                ok(
                    if ran.code == 124 { format!("no answer before the timeout\n{text}") } else { text.clone() },
                    json!({"task_id": task, "reply": text, "truncated": truncated, "timed_out": ran.code == 124}),
                )
            })
            .await;
        let _ = std::fs::remove_file(&file);
        Ok(result)
    }

    #[tool(
        description = "Delete finished task pods (asdo cleanup); with phase/task_id/selector/older_than to narrow, dry_run to preview."
    )]
    async fn cleanup_tasks(
        &self,
        Parameters(a): Parameters<CleanupTasks>,
    ) -> std::result::Result<CallToolResult, ErrorData> {
        let mut args = vec!["cleanup".to_string()];
        push_opt(&mut args, "--phase", &a.phase);
        push_opt(&mut args, "--task-id", &a.task_id);
        push_opt(&mut args, "--selector", &a.selector);
        push_opt(&mut args, "--older-than", &a.older_than);
        push_flag(&mut args, "--all", a.all);
        push_flag(&mut args, "--force", a.force);
        push_flag(&mut args, "--dry-run", a.dry_run);
        Ok(self
            .run_tool(&a.place, args, &[], |ran| {
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

fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A pod from `asdo list -o json` as the few fields a caller acts on.
fn summary(pod: &Value) -> Value {
    let m = &pod["metadata"];
    let status = &pod["status"];
    let exit = status["containerStatuses"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == crate::task::CONTAINER))
        .and_then(|c| c["state"]["terminated"]["exitCode"].as_i64());
    json!({
        "task_id": m["labels"][crate::task::LABEL_TASK_ID],
        "pod": m["name"],
        "namespace": m["namespace"],
        "phase": status["phase"],
        "exit_code": exit,
        "branch": m["annotations"][crate::task::ANN_BRANCH],
    })
}

/// Serves until the client closes stdin.
pub async fn serve(defaults: Defaults) -> Result<()> {
    let service = Server::new(defaults)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::other(format!("MCP: cannot start on stdio: {e}")))?;
    service
        .waiting()
        .await
        .map_err(|e| Error::other(format!("MCP: {e}")))?;
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
