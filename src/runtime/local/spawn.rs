//! `asdo spawn` on the local runtime: the same plan and rendered pods as on a cluster
//! (`crate::spawn`), each started as a local task instead of created as a Pod, with the
//! same `--if-exists` rules and spec-kit records.

use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::{
    Launch, Phase, Spec, Store, TaskDir, now, pod, proc, random_hex, runner, sandbox, uid,
    write_json,
};
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
