//! The local runtime: a task on this machine, no cluster. Each task is a directory in
//! the user's state directory holding everything a pod would have (its clone, its HOME,
//! its log) plus what the kubelet would know (the process, its start and end, its exit
//! code). Who writes what, so no two processes write one file:
//!
//! - `spawn` creates the directory exclusively (the claim on the task id), writes
//!   `spec.json`, the 0600 `password`, the prompt under `input/`, starts the runner and
//!   records it in `launch.json` (pid + start time: a reused pid is not mistaken for it);
//! - the runner (`asdo local-runner <dir>`, detached in its own session) owns
//!   `state.json`: queued, started (port, agent pid), finished (exit code), each written
//!   atomically; and `log`, each line stamped as the kubelet stamps `timestamps=true`
//!   lines, so `logs` resumes and tails exactly as it does against the API server.
//!
//! A task whose runner is gone without an exit code is `Failed (lost)`: killed, or the
//! machine rebooted (the boot id is part of the process identity).

pub mod doctor;
pub mod logfile;
pub mod logs;
pub mod pod;
pub mod proc;
pub mod remote;
pub mod runner;
pub mod sandbox;
pub mod slots;
pub mod spawn;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// Overrides the state directory (tests; several stores on one machine).
pub const STATE_DIR_ENV: &str = "ASDO_STATE_DIR";

/// The state directory: `$ASDO_STATE_DIR`, else `$XDG_STATE_HOME/asdo`, else
/// `~/.local/state/asdo` (the XDG base directory spec's default).
pub fn state_dir(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(d) = set(STATE_DIR_ENV) {
        return Some(PathBuf::from(d));
    }
    // The spec: a relative XDG_STATE_HOME is invalid and ignored.
    if let Some(d) = set("XDG_STATE_HOME").filter(|d| d.starts_with('/')) {
        return Some(Path::new(&d).join("asdo"));
    }
    set("HOME").map(|h| Path::new(&h).join(".local/state/asdo"))
}

/// The tasks of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    /// The store of this process's environment.
    pub fn from_env() -> Result<Store> {
        let root = state_dir(|k| std::env::var(k).ok()).ok_or_else(|| {
            Error::usage(
                "no state directory for local tasks: set HOME, XDG_STATE_HOME or ASDO_STATE_DIR",
            )
        })?;
        Ok(Store { root })
    }

    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    pub fn slots_dir(&self) -> PathBuf {
        self.root.join("slots")
    }

    /// A task's directory: named as its pod would be (`agent-<id lowercased>`), so two ids
    /// that would collide on a cluster collide here too.
    pub fn task(&self, id: &str) -> TaskDir {
        TaskDir {
            dir: self.tasks_dir().join(crate::task::pod_name(id)),
        }
    }

    /// Every task directory, by name.
    pub fn all(&self) -> io::Result<Vec<TaskDir>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(self.tasks_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Half-made or half-removed directories are not tasks.
            if name.starts_with(crate::task::POD_PREFIX) && e.path().join("spec.json").exists() {
                out.push(TaskDir { dir: e.path() });
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(out)
    }
}

/// One task's directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDir {
    pub dir: PathBuf,
}

impl TaskDir {
    /// The clone the agent works in (TASK_CONTEXT_PATH); writable in the sandbox.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
    /// The agent's HOME; writable in the sandbox.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }
    /// What the agent reads and never writes (the prompt, a person's answers): read-only.
    pub fn input(&self) -> PathBuf {
        self.dir.join("input")
    }
    pub fn prompt(&self) -> PathBuf {
        self.input().join("prompt")
    }
    /// The downwardAPI-style annotations file `asdo answer` writes for a local task.
    pub fn answers(&self) -> PathBuf {
        self.input().join("annotations")
    }
    /// The OpenCode server password, 0600; never in argv or a log.
    pub fn password(&self) -> PathBuf {
        self.dir.join("password")
    }
    /// Present once `cleanup --force` cancelled the task while it was queued.
    pub fn cancel_requested(&self) -> PathBuf {
        self.dir.join("cancel")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn launch_file(&self) -> PathBuf {
        self.dir.join("launch.json")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The runner's own stderr (a runner that cannot even open the log says why here).
    pub fn runner_err(&self) -> PathBuf {
        self.dir.join("runner.err")
    }

    pub fn spec(&self) -> io::Result<Spec> {
        read_json(&self.spec_file())?.ok_or_else(|| io::Error::other("spec.json is missing"))
    }
    pub fn launch(&self) -> io::Result<Option<Launch>> {
        read_json(&self.launch_file())
    }
    pub fn state(&self) -> io::Result<Option<RunState>> {
        read_json(&self.state_file())
    }
    pub fn write_state(&self, s: &RunState) -> io::Result<()> {
        write_json(&self.state_file(), s)
    }

    /// The task as it stands now, the truth about its process included.
    pub fn view(&self) -> io::Result<LocalTask> {
        let spec = self.spec()?;
        let launch = self.launch()?;
        let state = self.state()?;
        let phase = phase(launch.as_ref(), state.as_ref(), &proc::alive_as);
        Ok(LocalTask {
            dir: self.clone(),
            spec,
            launch,
            state,
            phase,
        })
    }
}

/// What spawn decided; the runner reads it. No secrets (those are the password file and
/// the runner's inherited environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub id: String,
    /// Tells this run of the task apart from an earlier one under the same id (a pod's uid).
    #[serde(default)]
    pub uid: String,
    pub branch: String,
    pub repo: String,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The pod's env contract as literals (TASK_ID, GIT_REPO, budgets, policies …);
    /// the runner adds the per-machine ones (paths, port, password).
    pub env: Vec<(String, String)>,
    /// false: `--no-sandbox`, the agent runs with the user's rights.
    pub sandbox: bool,
    /// `--max-parallel`: this task runs when one of slots 0..max_parallel is free.
    pub max_parallel: usize,
    /// The asdo binary the runner runs `agent` with (the spawning one).
    pub asdo: PathBuf,
}

/// A process, told apart from a later one with the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessId {
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22: clock ticks after boot.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`: a reboot makes every recorded process gone.
    pub boot_id: String,
}

/// Written by spawn right after starting the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Launch {
    pub runner: ProcessId,
}

/// Written by the runner only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    pub runner: Option<ProcessId>,
    /// When the runner began waiting for a slot.
    #[serde(default)]
    pub queued_at: Option<String>,
    /// When the agent process started (the container's startedAt).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// OpenCode's server port on 127.0.0.1 (ASDO_OPENCODE_PORT), for attach/send.
    #[serde(default)]
    pub port: Option<u16>,
    /// The sandbox's (or, with --no-sandbox, the agent's) pid.
    #[serde(default)]
    pub agent_pid: Option<u32>,
    /// The runner could not start the agent: why (exit code 127).
    #[serde(default)]
    pub error: Option<String>,
}

/// Where a local task is, in the words `list` uses for pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Created; its runner has not reported yet, or waits for a parallel slot.
    Queued,
    Running,
    Succeeded,
    /// `exit_code`, or `lost`: the runner is gone and recorded no exit code.
    Failed {
        exit_code: Option<i32>,
        lost: bool,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued => "Queued",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed { .. } => "Failed",
        }
    }
    pub fn is_finished(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed { .. })
    }
}

/// The phase from the two records and whether their processes still run.
pub fn phase(
    launch: Option<&Launch>,
    state: Option<&RunState>,
    alive: &dyn Fn(&ProcessId) -> bool,
) -> Phase {
    if let Some(code) = state.and_then(|s| s.exit_code) {
        return if code == 0 {
            Phase::Succeeded
        } else {
            Phase::Failed {
                exit_code: Some(code),
                lost: false,
            }
        };
    }
    let runner = state
        .and_then(|s| s.runner.as_ref())
        .or(launch.map(|l| &l.runner));
    match runner {
        Some(p) if alive(p) => {
            if state.is_some_and(|s| s.started_at.is_some()) {
                Phase::Running
            } else {
                Phase::Queued
            }
        }
        // A spec without a launch: spawn was interrupted between the two, or is
        // writing it now; only a launch or state makes a process to judge.
        None => Phase::Queued,
        Some(_) => Phase::Failed {
            exit_code: None,
            lost: true,
        },
    }
}

/// One local task, read.
#[derive(Debug, Clone)]
pub struct LocalTask {
    pub dir: TaskDir,
    pub spec: Spec,
    pub launch: Option<Launch>,
    pub state: Option<RunState>,
    pub phase: Phase,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> io::Result<()> {
    let mut b = serde_json::to_vec_pretty(v).map_err(io::Error::other)?;
    b.push(b'\n');
    write_atomic(path, &b)
}

/// RFC 3339 with nanoseconds, always nine digits, UTC: the kubelet's `timestamps=true`
/// prefix (Go's RFC3339NanoFixed), which `follow::split_timestamp` parses.
pub fn rfc3339_nano(t: k8s_openapi::jiff::Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond()
    )
}

pub fn now() -> String {
    rfc3339_nano(k8s_openapi::jiff::Timestamp::now())
}

/// 32 random bytes from the OS, hex.
pub fn random_hex() -> io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A uid in the API server's format (8-4-4-4-12 hex), random.
fn uid() -> io::Result<String> {
    let h = random_hex()?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// What `spawn` on the local runtime needs.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub id: String,
    pub branch: String,
    pub repo: String,
    pub base: Option<String>,
    pub model: Option<String>,
    pub prompt: Option<String>,
    /// The pod's env contract as literals ([`contract_env_from_pod`]).
    pub env: Vec<(String, String)>,
    pub sandbox: bool,
    pub max_parallel: usize,
    /// The asdo binary to run the runner and the agent with.
    pub asdo: PathBuf,
    /// The runner's environment (what passes through to the agent is chosen from it,
    /// `runner::passes_through`); None: this process's.
    pub runner_env: Option<Vec<(String, String)>>,
}

/// The default `--max-parallel`: the machine's cores.
pub fn default_max_parallel() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Names the runtime sets itself, per machine; a contract env never overrides them.
const RUNTIME_OWNED: [&str; 8] = [
    crate::contract::HOME,
    crate::contract::TASK_CONTEXT_PATH,
    crate::contract::TASK_PROMPT,
    crate::contract::TASK_PROMPT_FILE,
    crate::contract::PASSWORD_ENV,
    crate::contract::OPENCODE_PORT_ENV,
    crate::contract::ANSWERS_FILE,
    crate::contract::SECRET_ENV_LIST,
];

/// The literal env of a rendered task pod's agent container: the same contract a pod
/// gets. Values from Secrets and the per-pod paths are left to the runner.
pub fn contract_env_from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<(String, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == crate::task::CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .filter(|e| e.value_from.is_none() && !RUNTIME_OWNED.contains(&e.name.as_str()))
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

/// The local spawn of a rendered task pod: the same values, so the same env contract,
/// identity (labels, annotations) and prompt (an env literal, or the ConfigMap that
/// carries a big one).
pub fn request_from_pod(
    pod: &k8s_openapi::api::core::v1::Pod,
    prompt_cm: Option<&k8s_openapi::api::core::v1::ConfigMap>,
    sandbox: bool,
    max_parallel: usize,
    asdo: PathBuf,
) -> Result<SpawnRequest> {
    let env_of = |name: &str| {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter(|c| c.name == crate::task::CONTAINER)
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let need = |name: &str| {
        env_of(name).ok_or_else(|| Error::other(format!("the rendered pod has no {name}")))
    };
    let prompt = env_of("TASK_PROMPT").or_else(|| {
        prompt_cm
            .and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get(crate::render::PROMPT_KEY).cloned())
    });
    Ok(SpawnRequest {
        id: need("TASK_ID")?,
        branch: need("GIT_BRANCH")?,
        repo: need("GIT_REPO")?,
        base: env_of("GIT_BASE"),
        model: env_of("OPENCODE_MODEL"),
        prompt,
        env: contract_env_from_pod(pod),
        sandbox,
        max_parallel,
        asdo,
        runner_env: None,
    })
}

/// Creates the task's directory and starts its runner, detached. Returns at once.
pub fn spawn(store: &Store, req: &SpawnRequest) -> Result<TaskDir> {
    if req.sandbox {
        sandbox::bwrap(lookup(req, "PATH").as_deref()).map_err(Error::usage)?;
    }
    if req.max_parallel == 0 {
        return Err(Error::usage("--max-parallel must be at least 1"));
    }
    let io = |what: &str, e: io::Error| Error::other(format!("local task {}: {what}: {e}", req.id));
    std::fs::create_dir_all(store.tasks_dir())
        .map_err(|e| io("creating the state directory", e))?;
    let t = store.task(&req.id);
    // The exclusive claim on the id: a second spawn of the same task fails here.
    match std::fs::create_dir(&t.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let phase = t.view().map(|v| v.phase.name()).unwrap_or("unreadable");
            return Err(Error::AlreadyExists(format!(
                "local task {} already exists ({phase}, {}): remove it with `asdo --runtime local cleanup {}` first",
                req.id,
                t.dir.display(),
                req.id
            )));
        }
        Err(e) => return Err(io("creating its directory", e)),
    }
    let made = (|| -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::set_permissions(&t.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        for d in [t.workspace(), t.home(), t.input()] {
            std::fs::DirBuilder::new().mode(0o700).create(d)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(t.password())?;
        io::Write::write_all(&mut f, random_hex()?.as_bytes())?;
        std::fs::write(t.answers(), b"")?;
        if let Some(p) = &req.prompt {
            std::fs::write(t.prompt(), p)?;
        }
        copy_opencode_config(&t.home(), &|k| lookup(req, k));
        write_json(
            &t.spec_file(),
            &Spec {
                id: req.id.clone(),
                uid: uid()?,
                branch: req.branch.clone(),
                repo: req.repo.clone(),
                base: req.base.clone(),
                model: req.model.clone(),
                created_at: now(),
                env: req.env.clone(),
                sandbox: req.sandbox,
                max_parallel: req.max_parallel,
                asdo: req.asdo.clone(),
            },
        )
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&t.dir);
        return Err(io("writing its files", e));
    }
    if let Err(e) = launch(&t, req) {
        let _ = std::fs::remove_dir_all(&t.dir);
        return Err(io("starting its runner", e));
    }
    Ok(t)
}

/// A variable of the runner's environment.
fn lookup(req: &SpawnRequest, k: &str) -> Option<String> {
    match &req.runner_env {
        Some(env) => env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        None => std::env::var(k).ok(),
    }
    .filter(|v| !v.is_empty())
}

/// `asdo local-runner <dir>` in its own session, stdin /dev/null, output to
/// runner.err; recorded in launch.json. The child is reaped by a thread, so a
/// long-lived caller (mcp, ui) collects no zombies.
fn launch(t: &TaskDir, req: &SpawnRequest) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let err = std::fs::File::create(t.runner_err())?;
    let mut cmd = std::process::Command::new(&req.asdo);
    if let Some(env) = &req.runner_env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    cmd.arg(runner::SUBCOMMAND)
        .arg(&t.dir)
        .stdin(std::process::Stdio::null())
        .stdout(err.try_clone()?)
        .stderr(err)
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe; it detaches from the terminal and its
    // process group, so Ctrl-C or closing the terminal does not reach the task.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let runner = proc::identify(pid)?;
    std::thread::spawn(move || child.wait());
    write_json(&t.launch_file(), &Launch { runner })
}

/// The user's own OpenCode set-up files (provider, keys from `opencode auth login`) and
/// where each goes in a task's HOME: the config and the auth store, as OpenCode finds
/// them through XDG. `doctor` looks for the same files.
pub fn opencode_config_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<(PathBuf, &'static str)> {
    let Some(user_home) = env("HOME").map(PathBuf::from) else {
        return Vec::new();
    };
    let config = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| user_home.join(".config"));
    let data = env("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| user_home.join(".local/share"));
    vec![
        (
            config.join("opencode/opencode.json"),
            ".config/opencode/opencode.json",
        ),
        (
            config.join("opencode/opencode.jsonc"),
            ".config/opencode/opencode.jsonc",
        ),
        (
            config.join("opencode/config.json"),
            ".config/opencode/config.json",
        ),
        (
            data.join("opencode/auth.json"),
            ".local/share/opencode/auth.json",
        ),
    ]
}

/// The user's own OpenCode set-up copied into the task's HOME, since the sandbox hides
/// the user's home: the task gets what a pod gets from its chart (a provider), nothing
/// else from there.
fn copy_opencode_config(home: &Path, env: &dyn Fn(&str) -> Option<String>) {
    for (from, to) in opencode_config_files(env) {
        if let Ok(bytes) = std::fs::read(&from) {
            let to = home.join(to);
            if let Some(dir) = to.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&to)
            {
                let _ = io::Write::write_all(&mut f, &bytes);
            }
        }
    }
}

/// Whether a pod's labels match a label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated; set-based `in`/`notin` too): the API server's matching, for the
/// local tasks' pods.
pub fn selector_matches(
    selector: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    split_selector(selector).iter().all(|term| {
        let term = term.trim();
        if term.is_empty() {
            return true;
        }
        if let Some((k, v)) = term.split_once("!=") {
            return labels.get(k.trim()).map(String::as_str) != Some(v.trim());
        }
        if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return labels.get(k.trim()).map(String::as_str) == Some(v.trim());
        }
        if let Some(k) = term.strip_prefix('!') {
            return !labels.contains_key(k.trim());
        }
        for (op, want) in [(" notin ", false), (" in ", true)] {
            if let Some((k, set)) = term.split_once(op) {
                let set = set.trim().trim_start_matches('(').trim_end_matches(')');
                let has = labels
                    .get(k.trim())
                    .is_some_and(|v| set.split(',').any(|s| s.trim() == v));
                return has == want;
            }
        }
        labels.contains_key(term)
    })
}

/// Commas split terms, except inside a set's parentheses.
fn split_selector(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

impl Store {
    /// Every local task as its Pod, those matching `selector`.
    pub fn pods(&self, selector: &str) -> Result<Vec<k8s_openapi::api::core::v1::Pod>> {
        let io =
            |e: io::Error| Error::other(format!("local tasks in {}: {e}", self.root.display()));
        let mut out = Vec::new();
        for t in self.all().map_err(io)? {
            // A task removed while listing is simply not listed.
            let Ok(v) = t.view() else { continue };
            let p = pod::of(&v);
            if selector_matches(
                selector,
                p.metadata.labels.as_ref().unwrap_or(&Default::default()),
            ) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// One task by id or pod name, as its Pod.
    pub fn pod(
        &self,
        task_or_pod: &str,
    ) -> Result<Option<(TaskDir, k8s_openapi::api::core::v1::Pod)>> {
        let name = crate::task::pod_name_for(task_or_pod)?;
        let t = TaskDir {
            dir: self.tasks_dir().join(&name),
        };
        if !t.spec_file().exists() {
            return Ok(None);
        }
        let v = t
            .view()
            .map_err(|e| Error::other(format!("local task {task_or_pod}: {e}")))?;
        Ok(Some((t, pod::of(&v))))
    }
}

impl TaskDir {
    /// The last `lines` lines of the log, timestamps removed (the task model's tail).
    pub fn log_tail(&self, lines: usize) -> String {
        let raw = self.log_end();
        let all: Vec<&[u8]> = raw.split_inclusive(|b| *b == b'\n').collect();
        let mut out = String::new();
        for l in &all[all.len().saturating_sub(lines)..] {
            let body = crate::follow::split_timestamp(l).map_or(*l, |(_, rest)| rest);
            out.push_str(&String::from_utf8_lossy(body));
        }
        out
    }

    /// The log's last MiB at most, from a line's start: a tail never reads a long run's
    /// whole log (the web page re-reads it as the log grows), as the cluster's tail read
    /// is capped in bytes.
    fn log_end(&self) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(self.log()) else {
            return Vec::new();
        };
        let cap = crate::cluster::LOG_TAIL_MAX as u64;
        let len = f.metadata().map_or(0, |m| m.len());
        let from = len.saturating_sub(cap);
        let mut raw = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.take(cap).read_to_end(&mut raw).is_err() {
            return Vec::new();
        }
        if from > 0 {
            // Started inside a line: its end is not a whole line.
            let cut = raw
                .iter()
                .position(|b| *b == b'\n')
                .map_or(raw.len(), |i| i + 1);
            raw.drain(..cut);
        }
        raw
    }

    /// The first MiB of the log, its lines without their timestamps (what the API
    /// server's log endpoint gives without `timestamps=true`): where the agent announces
    /// its session, early.
    pub fn log_head(&self) -> String {
        use std::io::Read;
        let mut raw = Vec::new();
        if let Ok(f) = std::fs::File::open(self.log()) {
            let _ = f
                .take(crate::cluster::LOG_TAIL_MAX as u64)
                .read_to_end(&mut raw);
        }
        let mut out = String::with_capacity(raw.len());
        for l in raw.split_inclusive(|b| *b == b'\n') {
            let body = crate::follow::split_timestamp(l).map_or(l, |(_, rest)| rest);
            out.push_str(&String::from_utf8_lossy(body));
        }
        out
    }

    /// The log as the task object reads it: the tail, and the session the tail announces,
    /// else the head (a long run's announcement has scrolled out of the tail), as
    /// [`crate::cluster::agent_log`] reads a pod's.
    pub fn agent_log(&self) -> crate::cluster::AgentLog {
        let tail = self.log_tail(crate::marker::TAIL_LINES as usize);
        let mut session = crate::marker::last_session(&tail).map(str::to_string);
        if session.is_none() && tail.lines().count() >= crate::marker::TAIL_LINES as usize {
            session = crate::marker::session_announcement(&self.log_head()).and_then(Result::ok);
        }
        crate::cluster::AgentLog { tail, session }
    }

    /// A person's answer (`asdo answer`), as a pod's annotation is on a cluster: the line
    /// `key="value"` (Go-quoted, as the kubelet writes its downwardAPI file) in
    /// `input/annotations`, the file ASDO_ANSWERS_FILE names and the agent cannot write.
    /// An earlier answer to the same request is replaced. Written beside it and renamed,
    /// so the agent never reads half a file.
    pub fn answer(&self, key: &str, value: &str) -> io::Result<()> {
        let old = std::fs::read_to_string(self.answers()).unwrap_or_default();
        let prefix = format!("{key}=");
        let mut text: String = old
            .lines()
            .filter(|l| !l.starts_with(&prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!(
            "{key}={}\n",
            crate::agent::answers::quote_go(value)
        ));
        let tmp = self.input().join(".annotations.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.answers())
    }

    /// Asks a running task to stop as a pod's deletion does: SIGTERM to the agent (which
    /// pushes its work in progress and ends 143), never to the sandbox around it. Returns
    /// whether a process was signalled.
    pub fn cancel(&self) -> Result<bool> {
        let v = self
            .view()
            .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
        if v.phase == Phase::Queued {
            // Its runner waits for a slot and looks for this file before starting the agent.
            std::fs::write(self.cancel_requested(), b"")
                .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
            return Ok(true);
        }
        let st = v.state.unwrap_or_default();
        let (Phase::Running, Some(outer)) = (&v.phase, st.agent_pid) else {
            return Ok(false);
        };
        let target = if v.spec.sandbox {
            proc::below_bwrap(outer)
        } else {
            Some(outer)
        };
        let Some(pid) = target else { return Ok(false) };
        // SAFETY: kill(2) on a pid read from this task's own records while its runner runs.
        Ok(unsafe { libc::kill(pid as i32, libc::SIGTERM) } == 0)
    }

    /// Deletes the task's directory (clone, HOME, log) — only once its process is gone.
    pub fn remove(&self) -> Result<()> {
        let v = self
            .view()
            .map_err(|e| Error::other(format!("{}: {e}", self.dir.display())))?;
        if !v.phase.is_finished() {
            return Err(Error::usage(format!(
                "local task {} is {}: it is removed once it has ended",
                v.spec.id,
                v.phase.name()
            )));
        }
        // Renamed first, so a concurrent reader never sees half a task.
        let gone = self.dir.with_file_name(format!(
            ".removing-{}-{}",
            self.dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(&self.dir, &gone)
            .and_then(|()| std::fs::remove_dir_all(&gone))
            .map_err(|e| Error::other(format!("removing {}: {e}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_logs_tail_is_read_from_its_last_mib_on_whole_lines() {
        let d = std::env::temp_dir().join(format!("asdo-localtail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = TaskDir { dir: d.clone() };
        // 3 MiB of stamped lines, then the ending: the cut at 1 MiB falls inside a line.
        let mut log = Vec::new();
        let mut i = 0;
        while log.len() < 3 * crate::cluster::LOG_TAIL_MAX {
            log.extend(logfile::stamped(
                format!("· bash step {i} {}\n", "x".repeat(97)).as_bytes(),
            ));
            i += 1;
        }
        log.extend(logfile::stamped(b"asdo: done 0123abcd\n"));
        std::fs::write(t.log(), &log).unwrap();
        let end = t.log_end();
        assert!(end.len() <= crate::cluster::LOG_TAIL_MAX, "{}", end.len());
        assert!(
            crate::follow::split_timestamp(&end).is_some(),
            "starts on a whole line"
        );
        let tail = t.log_tail(2);
        assert_eq!(
            tail,
            format!(
                "· bash step {} {}\nasdo: done 0123abcd\n",
                i - 1,
                "x".repeat(97)
            )
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn pid(n: u32) -> ProcessId {
        ProcessId {
            pid: n,
            start_ticks: 1,
            boot_id: "b".into(),
        }
    }

    #[test]
    fn state_dir_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            state_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/asdo"))
        );
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), ("XDG_STATE_HOME", "/x")])),
            Some(PathBuf::from("/x/asdo"))
        );
        // Relative XDG paths are invalid per the spec.
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), ("XDG_STATE_HOME", "x")])),
            Some(PathBuf::from("/h/.local/state/asdo"))
        );
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), (STATE_DIR_ENV, "/s")])),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(state_dir(env(&[])), None);
    }

    #[test]
    fn phase_tells_queued_running_done_and_lost() {
        let launch = Launch { runner: pid(7) };
        let yes = |_: &ProcessId| true;
        let no = |_: &ProcessId| false;
        assert_eq!(phase(None, None, &no), Phase::Queued);
        assert_eq!(phase(Some(&launch), None, &yes), Phase::Queued);
        let lost = Phase::Failed {
            exit_code: None,
            lost: true,
        };
        assert_eq!(phase(Some(&launch), None, &no), lost);
        let mut s = RunState {
            runner: Some(pid(7)),
            queued_at: Some(now()),
            ..Default::default()
        };
        assert_eq!(phase(Some(&launch), Some(&s), &yes), Phase::Queued);
        s.started_at = Some(now());
        assert_eq!(phase(Some(&launch), Some(&s), &yes), Phase::Running);
        // The runner gone mid-run (killed, reboot): lost, never Running.
        assert_eq!(phase(Some(&launch), Some(&s), &no), lost);
        s.exit_code = Some(0);
        assert_eq!(phase(Some(&launch), Some(&s), &no), Phase::Succeeded);
        s.exit_code = Some(12);
        assert_eq!(
            phase(Some(&launch), Some(&s), &no),
            Phase::Failed {
                exit_code: Some(12),
                lost: false
            }
        );
    }

    #[test]
    fn a_rendered_pod_gives_the_same_contract_locally() {
        use crate::render::{Target, pod};
        let values =
            crate::values::Values::from_value(crate::values::defaults_for("dev").unwrap()).unwrap();
        let task = crate::task::Task {
            id: "T001".into(),
            branch: "specs/001/T001".into(),
            repo: "file:///srv/r.git".into(),
            context_dir: "/workspace".into(),
            spec_dir: None,
            base: Some("main".into()),
            prompt: Some("Implement T001".into()),
            model: Some("stub/stub-model".into()),
        };
        let target = Target {
            release: "agentic-sdlc-orchestrator-dev".into(),
            namespace: "agent-orchestrator-dev".into(),
            environment: "dev".into(),
        };
        let p = pod(&values, &task, &target);
        let r = request_from_pod(&p, None, true, 2, "/bin/asdo".into()).unwrap();
        assert_eq!(
            (r.id.as_str(), r.branch.as_str(), r.repo.as_str()),
            ("T001", "specs/001/T001", "file:///srv/r.git")
        );
        assert_eq!(r.base.as_deref(), Some("main"));
        assert_eq!(r.prompt.as_deref(), Some("Implement T001"));
        let names: Vec<&str> = r.env.iter().map(|(k, _)| k.as_str()).collect();
        for want in [
            "TASK_ID",
            "GIT_BRANCH",
            "OPENCODE_MODEL",
            "ASDO_MAX_TURNS",
            "ASDO_PERMISSIONS",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        for owned in RUNTIME_OWNED {
            assert!(!names.contains(&owned), "{owned} is the runtime's");
        }
    }

    #[test]
    fn selectors_match_as_the_api_server() {
        let labels: std::collections::BTreeMap<String, String> =
            [("app", "agent-orchestrator"), ("task-id", "T1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        for (sel, want) in [
            ("app=agent-orchestrator", true),
            ("app=agent-orchestrator,task-id=T1", true),
            ("app=agent-orchestrator,task-id=T2", false),
            ("task-id!=T2", true),
            ("task-id", true),
            ("!task-id", false),
            ("task-id in (T1,T3)", true),
            ("task-id notin (T1,T3)", false),
            ("app==agent-orchestrator", true),
        ] {
            assert_eq!(selector_matches(sel, &labels), want, "{sel}");
        }
    }

    #[test]
    fn timestamps_are_the_kubelets() {
        let t: k8s_openapi::jiff::Timestamp = "2026-12-04T14:00:07.5Z".parse().unwrap();
        let s = rfc3339_nano(t);
        assert_eq!(s, "2026-12-04T14:00:07.500000000Z");
        let line = format!("{s} hello\n");
        let (ts, rest) = crate::follow::split_timestamp(line.as_bytes()).unwrap();
        assert_eq!(ts, t);
        assert_eq!(rest, b"hello\n");
    }
}
