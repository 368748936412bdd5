//! The tools' arguments: each a typed struct (its JSON Schema is the tool's
//! inputSchema), checked here as the CLI's own typed value before any child runs,
//! and turned into the child's command line by `crate::argv`, where a value can never
//! become a flag. A refusal is one line naming the argument.

use std::path::Path;

use rmcp::schemars;
use serde::Deserialize;

use crate::argv::{Argv, GlobalFlags};
use crate::error::Result;

/// Bounds on what a tool call may hand the CLI, so a refusal is one short line
/// (and argv never nears the kernel's limit): ids and names are far shorter.
const MAX_NAME: usize = 253;
/// `--set` values and repository URLs.
const MAX_VALUE: usize = 16 * 1024;
/// `wait_tasks` ids per call.
const MAX_TASK_IDS: usize = 1000;
/// A prompt or message (sent on stdin): the size of a ConfigMap, the most spawn can carry.
const MAX_TEXT_INPUT: usize = 1024 * 1024;
/// `wait_tasks`' timeout when the call names none.
const WAIT_TIMEOUT: &str = "10m";
/// `answer_task`: answers per call, and bytes per answer (a label or a few words).
const MAX_ANSWERS: usize = 32;
const MAX_ANSWER: usize = 4096;

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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnswerTask {
    /// Task id (T001) or pod name (agent-t001).
    pub task_id: String,
    /// The request, as the task's log names it: per_… (a permission) or que_… (a question).
    pub request_id: String,
    /// A permission: ["once"] or ["reject"]. A question: one answer per question it asked
    /// (an option's label or your own words), or ["reject"].
    pub answers: Vec<String>,
    #[serde(flatten)]
    pub place: Place,
}

/// Why a tool argument was refused: one line naming the argument.
#[derive(Debug)]
pub(super) struct Refused(pub(super) String);

pub(super) type Checked<T = ()> = std::result::Result<T, Refused>;

/// The argument's name in front of the CLI's own message for the value.
pub(super) fn named(field: &str, r: Result<impl Sized>) -> Checked {
    r.map(|_| ()).map_err(|e| Refused(format!("{field}: {e}")))
}

/// Length and control characters first, so the typed check's message (which quotes
/// the value) stays one short line.
pub(super) fn bounded(field: &str, s: &str, max: usize) -> Checked {
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
pub(super) fn task_ref(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_NAME)?;
    named(field, crate::task::pod_name_for(s))
}

/// A task id as `spawn` takes it.
pub(super) fn task_id(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_NAME)?;
    named(field, crate::task::validate_task_id(s))
}

pub(super) fn duration(field: &str, s: &str) -> Checked {
    bounded(field, s, 64)?;
    crate::humantime::parse(s)
        .map(|_| ())
        .map_err(|e| Refused(format!("{field}: {e}")))
}

pub(super) fn selector(field: &str, s: &str) -> Checked {
    bounded(field, s, MAX_VALUE)?;
    named(field, crate::validate::selector(s))
}

/// A pod phase word; the CLI names the known ones when it is not one of them.
pub(super) fn phase(field: &str, s: &str) -> Checked {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Refused(format!(
            "{field}: use one of Pending, Running, Succeeded, Failed, Unknown"
        )));
    }
    Ok(())
}

/// A free-form single value (model, `--set KEY=VALUE`): bounded, one line, and not
/// looking like a flag (it is passed as `--flag=value` anyway).
pub(super) fn plain(field: &str, s: &str, max: usize) -> Checked {
    bounded(field, s, max)?;
    if s.starts_with('-') || s.trim().is_empty() {
        return Err(Refused(format!(
            "{field}: must not be empty or start with '-'"
        )));
    }
    Ok(())
}

/// Free text for stdin: any characters, bounded.
pub(super) fn text(field: &str, s: &str) -> Checked {
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
pub(super) fn context_dir(field: &str, s: &str) -> Checked {
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

pub(super) fn spawn_argv(a: &SpawnTask) -> Checked<Argv> {
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
    // The pod as JSON, created or only rendered: the tool's result is read from it.
    argv.flag("replace", a.replace)
        .flag("dry-run", a.dry_run)
        .opt("output", "json");
    Ok(argv)
}

pub(super) fn list_argv(a: &ListTasks) -> Checked<Argv> {
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

pub(super) fn status_argv(a: &TaskStatus) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    let mut argv = Argv::new("status");
    argv.opt("output", "json").positional(&a.task_id);
    Ok(argv)
}

pub(super) fn logs_argv(a: &TaskLogs) -> Checked<Argv> {
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

pub(super) fn wait_argv(a: &WaitTasks) -> Checked<Argv> {
    if a.task_ids.len() > MAX_TASK_IDS {
        return Err(Refused(format!(
            "task_ids: {} ids; at most {MAX_TASK_IDS} per call",
            a.task_ids.len()
        )));
    }
    for id in &a.task_ids {
        task_ref("task_ids", id)?;
    }
    let timeout = a.timeout.as_deref().unwrap_or(WAIT_TIMEOUT);
    duration("timeout", timeout)?;
    let mut argv = Argv::new("wait");
    // JSON Lines: one task object per line as each task ends.
    argv.flag("all", a.all)
        .opt("timeout", timeout)
        .opt("output", "json");
    for id in &a.task_ids {
        argv.positional(id);
    }
    Ok(argv)
}

pub(super) fn send_argv(a: &SendMessage) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    text("message", &a.message)?;
    let timeout = a.timeout.as_deref().unwrap_or("30m");
    duration("timeout", timeout)?;
    let mut argv = Argv::new("send");
    // The message on stdin: no file to plant a symlink at, any size, never in argv.
    argv.opt("file", "-")
        .opt("timeout", timeout)
        .opt("output", "json")
        .positional(&a.task_id);
    Ok(argv)
}

pub(super) fn cleanup_argv(a: &CleanupTasks) -> Checked<Argv> {
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
        .flag("dry-run", a.dry_run)
        .opt("output", "json");
    Ok(argv)
}

/// `answer_task`: as `asdo answer` takes it.
pub(super) fn answer_argv(a: &AnswerTask) -> Checked<Argv> {
    task_ref("task_id", &a.task_id)?;
    bounded("request_id", &a.request_id, MAX_NAME)?;
    if a.answers.len() > MAX_ANSWERS {
        return Err(Refused(format!(
            "answers: {} answers; at most {MAX_ANSWERS}",
            a.answers.len()
        )));
    }
    for s in &a.answers {
        bounded("answers", s, MAX_ANSWER)?;
    }
    // The CLI's own check of the request id and the answers' shape (once|reject for a
    // permission), so a wrong answer is refused here as there, before any API call.
    crate::agent::answers::person_value(&a.request_id, &a.answers, "mcp")
        .map_err(|e| Refused(format!("answers: {e}")))?;
    let mut argv = Argv::new("answer");
    argv.positional(&a.task_id).positional(&a.request_id);
    for s in &a.answers {
        argv.positional(s);
    }
    Ok(argv)
}

/// How long a checked `wait_tasks` call may wait.
pub(super) fn wait_timeout(a: &WaitTasks) -> std::time::Duration {
    crate::humantime::parse(a.timeout.as_deref().unwrap_or(WAIT_TIMEOUT)).unwrap_or_default()
}

/// The server's global flags with the tool's namespace/environment, each checked.
pub(super) fn globals(defaults: &GlobalFlags, place: &Place) -> Checked<GlobalFlags> {
    let mut g = defaults.clone();
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

#[cfg(test)]
mod tests {
    use super::*;
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
            [
                "wait",
                "--timeout=5m",
                "--output=json",
                "--",
                "T1",
                "agent-t2"
            ]
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
                "--set=pod.x=--y",
                "--output=json"
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
    fn answers_are_checked_as_the_cli_checks_them_and_stay_positional() {
        let answer = |request: &str, answers: &[&str]| {
            answer_argv(&AnswerTask {
                task_id: "T1".into(),
                request_id: request.into(),
                answers: answers.iter().map(|s| s.to_string()).collect(),
                place: Place::default(),
            })
        };
        assert_eq!(
            words(answer("que_1a", &["--all", "Postgres please"]).unwrap()),
            ["answer", "--", "T1", "que_1a", "--all", "Postgres please"]
        );
        assert_eq!(
            words(answer("per_9", &["once"]).unwrap()),
            ["answer", "--", "T1", "per_9", "once"]
        );
        for (request, answers, want) in [
            (
                "per_9",
                &["always"][..],
                "answers: a permission is answered with once or reject",
            ),
            (
                "--help",
                &["once"],
                "answers: \"--help\" is not a request id",
            ),
            ("que_1", &[], "answers: give the answer"),
            ("que_1", &["a\nb"], "answers: control characters"),
        ] {
            let e = answer(request, answers).unwrap_err();
            assert!(e.0.starts_with(want), "{request} {answers:?}: {}", e.0);
        }
    }
}
