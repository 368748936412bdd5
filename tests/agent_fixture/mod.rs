//! What the agent tests need: a scratch directory with a bare repository as the
//! remote, a stand-in `opencode` on PATH, and git run without the host's config.
//! Shared by tests/agent.rs (the binary run directly) and tests/e2e/agent.rs
//! (the binary run by the fake kubelet).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const TASK: &str = "T001";
pub const BRANCH: &str = "specs/001-auth/T001-async";

/// A run of `asdo agent`.
pub struct AgentRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for AgentRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl AgentRun {
    pub fn from_output(out: Output) -> AgentRun {
        AgentRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// asdo's own lines (`asdo: …`), in order.
    pub fn markers(&self) -> Vec<&str> {
        markers(&self.stdout)
    }

    pub fn last_marker(&self) -> &str {
        self.markers().last().copied().unwrap_or("")
    }
}

/// Markers with the one part that changes between runs (the server's address) starred.
pub fn stable(markers: Vec<&str>) -> Vec<String> {
    markers
        .into_iter()
        .map(|m| match m.split_once(" on http://") {
            Some((head, _)) if m.starts_with("asdo: opencode session ") => {
                format!("{head} on http://*")
            }
            _ => m.to_string(),
        })
        .collect()
}

pub fn markers(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.starts_with("asdo: ")).collect()
}

/// A scratch tree: `home/` (HOME), `bin/` (stand-ins, first on PATH), `out/` (what
/// stand-ins record), `remote.git` (the bare remote) and `ws` (TASK_CONTEXT_PATH, absent).
pub struct Fixture {
    pub root: PathBuf,
    remote: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The real git, for stand-ins that wrap it.
pub fn real_git() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Fixture {
    /// With a remote whose `main` has one commit (README.md).
    pub fn new(tag: &str) -> Fixture {
        let f = Fixture::empty(tag);
        f.git(&["init", "--quiet", "--bare", "-b", "main", f.remote_str()]);
        let seed = f.root.join("seed");
        f.git(&["clone", "--quiet", f.remote_str(), seed.to_str().unwrap()]);
        std::fs::write(seed.join("README.md"), "# demo\n").unwrap();
        f.git_in(&seed, &["add", "README.md"]);
        f.git_in(&seed, &["commit", "--quiet", "-m", "initial"]);
        f.git_in(
            &seed,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
        f
    }

    /// With an empty remote (no commits at all).
    pub fn new_empty_remote(tag: &str) -> Fixture {
        let f = Fixture::empty(tag);
        f.git(&["init", "--quiet", "--bare", "-b", "main", f.remote_str()]);
        f
    }

    fn empty(tag: &str) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "asdo-agent-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["home", "bin", "out"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let remote = root.join("remote.git").display().to_string();
        Fixture { root, remote }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn remote(&self) -> PathBuf {
        self.root.join("remote.git")
    }

    pub fn remote_str(&self) -> &str {
        &self.remote
    }

    /// Every marker of a run that creates BRANCH from main and pushes `sha`, in order.
    pub fn new_branch_markers(&self, task: &str, sha: &str) -> Vec<String> {
        vec![
            format!(
                "asdo: starting task {task} (asdo {})",
                env!("CARGO_PKG_VERSION")
            ),
            format!("asdo: cloning {}", self.repo_url()),
            format!("asdo: creating branch {BRANCH} from main"),
            "asdo: running opencode".into(),
            "asdo: opencode session ses_standin on http://*".into(),
            "asdo: so far: files 0, tokens 10 in / 5 out".into(),
            "asdo: summary: files 0, tokens 10 in / 5 out".into(),
            "asdo: committing".into(),
            format!("asdo: pushing {BRANCH}"),
            format!("asdo: done {sha}"),
        ]
    }

    pub fn repo_url(&self) -> String {
        format!("file://{}", self.remote().display())
    }

    pub fn workspace(&self) -> PathBuf {
        self.root.join("ws")
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.root.join("out").join(name)
    }

    pub fn read_out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out(name)).unwrap_or_default()
    }

    /// PATH for the agent: stand-ins first, then the test's own PATH.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Env for git run by the test itself: no system or user config.
    pub fn git_env(&self) -> Vec<(String, String)> {
        [
            ("GIT_CONFIG_NOSYSTEM", "1".to_string()),
            ("HOME", self.root.join("home").display().to_string()),
            ("GIT_AUTHOR_NAME", "Test".into()),
            ("GIT_AUTHOR_EMAIL", "test@example.com".into()),
            ("GIT_COMMITTER_NAME", "Test".into()),
            ("GIT_COMMITTER_EMAIL", "test@example.com".into()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    /// git in the fixture root; panics on failure; returns stdout, trimmed.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.root, args)
    }

    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.try_git_in(dir, args);
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn try_git_in(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.git_env())
            .output()
            .unwrap()
    }

    /// git on the bare remote.
    pub fn remote_git(&self, args: &[&str]) -> String {
        let mut full = vec!["--git-dir", self.remote_str()];
        full.extend_from_slice(args);
        self.git(&full)
    }

    /// The commit a branch of the remote points at, if the branch exists.
    pub fn remote_branch(&self, branch: &str) -> Option<String> {
        let r = format!("refs/heads/{branch}^{{commit}}");
        let out = self.try_git_in(
            &self.root,
            &[
                "--git-dir",
                self.remote_str(),
                "rev-parse",
                "--verify",
                "--quiet",
                &r,
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    /// A file as committed on a branch of the remote.
    pub fn remote_file(&self, branch: &str, path: &str) -> String {
        self.remote_git(&["show", &format!("{branch}:{path}")])
    }

    /// Pushes a branch with one more file to the remote, as if an earlier run had.
    pub fn remote_add_branch(&self, branch: &str, file: &str, text: &str) -> String {
        let tmp = self.root.join("seed2");
        let _ = std::fs::remove_dir_all(&tmp);
        self.git(&["clone", "--quiet", self.remote_str(), tmp.to_str().unwrap()]);
        std::fs::write(tmp.join(file), text).unwrap();
        self.git_in(&tmp, &["add", file]);
        self.git_in(&tmp, &["commit", "--quiet", "-m", "earlier work"]);
        self.git_in(
            &tmp,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        self.remote_branch(branch).unwrap()
    }

    /// An executable script in `bin/`.
    pub fn stand_in(&self, name: &str, script: &str) {
        let p = self.root.join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A stand-in `opencode serve` (tests/agent_fixture/opencode_stand_in.py) that
    /// records its argv (one per line), env and cwd in out/, then runs `script` in the
    /// work tree when the prompt arrives (saved as out/prompt). The script failing is a
    /// `session.error` with its last stderr line. For the fast cases only.
    pub fn opencode(&self, script: &str) {
        let out = self.root.join("out");
        let task = self.root.join("bin").join("opencode-task.sh");
        std::fs::write(&task, format!("{script}\n")).unwrap();
        let py =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent_fixture/opencode_stand_in.py");
        self.stand_in(
            "opencode",
            &format!(
                "printf '%s\\n' \"$@\" > '{o}/argv'\nenv > '{o}/env'\npwd > '{o}/cwd'\n\
                 ASDO_STANDIN_OUT='{o}' ASDO_STANDIN_SCRIPT='{t}' exec python3 '{py}' \"$@\"",
                o = out.display(),
                t = task.display(),
                py = py.display()
            ),
        );
    }

    /// A remote hook (e.g. `pre-receive`).
    pub fn remote_hook(&self, name: &str, script: &str) {
        let p = self.remote().join("hooks").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The agent's environment: nothing from the host but what is set here.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        [
            ("PATH", self.path_var()),
            ("HOME", self.root.join("home").display().to_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            // Many agents run at once here: each server on a free port.
            ("ASDO_OPENCODE_PORT", "0".into()),
            ("TASK_ID", TASK.into()),
            ("GIT_REPO", self.repo_url()),
            ("GIT_BRANCH", BRANCH.into()),
            ("TASK_CONTEXT_PATH", self.workspace().display().to_string()),
            (
                "TASK_PROMPT",
                "Add a greeting file\n\nIt says hello.".into(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    /// `asdo agent [args]` with exactly `env`.
    pub fn agent_cmd(&self, env: &[(String, String)], args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_asdo"));
        c.arg("agent")
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn run_agent(&self, env: &[(String, String)]) -> AgentRun {
        wait_for(
            self.agent_cmd(env, &[]).spawn().unwrap(),
            Duration::from_secs(60),
        )
    }
}

/// Collects a child's output; kills it and fails the test if it outlives `limit`.
pub fn wait_for(child: Child, limit: Duration) -> AgentRun {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => AgentRun::from_output(out.unwrap()),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("command did not finish within {limit:?}");
        }
    }
}

/// Polls `f` until true or the deadline; for states reached asynchronously.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Whether a process still runs (a zombie waiting to be reaped does not count).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// The pinned OpenCode CLI these tests run for real.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// The real `opencode`: `ASDO_TEST_OPENCODE`, else the copy `.ci/run` installs in
/// `.ci/cache/opencode`. Missing, the test fails and says how to install it: a test that
/// needs the real CLI must not pass without it.
pub fn opencode_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ASDO_TEST_OPENCODE") {
        return PathBuf::from(p);
    }
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/opencode/node_modules/.bin/opencode");
    assert!(
        p.exists(),
        "the real opencode CLI is not installed: run `npm install --prefix .ci/cache/opencode opencode-ai@{OPENCODE_VERSION}` \
         (as .ci/run does), or point ASDO_TEST_OPENCODE at an opencode {OPENCODE_VERSION} binary"
    );
    p
}

/// The directory holding the real `opencode`, for PATH.
pub fn opencode_dir() -> PathBuf {
    opencode_bin().parent().unwrap().to_path_buf()
}
