//! `asdo diff` and `asdo apply` in a real clone, against task branches on a local bare
//! repository; the task pods (run by the fake kubelet) print the agent's markers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Env, Run, TempDir, path_str, run_with_timeout};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare origin with `README.md` on main, and a clone of it for the user.
struct Repos {
    _dir: TempDir,
    origin: String,
    scratch: std::path::PathBuf,
    user: std::path::PathBuf,
}

impl Repos {
    fn new() -> Repos {
        let dir = TempDir::new("results");
        let bare = dir.0.join("origin.git");
        git(&dir.0, &["init", "-q", "--bare", path_str(&bare)]);
        let scratch = dir.0.join("scratch");
        git(
            &dir.0,
            &["clone", "-q", path_str(&bare), path_str(&scratch)],
        );
        std::fs::write(scratch.join("README.md"), "one\n").unwrap();
        git(&scratch, &["add", "."]);
        git(&scratch, &["commit", "-qm", "init"]);
        git(&scratch, &["push", "-q", "origin", "HEAD:main"]);
        let user = dir.0.join("user");
        git(&dir.0, &["clone", "-q", path_str(&bare), path_str(&user)]);
        Repos {
            origin: format!("file://{}", bare.display()),
            scratch,
            user,
            _dir: dir,
        }
    }

    /// Push a task branch from main writing `file` = `text`, as the agent would; its sha.
    fn push_task(&self, branch: &str, file: &str, text: &str) -> String {
        git(
            &self.scratch,
            &["checkout", "-q", "-B", branch, "origin/main"],
        );
        std::fs::write(self.scratch.join(file), text).unwrap();
        git(&self.scratch, &["add", "."]);
        git(
            &self.scratch,
            &["commit", "-qm", &format!("task writes {file}")],
        );
        git(
            &self.scratch,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
        git(&self.scratch, &["rev-parse", "HEAD"])
    }
}

fn branch(id: &str) -> String {
    format!("specs/001-auth/{id}-async")
}

/// A task pod on `repos`' origin whose process prints `script`'s output and exits.
fn spawn(env: &Env, repos: &Repos, id: &str, script: &str) {
    let values = env.script_values(script);
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        id,
        "--branch",
        &branch(id),
        "--repo",
        &repos.origin,
        "-f",
        path_str(&values),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
}

fn done_task(env: &Env, repos: &Repos, id: &str, file: &str, text: &str) -> String {
    let sha = repos.push_task(&branch(id), file, text);
    spawn(env, repos, id, &format!("echo 'asdo: done {sha}'"));
    sha
}

fn asdo_in(env: &Env, dir: &Path, args: &[&str]) -> Run {
    let mut c = env.cmd(args);
    c.current_dir(dir);
    run_with_timeout(c, Duration::from_secs(60))
}

#[test]
fn diff_shows_the_task_commit_against_its_base() {
    let env = Env::new();
    let repos = Repos::new();
    let sha = done_task(&env, &repos, "T001", "login.rs", "fn login() {}\n");
    assert_eq!(env.asdo(&["wait", "T001"]).code, 0);
    // Someone pushes to the task branch after the task: the diff is still the task's own.
    git(&repos.scratch, &["checkout", "-q", &branch("T001")]);
    std::fs::write(repos.scratch.join("later.txt"), "x\n").unwrap();
    git(&repos.scratch, &["add", "."]);
    git(&repos.scratch, &["commit", "-qm", "later"]);
    git(&repos.scratch, &["push", "-q", "origin", "HEAD"]);

    let r = asdo_in(&env, &repos.user, &["diff", "T001"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("+fn login() {}"), "{r:?}");
    assert!(!r.stdout.contains("later.txt"), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("moved past the task's commit {sha}")),
        "{r:?}"
    );

    let r = asdo_in(&env, &repos.user, &["diff", "T001", "--stat"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("login.rs") && r.stdout.contains("1 file changed"),
        "{r:?}"
    );
    // Only asdo's own refs were written in the user's clone.
    let refs = git(&repos.user, &["for-each-ref", "--format=%(refname)"]);
    assert!(refs.contains("refs/asdo/tasks/T001"), "{refs}");
    assert_eq!(
        git(&repos.user, &["branch", "--format=%(refname:short)"]),
        "main"
    );
}

#[test]
fn diff_of_a_cleaned_up_task_needs_no_cluster() {
    let env = Env::new();
    let repos = Repos::new();
    repos.push_task(&branch("T009"), "x.txt", "x\n");
    let before = env.server.requests().len();
    let r = asdo_in(
        &env,
        &repos.user,
        &[
            "diff",
            "T009",
            "--stat",
            "--repo",
            &repos.origin,
            "--branch",
            &branch("T009"),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("x.txt"), "{r:?}");
    assert_eq!(env.server.requests().len(), before, "no API call");
    // A branch that was never pushed: one line saying so.
    let r = asdo_in(
        &env,
        &repos.user,
        &[
            "diff",
            "T010",
            "--repo",
            &repos.origin,
            "--branch",
            &branch("T010"),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is not on") && r.stderr.lines().count() == 1,
        "{r:?}"
    );
    // Hostile branch input never reaches git as an option.
    let r = asdo_in(
        &env,
        &repos.user,
        &[
            "diff",
            "T010",
            "--repo",
            &repos.origin,
            "--branch",
            "--upload-pack=x",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn apply_merges_in_order_and_stops_at_the_first_conflict() {
    let env = Env::new();
    let repos = Repos::new();
    done_task(&env, &repos, "T001", "a.txt", "a\n");
    done_task(&env, &repos, "T002", "README.md", "two\n");
    done_task(&env, &repos, "T003", "README.md", "three\n");
    spawn(&env, &repos, "T004", "echo 'asdo: done no-changes'");
    assert_eq!(env.asdo(&["wait", "T001", "T002", "T003", "T004"]).code, 0);

    let r = asdo_in(
        &env,
        &repos.user,
        &["apply", "T004", "T001", "T002", "T003"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("T004 no changes, skipped"), "{r:?}");
    assert!(
        r.stdout.contains("T001 merged") && r.stdout.contains("T002 merged"),
        "{r:?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains("task T003 conflicted in README.md"),
        "{r:?}"
    );
    // git's state is as git leaves it: a merge in progress, T001 and T002 in history.
    assert!(repos.user.join(".git/MERGE_HEAD").exists());
    let log = git(&repos.user, &["log", "--format=%s", "HEAD"]);
    assert!(
        log.contains("Merge task T001") && log.contains("Merge task T002"),
        "{log}"
    );
    assert!(!log.contains("Merge task T003"), "{log}");

    // A second apply refuses to start on top of the unfinished merge.
    let r = asdo_in(&env, &repos.user, &["apply", "T001"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("merge is already in progress"), "{r:?}");
}

#[test]
fn apply_checks_every_task_before_merging_any() {
    let env = Env::new();
    let repos = Repos::new();
    done_task(&env, &repos, "T001", "a.txt", "a\n");
    spawn(
        &env,
        &repos,
        "T002",
        "echo 'asdo: failed agent: model error'; exit 12",
    );
    spawn(&env, &repos, "T003", "sleep 60");
    assert_eq!(env.asdo(&["wait", "T001"]).code, 0);
    let _ = env.asdo(&["wait", "T002"]);
    let head = git(&repos.user, &["rev-parse", "HEAD"]);

    let r = asdo_in(&env, &repos.user, &["apply", "T001", "T002"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("task T002 failed") && r.stderr.contains("nothing was merged"),
        "{r:?}"
    );
    let r = asdo_in(&env, &repos.user, &["apply", "T001", "T003"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("task T003 is Running") || r.stderr.contains("task T003 is Pending"),
        "{r:?}"
    );
    assert_eq!(
        git(&repos.user, &["rev-parse", "HEAD"]),
        head,
        "nothing merged"
    );

    // Uncommitted changes: refused before any cluster call.
    std::fs::write(repos.user.join("README.md"), "dirty\n").unwrap();
    let r = asdo_in(&env, &repos.user, &["apply", "T001"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("uncommitted changes"), "{r:?}");
    let _ = env.asdo(&["cleanup", "--all", "--force"]);
}

/// `--base` and task-list branch templates, as the rendered pods carry them.
#[test]
fn base_and_branch_templates_reach_the_pod() {
    let env = Env::new();
    let pods = |r: &Run| -> Vec<serde_json::Value> {
        // Several pods print as JSON documents separated by `---`, like kubectl's YAML lists.
        r.stdout
            .split("\n---\n")
            .map(|doc| serde_json::from_str(doc).unwrap())
            .collect()
    };
    let env_of = |p: &serde_json::Value, k: &str| {
        p["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == k)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    let r = env.asdo(&[
        "spawn",
        "--dry-run",
        "-o",
        "json",
        "--task-id",
        "T001",
        "--branch",
        &branch("T001"),
        "--repo",
        "git@github.com:org/app.git",
        "--base",
        "release/1.2",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let p = &pods(&r)[0];
    assert_eq!(env_of(p, "GIT_BASE").as_deref(), Some("release/1.2"));
    assert_eq!(
        p["metadata"]["annotations"]["agentic-sdlc/base"],
        "release/1.2"
    );

    let list = env.write(
        "list.yaml",
        "repo: git@github.com:org/app.git\nbranch: \"specs/{feature}/{id}-async\"\nfeature: 001-auth\nbase: release/1.2\ntasks:\n  - {id: T001}\n  - {id: T002, branch: own/branch, base: v2}\n  - {id: T003, contextDir: specs/002-billing}\n",
    );
    let r = env.asdo(&["spawn", "--dry-run", "-o", "json", "-f", path_str(&list)]);
    assert_eq!(r.code, 0, "{r:?}");
    let ps = pods(&r);
    let got: Vec<(Option<String>, Option<String>)> = ps
        .iter()
        .map(|p| (env_of(p, "GIT_BRANCH"), env_of(p, "GIT_BASE")))
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got,
        [
            (s("specs/001-auth/T001-async"), s("release/1.2")),
            (s("own/branch"), s("v2")),
            // `feature:` wins over the spec dir's name.
            (s("specs/001-auth/T003-async"), s("release/1.2")),
        ]
    );
    // Without `feature:`, {feature} is the spec dir's last part; unknown placeholders and
    // bad bases are refused before any call.
    let list = env.write(
        "list2.yaml",
        "repo: git@github.com:org/app.git\nbranch: \"specs/{feature}/{id}-async\"\ntasks:\n  - {id: T004, contextDir: specs/002-billing}\n",
    );
    let r = env.asdo(&["spawn", "--dry-run", "-o", "json", "-f", path_str(&list)]);
    assert_eq!(
        env_of(&pods(&r)[0], "GIT_BRANCH").as_deref(),
        Some("specs/002-billing/T004-async"),
        "{r:?}"
    );
    let before = env.server.requests().len();
    for (name, text) in [
        (
            "bad1.yaml",
            "repo: git@github.com:o/r.git\nbranch: \"x/{nope}\"\ntasks:\n  - {id: T005}\n",
        ),
        (
            "bad2.yaml",
            "repo: git@github.com:o/r.git\nbranch: \"x/{feature}\"\ntasks:\n  - {id: T005}\n",
        ),
        (
            "bad3.yaml",
            "repo: git@github.com:o/r.git\ntasks:\n  - {id: T005}\n",
        ),
        (
            "bad4.yaml",
            "repo: git@github.com:o/r.git\nbase: \"a..b\"\ntasks:\n  - {id: T005, branch: b}\n",
        ),
    ] {
        let f = env.write(name, text);
        let r = env.asdo(&["spawn", "-f", path_str(&f)]);
        assert_eq!(r.code, 2, "{name}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{name}: {r:?}");
    }
    assert_eq!(env.server.requests().len(), before, "nothing sent");
}
