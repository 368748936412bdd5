//! The local runtime without any cluster or fake API server: tasks spawned through
//! `asdo::runtime::local` run the built `asdo` (its hidden `local-runner`, then `asdo
//! agent` in bubblewrap) against local bare repositories; the real opencode 1.18.33 and
//! the scripted model server where a model is needed, a stand-in `opencode` where only
//! the process matters (lost, queued). Its own test binary, beside tests/agent.rs whose
//! fixture it shares: nothing here needs the fake API server the e2e binary starts.

mod agent_fixture;
#[path = "support/model_server/mod.rs"]
mod model_server;
#[path = "local/remote.rs"]
mod remote;
#[path = "support/task_schema.rs"]
mod task_schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_fixture::*;
use asdo::runtime::local::{self, Phase, SpawnRequest, Store, TaskDir};
use model_server::{ModelServer, Step};

/// A store and a fake user HOME outside /tmp (the sandbox's own /tmp would hide a /tmp
/// path anyway; here only the home-hiding can), removed afterwards.
struct Local {
    root: PathBuf,
}

impl Local {
    fn new(tag: &str) -> Local {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("asdo-local-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).unwrap();
        Local { root }
    }
    fn store(&self) -> Store {
        Store {
            root: self.root.join("state"),
        }
    }
    fn home(&self) -> PathBuf {
        self.root.join("home")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The runner's environment: the user's PATH, the fake HOME, and the model configuration
/// as a user would export it.
fn runner_env(l: &Local, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", path.to_string()),
        ("HOME", l.home().display().to_string()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The runner's environment for the real opencode: the sandbox's opencode first on the
/// user's PATH, the model configuration `config` (`OPENCODE_CONFIG_CONTENT`), and no
/// fetch of models.dev (this machine is offline).
fn opencode_env(l: &Local, config: &str) -> Vec<(String, String)> {
    let path = format!(
        "{}:{}",
        opencode_dir().display(),
        std::env::var("PATH").unwrap()
    );
    runner_env(
        l,
        &path,
        &[
            ("OPENCODE_CONFIG_CONTENT", config),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ],
    )
}

/// `env` for the CLI: `ASDO_STATE_DIR` names the test's store.
fn with_state(l: &Local, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.push((
        "ASDO_STATE_DIR".into(),
        l.store().root.display().to_string(),
    ));
    env
}

/// The CLI's environment for a local task running the real opencode with `config`.
fn cli_env(l: &Local, config: &str) -> Vec<(String, String)> {
    with_state(l, opencode_env(l, config))
}

/// `spawn --task-id <id> --branch <branch> --repo <repo> --prompt <prompt>` and `extra`.
fn spawn_args<'a>(
    id: &'a str,
    branch: &'a str,
    repo: &'a str,
    prompt: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "spawn",
        "--task-id",
        id,
        "--branch",
        branch,
        "--repo",
        repo,
        "--prompt",
        prompt,
    ];
    args.extend_from_slice(extra);
    args
}

fn request(f: &Fixture, id: &str, runner_env: Vec<(String, String)>) -> SpawnRequest {
    SpawnRequest {
        id: id.into(),
        branch: BRANCH.into(),
        repo: f.repo_url(),
        base: None,
        model: Some("stub/stub-model".into()),
        prompt: Some("Add a greeting file\n\nIt says hello.".into()),
        env: vec![
            ("TASK_ID".into(), id.into()),
            ("GIT_REPO".into(), f.repo_url()),
            ("GIT_BRANCH".into(), BRANCH.into()),
            ("OPENCODE_MODEL".into(), "stub/stub-model".into()),
        ],
        sandbox: true,
        max_parallel: 4,
        asdo: env!("CARGO_BIN_EXE_asdo").into(),
        runner_env: Some(runner_env),
    }
}

fn phase(t: &TaskDir) -> Phase {
    t.view().unwrap().phase
}

/// Two tasks without a sandbox at --max-parallel 1: the first running, the second's
/// runner up and Queued for the slot.
fn one_running_one_queued(
    f: &Fixture,
    l: &Local,
    env: &[(String, String)],
    first: &str,
    second: &str,
) -> (TaskDir, TaskDir) {
    let spawn = |id: &str| {
        let mut req = request(f, id, env.to_vec());
        req.max_parallel = 1;
        req.sandbox = false;
        local::spawn(&l.store(), &req).unwrap()
    };
    let a = spawn(first);
    assert!(eventually(Duration::from_secs(120), || phase(&a) == Phase::Running));
    let b = spawn(second);
    assert!(eventually(Duration::from_secs(60), || b
        .state()
        .unwrap()
        .is_some_and(|s| s.queued_at.is_some())));
    assert_eq!(phase(&b), Phase::Queued);
    (a, b)
}

fn wait_finished(t: &TaskDir, limit: Duration) -> local::LocalTask {
    assert!(
        eventually(limit, || phase(t).is_finished()),
        "task did not finish: {:?}\nlog:\n{}\nrunner:\n{}",
        t.view().unwrap().phase,
        std::fs::read_to_string(t.log()).unwrap_or_default(),
        std::fs::read_to_string(t.runner_err()).unwrap_or_default()
    );
    t.view().unwrap()
}

/// The log without its timestamps; every line must carry one.
fn log_text(t: &TaskDir) -> String {
    let raw = std::fs::read(t.log()).unwrap();
    let mut out = String::new();
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let (_, rest) = asdo::follow::split_timestamp(line)
            .unwrap_or_else(|| panic!("unstamped log line {:?}", String::from_utf8_lossy(line)));
        out.push_str(&String::from_utf8_lossy(rest));
    }
    out
}

/// The full path: spawn returns at once, the runner runs the real agent + opencode in
/// the sandbox, the branch is pushed to the local remote, the log is stamped line by
/// line and the state file says Succeeded with exit 0. And the isolation: the model's
/// bash cannot read a file planted in the user's home, nor write there, while the
/// clone is writable.
#[test]
fn a_local_task_runs_in_the_sandbox_and_pushes_its_branch() {
    let f = Fixture::new("local-ok");
    let l = Local::new("ok");
    let secret = l.home().join("secret.txt");
    std::fs::write(&secret, "the-users-secret-42\n").unwrap();
    // The path travels base64-encoded, so opencode's bash tool sees no outside path to
    // ask about: the sandbox, not opencode's permission check, must stop the read.
    let b64 = |p: &Path| {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf %s \"$0\" | base64 -w0"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let probe = format!(
        "echo probe-$((40+2)); cat \"$(echo {} | base64 -d)\"; echo pwned > \"$(echo {} | base64 -d)\"; echo done-probing",
        b64(&secret),
        b64(&l.home().join("pwned.txt"))
    );
    let t0 = Store {
        root: l.root.join("state"),
    }
    .task("T001");
    let model = ModelServer::start(vec![
        Step::bash(&probe),
        Step::write(&t0.workspace().join("hello.txt"), "hello\n"),
        Step::text("Created hello.txt."),
    ]);
    let env = opencode_env(&l, &model.opencode_config());
    let t = local::spawn(&l.store(), &request(&f, "T001", env)).unwrap();
    assert_eq!(t, t0);
    let v = wait_finished(&t, Duration::from_secs(400));
    let log = log_text(&t);
    assert_eq!(v.phase, Phase::Succeeded, "{log}");
    let st = v.state.unwrap();
    assert_eq!(st.exit_code, Some(0));
    assert!(st.port.is_some_and(|p| p > 0) && st.started_at.is_some());
    let sha = f.remote_branch(BRANCH).expect("pushed");
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");
    assert_eq!(
        asdo::marker::last(&log),
        Some(asdo::marker::Marker::Done(sha))
    );

    // The probe ran (its output came back to the model) but saw nothing of the home.
    let told = model.turns()[1].text();
    assert!(told.contains("probe-42"), "the bash call ran: {told}");
    assert!(told.contains("done-probing"), "{told}");
    assert!(
        !told.contains("the-users-secret-42"),
        "the model read the user's file: {told}"
    );
    assert!(told.contains("No such file or directory"), "{told}");
    assert!(
        !l.home().join("pwned.txt").exists(),
        "wrote into the user's home"
    );
    // The password stays in its 0600 file and out of the log.
    use std::os::unix::fs::PermissionsExt;
    let pw = std::fs::read_to_string(t.password()).unwrap();
    assert_eq!(
        std::fs::metadata(t.password())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!log.contains(pw.trim()));
}

/// A task whose runner is killed (as by a reboot or `kill -9`) is Failed (lost), never
/// Running; the sandbox dies with it and its parallel slot is free again.
#[test]
fn a_killed_task_is_lost_and_frees_its_slot() {
    let f = Fixture::new("local-lost");
    let l = Local::new("lost");
    // An opencode that never answers: the task stays Running until killed.
    f.stand_in("opencode", "exec sleep 600");
    let env = runner_env(&l, &f.path_var(), &[]);
    let mut req = request(&f, "T002", env);
    req.max_parallel = 1;
    let t = local::spawn(&l.store(), &req).unwrap();
    assert!(
        eventually(Duration::from_secs(120), || phase(&t) == Phase::Running),
        "{:?}",
        phase(&t)
    );
    let st = t.state().unwrap().unwrap();
    let runner = st.runner.clone().unwrap();
    let agent = st.agent_pid.unwrap();
    assert!(alive(agent as i32));
    let cli = with_state(&l, runner_env(&l, &f.path_var(), &[]));
    // `asdo answer` on a local task: the line the kubelet would write for the pod's
    // annotation, in the file the agent reads (ASDO_ANSWERS_FILE); a second answer to the
    // same request replaces the first, another request's stays.
    for (req, ans) in [
        ("per_abc1", "reject"),
        ("que_q1", "Postgres"),
        ("per_abc1", "once"),
    ] {
        let r = asdo(&cli, &["answer", "T002", req, ans]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains("answered"), "{r:?}");
    }
    let file = std::fs::read_to_string(t.answers()).unwrap();
    let answers = asdo::agent::answers::parse_answers_file(&file);
    assert_eq!(answers.len(), 2, "{file}");
    let per = answers.iter().find(|a| a.id == "per_abc1").unwrap();
    assert_eq!(per.reply.as_deref(), Some("once"), "{file}");
    let que = answers.iter().find(|a| a.id == "que_q1").unwrap();
    assert_eq!(que.answers, vec![vec!["Postgres".to_string()]], "{file}");
    let r = asdo(&cli, &["answer", "T999", "per_abc1", "once"]);
    assert_eq!(r.code, 1, "{r:?}");
    let r = asdo(&cli, &["answer", "T002", "bogus", "once"]);
    assert_eq!(r.code, 2, "bad input is a usage error: {r:?}");
    unsafe {
        libc::kill(runner.pid as i32, libc::SIGKILL);
    }
    assert!(eventually(Duration::from_secs(60), || {
        phase(&t)
            == Phase::Failed {
                exit_code: None,
                lost: true,
            }
    }));
    assert!(
        eventually(Duration::from_secs(60), || !alive(agent as i32)),
        "the sandbox outlived its runner"
    );
    // As a Pod: Failed with reason lost, no exit code, the words saying what happened.
    let pod = local::pod::of(&t.view().unwrap());
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some(local::pod::LOST));
    assert!(status.message.unwrap().contains("was lost"));
    // And as the verbs say it: `Failed (lost)` in list's STATUS, reason `lost` in the task
    // object (valid against the schema), and status/wait exit 1.
    let r = asdo(&cli, &["list"]);
    assert_eq!(r.code, 0, "{r:?}");
    let row = r
        .stdout
        .lines()
        .find(|l| l.contains("agent-t002"))
        .expect("listed");
    assert!(row.contains("Failed (lost)"), "{r:?}");
    let r = asdo(&cli, &["status", "T002", "-o", "json"]);
    let t = json(&r);
    assert_eq!(t["phase"], "Failed", "{t}");
    assert_eq!(t["reason"], "lost", "{t}");
    assert_eq!(t["status"], "Failed (lost)", "{t}");
    assert_eq!(t["exit_code"], serde_json::Value::Null, "{t}");
    let w = asdo(&cli, &["wait", "T002", "-o", "json"]);
    assert_eq!(w.code, 1, "{w:?}");
    assert_eq!(json(&w)["status"], "Failed (lost)", "{w:?}");
    task_schema::assert_valid(&l.root, "lost", &[t, json(&w)]);
    assert!(
        local::slots::try_acquire(&l.store().slots_dir(), 1)
            .unwrap()
            .is_some(),
        "the dead runner's slot is free"
    );
}

/// `--max-parallel 1`: the second task is Queued (no agent started) until the first
/// ends, then runs. Also the no-sandbox path: the agent runs directly.
#[test]
fn max_parallel_one_queues_the_second_task() {
    let f = Fixture::new("local-queue");
    let l = Local::new("queue");
    let release = f.path("release");
    f.stand_in(
        "opencode",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.1; done; exit 3",
            release.display()
        ),
    );
    let env = runner_env(&l, &f.path_var(), &[]);
    // b's runner is up and waiting for the slot.
    let (a, b) = one_running_one_queued(&f, &l, &env, "T003", "T004");
    // As a Pod: Pending behind the max-parallel gate (the task model's Queued), and
    // listed by the task-id selector with the other.
    let pod = local::pod::of(&b.view().unwrap());
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(
        pod.spec.unwrap().scheduling_gates.unwrap()[0].name,
        local::pod::GATE
    );
    let names = |sel: &str| -> Vec<String> {
        l.store()
            .pods(sel)
            .unwrap()
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names("app=agent-orchestrator"),
        ["agent-t003", "agent-t004"]
    );
    assert_eq!(names("app=agent-orchestrator,task-id=T004"), ["agent-t004"]);
    assert!(b.state().unwrap().unwrap().started_at.is_none());
    std::fs::write(&release, "").unwrap();
    let va = wait_finished(&a, Duration::from_secs(200));
    let vb = wait_finished(&b, Duration::from_secs(200));
    // Both failed the same way (the stand-in exits 3): the agent ran in each.
    for v in [&va, &vb] {
        assert!(
            matches!(
                v.phase,
                Phase::Failed {
                    exit_code: Some(12),
                    lost: false
                }
            ),
            "{:?}\n{}",
            v.phase,
            log_text(&v.dir)
        );
    }
    let ended_a: k8s_openapi::jiff::Timestamp =
        va.state.unwrap().finished_at.unwrap().parse().unwrap();
    let started_b: k8s_openapi::jiff::Timestamp =
        vb.state.unwrap().started_at.unwrap().parse().unwrap();
    assert!(started_b >= ended_a, "b started only after a ended");
}

/// `cleanup --all --force` while one task runs and another waits for the only slot: the
/// running one is cancelled (SIGTERM), the queued one ends at once without ever starting
/// its agent (exit 143, the log says why), and the next cleanup removes both.
#[test]
fn cleanup_force_ends_a_task_still_queued() {
    let f = Fixture::new("local-qcancel");
    let l = Local::new("qcancel");
    f.stand_in("opencode", "exec sleep 600");
    let env = runner_env(&l, &f.path_var(), &[]);
    let (a, b) = one_running_one_queued(&f, &l, &env, "T005", "T006");
    let cli = with_state(&l, env.clone());
    let r = asdo(&cli, &["cleanup", "--all", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("pod/agent-t006 cancelled while queued"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("pod/agent-t005 cancelled (SIGTERM)"),
        "{r:?}"
    );
    let vb = wait_finished(&b, Duration::from_secs(120));
    assert_eq!(
        vb.phase,
        Phase::Failed {
            exit_code: Some(143),
            lost: false
        }
    );
    let st = vb.state.unwrap();
    assert!(st.started_at.is_none(), "the agent never started");
    assert!(log_text(&b).contains("cancelled while queued"));
    wait_finished(&a, Duration::from_secs(120));
    let r = asdo(&cli, &["cleanup"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t005 deleted"), "{r:?}");
    assert!(r.stdout.contains("pod/agent-t006 deleted"), "{r:?}");
}

/// No bwrap on PATH: spawn refuses in one line naming the package, and creates nothing.
#[test]
fn without_bubblewrap_spawn_names_the_package() {
    let f = Fixture::new("local-nobwrap");
    let l = Local::new("nobwrap");
    // A PATH with only the fixture's stand-ins: no bwrap on it.
    let env = runner_env(&l, &f.path("bin").display().to_string(), &[]);
    let e = local::spawn(&l.store(), &request(&f, "T005", env)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("`bubblewrap`"), "{msg}");
    assert!(msg.contains("--no-sandbox"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(!l.store().task("T005").dir.exists(), "nothing half-created");
}

/// Cancelling a running local task signals the agent inside the sandbox (bwrap passes
/// no signals on): the agent ends as on a pod's deletion, 143, recorded, not lost.
#[test]
fn cancel_reaches_the_agent_inside_the_sandbox() {
    let f = Fixture::new("local-cancel");
    let l = Local::new("cancel");
    f.stand_in("opencode", "exec sleep 600");
    let env = runner_env(&l, &f.path_var(), &[]);
    let t = local::spawn(&l.store(), &request(&f, "T006", env)).unwrap();
    assert!(eventually(Duration::from_secs(120), || phase(&t) == Phase::Running));
    // The agent is up (its first marker is in the log) before it is asked to stop.
    assert!(eventually(Duration::from_secs(120), || {
        std::fs::read_to_string(t.log())
            .unwrap_or_default()
            .contains("asdo: running opencode")
    }));
    assert!(t.cancel().unwrap(), "a process was signalled");
    let v = wait_finished(&t, Duration::from_secs(120));
    assert_eq!(
        v.phase,
        Phase::Failed {
            exit_code: Some(143),
            lost: false
        },
        "{}",
        log_text(&t)
    );
}

// ---- The verbs on the local runtime, through the CLI ---------------------------------

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Stdout as one JSON document.
fn json(r: &Ran) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// `asdo --runtime local <args>` with exactly `env` (no kubeconfig anywhere).
fn asdo(env: &[(String, String)], args: &[&str]) -> Ran {
    asdo_in(Path::new("/"), env, args)
}

fn asdo_in(dir: &Path, env: &[(String, String)], args: &[&str]) -> Ran {
    ran(local_cmd(dir, env, args))
}

/// `asdo --runtime local <args>` in `dir`, as [`piped`] makes it.
fn local_cmd(dir: &Path, env: &[(String, String)], args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asdo"));
    c.current_dir(dir).args(["--runtime", "local"]).args(args);
    piped(c, env)
}

/// `c` with exactly `env`, stdin closed and its output piped.
fn piped(mut c: std::process::Command, env: &[(String, String)]) -> std::process::Command {
    c.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// `c` run to its end (killed and failed after 400 s).
fn ran(mut c: std::process::Command) -> Ran {
    let r = wait_for(c.spawn().unwrap(), Duration::from_secs(400));
    Ran {
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
    }
}

/// spawn → logs (followed, then --tail) → wait → list → status → cleanup --save-logs, the
/// real opencode in the sandbox; and a --no-sandbox task that fails: warned, and wait
/// says so with exit 1.
#[test]
fn the_verbs_drive_a_local_task_end_to_end() {
    let f = Fixture::new("local-cli");
    let l = Local::new("cli");
    let ws = l.store().task("T010").workspace();
    let model = ModelServer::start(vec![
        Step::write(&ws.join("hello.txt"), "hello\n"),
        Step::text("Created hello.txt."),
    ]);
    let env = cli_env(&l, &model.opencode_config());
    let repo = f.repo_url();
    let spawn = spawn_args(
        "T010",
        BRANCH,
        &repo,
        "Add a greeting file",
        &["--model", "stub/stub-model"],
    );
    let r = asdo(&env, &spawn);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t010 created\n", "{r:?}");
    assert!(r.stderr.contains("asdo --runtime local logs T010"), "{r:?}");
    // The same id again: refused, nothing replaced.
    let again = asdo(&env, &spawn);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");

    let r = asdo(&env, &["logs", "T010"]);
    assert_eq!(r.code, 0, "{r:?}");
    let sha = f.remote_branch(BRANCH).expect("pushed");
    assert_eq!(
        asdo::marker::last(&r.stdout),
        Some(asdo::marker::Marker::Done(sha.clone()))
    );
    assert!(
        r.stderr.contains("==> task T010: Succeeded, exit code 0"),
        "{r:?}"
    );
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");

    let r = asdo(&env, &["logs", "T010", "--tail", "1", "--no-follow"]);
    assert_eq!(r.stdout, format!("asdo: done {sha}\n"), "{r:?}");
    let r = asdo(
        &env,
        &["logs", "T010", "--tail", "1", "--no-follow", "--timestamps"],
    );
    let (_, rest) = asdo::follow::split_timestamp(r.stdout.as_bytes()).expect("stamped");
    assert_eq!(rest, format!("asdo: done {sha}\n").as_bytes());

    let r = asdo(&env, &["wait", "T010"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("T010") && r.stdout.contains(&sha[..7]),
        "{r:?}"
    );

    // The task object, as every verb prints it with -o json, valid against the schema.
    let mut docs = Vec::new();
    let r = asdo(&env, &["wait", "T010", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 1, "one object per line: {r:?}");
    docs.push(json(&r));
    let r = asdo(&env, &["status", "T010", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    docs.push(json(&r));
    let r = asdo(&env, &["list", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let listed = json(&r);
    docs.extend(listed.as_array().expect("a list of tasks").clone());
    assert_eq!(docs.len(), 3, "{docs:?}");
    for t in &docs {
        assert_eq!(t["id"], "T010", "{t}");
        assert_eq!(t["pod"], "agent-t010", "{t}");
        assert_eq!(t["namespace"], "local", "{t}");
        assert_eq!(t["phase"], "Succeeded", "{t}");
        assert_eq!(t["status"], "Succeeded", "{t}");
        assert_eq!(t["exit_code"], 0, "{t}");
        assert_eq!(t["branch"], BRANCH, "{t}");
        assert_eq!(t["commit"], sha.as_str(), "{t}");
        assert_eq!(t["files"], 1, "{t}");
        assert_eq!(t["log_read"], true, "{t}");
    }
    task_schema::assert_valid(&l.root, "local", &docs);

    let r = asdo(&env, &["list"]);
    assert_eq!(r.code, 0, "{r:?}");
    let row = r
        .stdout
        .lines()
        .find(|l| l.contains("agent-t010"))
        .expect("listed");
    assert!(row.contains("Succeeded") && row.contains(BRANCH), "{r:?}");

    let r = asdo(&env, &["status", "T010"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Succeeded"), "{r:?}");

    // The result taken back into the user's clone: diff, then apply.
    let clone = l.root.join("clone");
    f.git(&["clone", "--quiet", f.remote_str(), clone.to_str().unwrap()]);
    let mut genv = env.clone();
    genv.extend(f.git_env().into_iter().filter(|(k, _)| k != "HOME"));
    let r = asdo_in(&clone, &genv, &["diff", "T010", "--stat"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("hello.txt"), "{r:?}");
    let r = asdo_in(&clone, &genv, &["apply", "T010"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(clone.join("hello.txt")).unwrap(),
        "hello\n"
    );

    // A second task, without the sandbox, whose opencode fails at once.
    f.stand_in("opencode", "echo 'no model here' >&2; exit 3");
    let mut env2 = env.clone();
    for (k, v) in env2.iter_mut() {
        if k == "PATH" {
            *v = f.path_var();
        }
    }
    let mut bad = spawn.to_vec();
    bad[2] = "T011";
    bad.push("--no-sandbox");
    let r = asdo(&env2, &bad);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("--no-sandbox: the agent runs with your own rights"),
        "{r:?}"
    );
    let r = asdo(&env2, &["wait", "T010", "T011"]);
    assert_eq!(r.code, 1, "one failed: {r:?}");
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");

    // -o json prints the task objects on this runtime too (it used to print the lines).
    let r = asdo(&env, &["cleanup", "--dry-run", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let planned: Vec<serde_json::Value> =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let mut pods: Vec<&str> = planned.iter().map(|t| t["pod"].as_str().unwrap()).collect();
    pods.sort();
    assert_eq!(pods, ["agent-t010", "agent-t011"], "{r:?}");
    task_schema::assert_valid(&l.root, "cleanup", &planned);

    let saved = l.root.join("saved");
    let r = asdo(&env, &["cleanup", "--save-logs", saved.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t010 deleted"), "{r:?}");
    assert!(r.stdout.contains("pod/agent-t011 deleted"), "{r:?}");
    let logs: Vec<_> = std::fs::read_dir(saved.join("local"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let ok = logs
        .iter()
        .find(|p| p.to_string_lossy().contains("agent-t010"))
        .unwrap();
    assert!(
        std::fs::read_to_string(ok)
            .unwrap()
            .ends_with(&format!("asdo: done {sha}\n"))
    );
    let r = asdo(&env, &["list"]);
    assert!(r.stderr.contains("No local tasks found"), "{r:?}");
}

// ---- The README's main job, as written -----------------------------------------------

/// The `asdo …` command lines of the README's set-up block, a line ending in `\` joined
/// with the next (kept as written: the shell joins them).
fn readme_main_job() -> Vec<String> {
    let readme = include_str!("../README.md");
    let setup = readme
        .split("\n## Set-up")
        .nth(1)
        .expect("the README's set-up section");
    let block = setup
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the set-up section");
    let mut cmds: Vec<String> = Vec::new();
    let mut continued = false;
    for line in block.lines() {
        if continued {
            let cur = cmds.last_mut().unwrap();
            cur.push('\n');
            cur.push_str(line);
        } else if line.starts_with("asdo ") {
            cmds.push(line.to_string());
        } else {
            continue;
        }
        continued = line.ends_with('\\');
    }
    cmds
}

/// The README's main job run as written (each `asdo` line of the set-up block, by `sh`,
/// in a git checkout under the user's home standing in for "this checkout"), by a user
/// whose OpenCode provider is set up the way users do it: `~/.config/opencode/opencode.json`
/// naming a provider (the scripted model server) and a default model, its key stored by
/// `opencode auth login` in `~/.local/share/opencode/auth.json` — no
/// OPENCODE_CONFIG_CONTENT, no `--model`, since the README passes none. The state
/// directory is the default one under that home, and the agent runs in bubblewrap.
#[test]
fn the_readme_main_job_runs_as_written() {
    let cmds = readme_main_job();
    assert_eq!(cmds.len(), 3, "spawn, logs, diff: {cmds:#?}");
    assert!(cmds[0].starts_with("asdo --runtime local spawn --task-id T001 "));
    assert!(cmds[1].starts_with("asdo --runtime local logs T001"));
    assert!(cmds[2].starts_with("asdo --runtime local diff T001"));
    assert!(!cmds[0].contains("--model"), "the README passes no model");

    let l = Local::new("readme");
    let home = l.home();
    // Where the README's `$PWD` is: a clone with its own `main` checked out.
    let checkout = home.join("src/app");
    std::fs::create_dir_all(&checkout).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&checkout)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.com")
            .env("GIT_COMMITTER_NAME", "Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "--quiet", "-b", "main"]);
    std::fs::write(checkout.join("README.md"), "# app\n").unwrap();
    git(&["add", "README.md"]);
    git(&["commit", "--quiet", "-m", "initial"]);
    let main = git(&["rev-parse", "HEAD"]);

    // The default state directory of that user: ~/.local/state/asdo.
    let store = Store {
        root: home.join(".local/state/asdo"),
    };
    let text = "# Contributing\n\nRun the tests with `cargo test`.\n";
    let model = ModelServer::start(vec![
        Step::write(
            &store.task("T001").workspace().join("CONTRIBUTING.md"),
            text,
        ),
        Step::text("Added CONTRIBUTING.md."),
    ]);
    // A custom provider as OpenCode's docs set one up: declared in opencode.json (no key
    // there), its key stored by `opencode auth login` (Other, the provider's id) in
    // ~/.local/share/opencode/auth.json.
    let mut config: serde_json::Value = serde_json::from_str(&model.opencode_config_with(
        model_server::API_KEY,
        serde_json::json!({ "model": format!("{}/{}", model_server::PROVIDER, model_server::MODEL) }),
    ))
    .unwrap();
    config["provider"][model_server::PROVIDER]["options"]
        .as_object_mut()
        .unwrap()
        .remove("apiKey");
    std::fs::create_dir_all(home.join(".config/opencode")).unwrap();
    std::fs::write(
        home.join(".config/opencode/opencode.json"),
        config.to_string(),
    )
    .unwrap();
    let auth = serde_json::json!({ model_server::PROVIDER: { "type": "api", "key": model_server::API_KEY } });
    std::fs::create_dir_all(home.join(".local/share/opencode")).unwrap();
    std::fs::write(
        home.join(".local/share/opencode/auth.json"),
        auth.to_string(),
    )
    .unwrap();

    let bin = Path::new(env!("CARGO_BIN_EXE_asdo")).parent().unwrap();
    let env: Vec<(String, String)> = [
        (
            "PATH",
            format!(
                "{}:{}:{}",
                bin.display(),
                opencode_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        ),
        ("HOME", home.display().to_string()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        // This machine is offline: OpenCode must not wait for models.dev.
        ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    let sh = |cmd: &str| -> Ran {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(cmd).current_dir(&checkout);
        ran(piped(c, &env))
    };

    let r = sh(&cmds[0]);
    assert_eq!(r.code, 0, "{}\n{r:?}", cmds[0]);
    assert_eq!(r.stdout, "pod/agent-t001 created\n", "{r:?}");
    let t = store.task("T001");
    assert_eq!(
        t.spec().unwrap().repo,
        format!("file://{}", checkout.display()),
        "$PWD is the checkout"
    );

    let r = sh(&cmds[1]);
    let runner = std::fs::read_to_string(t.runner_err()).unwrap_or_default();
    assert_eq!(r.code, 0, "{}\n{r:?}\nrunner:\n{runner}", cmds[1]);
    let branch = "asdo/T001-readme";
    let sha = git(&["rev-parse", &format!("refs/heads/{branch}")]);
    assert_eq!(
        asdo::marker::last(&r.stdout),
        Some(asdo::marker::Marker::Done(sha.clone())),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("==> task T001: Succeeded, exit code 0"),
        "{r:?}"
    );
    // The user's provider and key reached the sandboxed agent: the scripted model was
    // asked, with the key from auth.json.
    let turns = model.turns();
    assert!(!turns.is_empty(), "the model was never called");
    assert!(turns.iter().all(|t| t.authorized), "the key from auth.json");
    assert_eq!(
        git(&["show", &format!("{branch}:CONTRIBUTING.md")]) + "\n",
        text.trim_end().to_string() + "\n"
    );

    let r = sh(&cmds[2]);
    assert_eq!(r.code, 0, "{}\n{r:?}", cmds[2]);
    assert!(r.stdout.contains("CONTRIBUTING.md"), "{r:?}");
    assert!(
        r.stdout.contains("+Run the tests with `cargo test`."),
        "{r:?}"
    );

    // The checkout the user works in is as it was: still on main, nothing changed in it.
    assert_eq!(git(&["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(git(&["rev-parse", "HEAD"]), main);
    assert_eq!(git(&["status", "--porcelain"]), "");
}

// ---- Three tasks, one failing, through the CLI ---------------------------------------

/// A long-running `asdo --runtime local …` (`logs --all`) as a child whose stdout and
/// stderr lines are collected as they come.
struct Streaming {
    child: Option<std::process::Child>,
    out: Lines,
    err: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Streaming {
    fn start(env: &[(String, String)], args: &[&str]) -> Streaming {
        let mut child = local_cmd(&std::env::current_dir().unwrap(), env, args)
            .spawn()
            .unwrap();
        fn collect(r: impl std::io::Read + Send + 'static) -> (Lines, std::thread::JoinHandle<()>) {
            use std::io::BufRead;
            let lines = Lines::default();
            let sink = lines.clone();
            let t = std::thread::spawn(move || {
                for l in std::io::BufReader::new(r).lines() {
                    let Ok(l) = l else { break };
                    sink.lock().unwrap().push(l);
                }
            });
            (lines, t)
        }
        let (out, a) = collect(child.stdout.take().unwrap());
        let (err, b) = collect(child.stderr.take().unwrap());
        Streaming {
            child: Some(child),
            out,
            err,
            readers: vec![a, b],
        }
    }
    fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }
    fn stderr(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }
    /// Ctrl-C; the exit code.
    fn interrupt(mut self) -> i32 {
        let child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let code = wait_for(child, Duration::from_secs(60)).code;
        for t in self.readers.drain(..) {
            t.join().unwrap();
        }
        code
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The issue's lifecycle on the local runtime, all through the CLI with the real
/// opencode in bubblewrap: three tasks spawned (the default --max-parallel, the number
/// of cores), followed together by `logs --all` until each has ended, one failing (its
/// provider refuses the API key: exit 12); `wait` reports both outcomes (exit 1, one
/// line per task, and one JSON object per task); the good one's change diffed and
/// applied in the user's clone; `cleanup --save-logs` archives the failed one's log
/// with its failure.
#[test]
fn three_tasks_followed_one_fails_wait_reports_both() {
    let f = Fixture::new("local-three");
    let l = Local::new("three");
    let store = l.store();
    // One scripted model server per task, each its own provider: a script serves its
    // calls in order, so three sessions must not share one.
    let a = ModelServer::start(vec![
        Step::write(&store.task("T021").workspace().join("a.txt"), "alpha\n"),
        Step::text("Created a.txt."),
    ]);
    let b = ModelServer::start(vec![
        Step::write(&store.task("T022").workspace().join("b.txt"), "beta\n"),
        Step::text("Created b.txt."),
    ]);
    let c = ModelServer::start(vec![]);
    let provider = |m: &ModelServer, key: &str| -> serde_json::Value {
        let cfg: serde_json::Value =
            serde_json::from_str(&m.opencode_config_with(key, serde_json::json!({}))).unwrap();
        cfg["provider"][model_server::PROVIDER].clone()
    };
    let mut config: serde_json::Value = serde_json::from_str(&a.opencode_config()).unwrap();
    config["provider"] = serde_json::json!({
        "pa": provider(&a, model_server::API_KEY),
        "pb": provider(&b, model_server::API_KEY),
        "pc": provider(&c, "sk-wrong"),
    });
    let env = cli_env(&l, &config.to_string());

    // Followed from before the first spawn: tasks are picked up as they appear.
    let follow = Streaming::start(&env, &["logs", "--all"]);
    let repo = f.repo_url();
    let tasks = [("T021", "pa"), ("T022", "pb"), ("T023", "pc")];
    for (id, provider) in tasks {
        let branch = format!("asdo/{id}");
        let model = format!("{provider}/{}", model_server::MODEL);
        let r = asdo(
            &env,
            &spawn_args(id, &branch, &repo, "Add a file", &["--model", &model]),
        );
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(
            r.stdout,
            format!("pod/agent-{} created\n", id.to_lowercase()),
            "{r:?}"
        );
    }
    // Each task's lines as `logs --all` printed them, its prefix taken off.
    let of = |lines: &[String], id: &str| -> String {
        let prefix = format!("[{id}] ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let endings = [
        ("agent-t021", "Succeeded, exit code 0"),
        ("agent-t022", "Succeeded, exit code 0"),
        ("agent-t023", "Failed, exit code 12"),
    ];
    // Until each task's last marker is out and its ending said (once its log is read to
    // the end and the task has ended, on stderr, in the words the cluster's `logs --all`
    // uses for a pod).
    let ended = |out: &[String], err: &[String]| {
        tasks.iter().all(|(id, _)| {
            matches!(
                asdo::marker::last(&of(out, id)),
                Some(asdo::marker::Marker::Done(_) | asdo::marker::Marker::Failed { .. })
            )
        }) && endings
            .iter()
            .all(|(pod, _)| err.iter().any(|l| l.starts_with(&format!("==> {pod}: "))))
    };
    let all_ended = eventually(Duration::from_secs(600), || {
        ended(&follow.stdout(), &follow.stderr())
    });
    let (lines, err) = (follow.stdout(), follow.stderr().join("\n"));
    assert!(
        all_ended,
        "not every task ended in `logs --all`:\n{}\n{err}\nstates: {:?}",
        lines.join("\n"),
        tasks.map(|(id, _)| phase(&store.task(id)))
    );
    for (pod, ending) in endings {
        assert!(
            err.lines().any(|l| l == format!("==> {pod}: {ending}")),
            "{pod}: {err}"
        );
    }
    let code = follow.interrupt();
    assert_eq!(code, 130, "Ctrl-C ends the follow");
    assert!(
        lines.iter().all(|l| tasks
            .iter()
            .any(|(id, _)| l.starts_with(&format!("[{id}] ")))),
        "every line carries its task's prefix, whole:\n{}",
        lines.join("\n")
    );
    let sha = |id: &str| f.remote_branch(&format!("asdo/{id}")).expect("pushed");
    for (id, file) in [("T021", "a.txt"), ("T022", "b.txt")] {
        assert_eq!(
            asdo::marker::last(&of(&lines, id)),
            Some(asdo::marker::Marker::Done(sha(id))),
            "{id}"
        );
        assert!(
            of(&lines, id).contains("asdo: running opencode"),
            "{id}: the whole log, from its start"
        );
        let want = if id == "T021" { "alpha" } else { "beta" };
        assert_eq!(f.remote_file(&format!("asdo/{id}"), file), want);
    }
    let failed = of(&lines, "T023");
    let last = failed.lines().rfind(|l| l.starts_with("asdo: ")).unwrap();
    assert!(
        last.starts_with("asdo: failed agent: ") && last.contains("Incorrect API key provided"),
        "{failed}"
    );
    assert_eq!(f.remote_branch("asdo/T023"), None, "nothing pushed");

    // wait: both outcomes, exit 1; one line per task, and one object per task.
    let ids = ["T021", "T022", "T023"];
    let mut args = vec!["wait"];
    args.extend(ids);
    let r = asdo(&env, &args);
    assert_eq!(r.code, 1, "one failed: {r:?}");
    let rows: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{r:?}");
    for (row, id) in rows.iter().zip(ids) {
        assert!(row.contains(id), "{r:?}");
    }
    assert!(rows[0].contains(&sha("T021")[..7]), "{r:?}");
    assert!(rows[2].contains("Failed"), "{r:?}");
    args.extend(["-o", "json"]);
    let r = asdo(&env, &args);
    assert_eq!(r.code, 1, "{r:?}");
    let objs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 3, "{r:?}");
    for (o, id) in objs.iter().zip(ids) {
        assert_eq!(o["id"], id, "{o}");
    }
    assert_eq!(objs[0]["status"], "Succeeded", "{r:?}");
    assert_eq!(objs[1]["status"], "Succeeded", "{r:?}");
    assert_eq!(objs[2]["phase"], "Failed", "{r:?}");
    assert_eq!(objs[2]["exit_code"], 12, "{r:?}");
    task_schema::assert_valid(&l.root, "three", &objs);

    // The good one taken into the user's clone.
    let clone = l.root.join("clone");
    f.git(&["clone", "--quiet", f.remote_str(), clone.to_str().unwrap()]);
    let mut genv = env.clone();
    genv.extend(f.git_env().into_iter().filter(|(k, _)| k != "HOME"));
    let r = asdo_in(&clone, &genv, &["diff", "T021"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("+alpha"), "{r:?}");
    assert!(!r.stdout.contains("beta"), "only T021's change: {r:?}");
    let r = asdo_in(&clone, &genv, &["apply", "T021"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(clone.join("a.txt")).unwrap(),
        "alpha\n"
    );
    // The failed one pushed nothing: there is nothing to diff, and it says so.
    let r = asdo_in(&clone, &genv, &["diff", "T023"]);
    assert_ne!(r.code, 0, "{r:?}");
    // It ended without pushing: said as that, not as a branch still to come.
    assert!(
        r.stderr.contains("task T023 ended (Failed") && r.stderr.contains("without pushing it"),
        "{r:?}"
    );

    // cleanup keeps the failed one's log, its failure in it.
    let saved = l.root.join("saved");
    let r = asdo(&env, &["cleanup", "--save-logs", saved.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    for id in ids {
        assert!(
            r.stdout
                .contains(&format!("pod/agent-{} deleted", id.to_lowercase())),
            "{r:?}"
        );
    }
    let archived = std::fs::read_dir(saved.join("local"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "log") && p.to_string_lossy().contains("agent-t023")
        })
        .expect("the failed task's log archived");
    let text = std::fs::read_to_string(&archived).unwrap();
    assert!(text.contains(last), "{text}");
    assert!(!store.task("T023").dir.exists(), "removed after archiving");
}

// ---- A reboot --------------------------------------------------------------------------

/// Every process below `pid` (its children, theirs …), found through /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in local::proc::children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// A reboot while a task runs: every process of the task gone at once, and the records
/// it left (launch.json, state.json) naming a process of the previous boot. After a
/// reboot a recorded pid is often taken again by a process started about as many clock
/// ticks after boot, so pid and start time alone can match; the stand-in for that
/// process is one of the test's own, put in the records in place of the runner. With
/// this boot's id it would pass for the runner (`Running`: the check the test makes sure
/// it can fool); with the previous boot's id, as a reboot leaves it, the task is
/// `Failed (lost)` in every verb, and its parallel slot is free for the next task.
#[test]
fn after_a_reboot_a_running_task_is_lost_and_its_slot_free() {
    let f = Fixture::new("local-reboot");
    let l = Local::new("reboot");
    let store = l.store();
    f.stand_in("opencode", "exec sleep 600");
    let env = with_state(&l, runner_env(&l, &f.path_var(), &[]));
    let repo = f.repo_url();
    let spawn = |id: &str| {
        let branch = format!("asdo/{id}");
        let r = asdo(
            &env,
            &spawn_args(id, &branch, &repo, "Add a file", &["--max-parallel", "1"]),
        );
        assert_eq!(r.code, 0, "{r:?}");
        store.task(id)
    };
    let t = spawn("T030");
    assert!(
        eventually(Duration::from_secs(120), || phase(&t) == Phase::Running),
        "{:?}",
        phase(&t)
    );
    // The agent is up and has started opencode (its marker is in the log).
    assert!(eventually(Duration::from_secs(120), || {
        std::fs::read_to_string(t.log())
            .unwrap_or_default()
            .contains("asdo: running opencode")
    }));
    let runner = t.state().unwrap().unwrap().runner.unwrap();
    assert_eq!(runner.boot_id, local::proc::boot_id());

    // The power goes: the runner and everything below it (bwrap, the agent, opencode)
    // end at once, none of them writing anything.
    let mut all = descendants(runner.pid);
    all.push(runner.pid);
    assert!(all.len() >= 3, "runner, sandbox, agent: {all:?}");
    for p in &all {
        unsafe {
            libc::kill(*p as i32, libc::SIGKILL);
        }
    }
    assert!(eventually(Duration::from_secs(60), || all
        .iter()
        .all(|p| !alive(*p as i32))));
    assert_eq!(
        t.state().unwrap().unwrap().exit_code,
        None,
        "nothing recorded"
    );

    // After the boot: a process of ours with the pid and start time the records name.
    let mut reused = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let now = local::proc::identify(reused.id()).unwrap();
    let record = |boot_id: &str| {
        let id = serde_json::json!({
            "pid": now.pid,
            "startTicks": now.start_ticks,
            "bootId": boot_id,
        });
        for file in [t.launch_file(), t.state_file()] {
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            v["runner"] = id.clone();
            std::fs::write(&file, v.to_string()).unwrap();
        }
    };
    let listed = |env: &[(String, String)]| {
        let r = asdo(env, &["list"]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout
            .lines()
            .find(|l| l.contains("agent-t030"))
            .expect("listed")
            .to_string()
    };
    // The control: with this boot's id, pid and start time alone would pass it for
    // the runner.
    record(&now.boot_id);
    assert!(listed(&env).contains("Running"), "{}", listed(&env));
    // As the reboot left it: written in the previous boot.
    record("00000000-0000-4000-8000-000000000000");
    let row = listed(&env);
    assert!(row.contains("Failed (lost)"), "{row}");
    let r = asdo(&env, &["status", "T030", "-o", "json"]);
    let o = json(&r);
    assert_eq!(o["status"], "Failed (lost)", "{o}");
    assert_eq!(o["reason"], "lost", "{o}");
    assert_eq!(o["exit_code"], serde_json::Value::Null, "{o}");
    let r = asdo(&env, &["wait", "T030"]);
    assert_eq!(r.code, 1, "{r:?}");
    let r = asdo(&env, &["logs", "T030"]);
    assert_eq!(r.code, 1, "a lost task's log ends with its failure: {r:?}");
    // No exit code was recorded: the ending says so, as the task object's null does.
    assert!(
        r.stderr
            .contains("==> task T030: Failed, no exit code (lost)"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("asdo: running opencode"),
        "the log is kept: {r:?}"
    );
    let _ = reused.kill();
    let _ = reused.wait();

    // Its slot (the only one at --max-parallel 1) is free: the next task runs.
    let next = spawn("T031");
    assert!(
        eventually(Duration::from_secs(120), || phase(&next) == Phase::Running),
        "{:?}",
        phase(&next)
    );
    // The lost task is removed like any ended one; the running one is cancelled.
    let r = asdo(&env, &["cleanup", "--all", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t030 deleted"), "{r:?}");
    assert!(
        r.stderr.contains("pod/agent-t031 cancelled (SIGTERM)"),
        "{r:?}"
    );
    wait_finished(&next, Duration::from_secs(120));
    let r = asdo(&env, &["cleanup"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t031 deleted"), "{r:?}");
}
