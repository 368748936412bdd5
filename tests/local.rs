//! The local runtime without any cluster or fake API server: tasks spawned through
//! `asdo::runtime::local` run the built `asdo` (its hidden `local-runner`, then `asdo
//! agent` in bubblewrap) against local bare repositories; the real opencode 1.18.33 and
//! the scripted model server where a model is needed, a stand-in `opencode` where only
//! the process matters (lost, queued). Its own test binary, beside tests/agent.rs whose
//! fixture it shares: nothing here needs the fake API server the e2e binary starts.

mod agent_fixture;
#[path = "support/model_server/mod.rs"]
mod model_server;
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

/// The runner's environment: the user's PATH (opencode first), the fake HOME, and the
/// model configuration as a user would export it.
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
    let path = format!(
        "{}:{}",
        opencode_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let env = runner_env(
        &l,
        &path,
        &[
            ("OPENCODE_CONFIG_CONTENT", &model.opencode_config()),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ],
    );
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
    let mut cli = runner_env(&l, &f.path_var(), &[]);
    cli.push((
        "ASDO_STATE_DIR".into(),
        l.store().root.display().to_string(),
    ));
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
    let mut cli = env.clone();
    cli.push((
        "ASDO_STATE_DIR".into(),
        l.store().root.display().to_string(),
    ));
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
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asdo"));
    c.current_dir(dir);
    c.arg("--runtime")
        .arg("local")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
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
    let path = format!(
        "{}:{}",
        opencode_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let mut env = runner_env(
        &l,
        &path,
        &[
            ("OPENCODE_CONFIG_CONTENT", &model.opencode_config()),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ],
    );
    env.push((
        "ASDO_STATE_DIR".into(),
        l.store().root.display().to_string(),
    ));
    let repo = f.repo_url();
    let spawn = [
        "spawn",
        "--task-id",
        "T010",
        "--branch",
        BRANCH,
        "--repo",
        &repo,
        "--prompt",
        "Add a greeting file",
        "--model",
        "stub/stub-model",
    ];
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
