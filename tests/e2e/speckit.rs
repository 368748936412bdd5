//! The spec-kit hand-off end to end: a shell driver doing what spec-kit's implement.sh
//! does (tests/speckit/implement-async.sh: `scripts/spawn-pod.sh` per [ASYNC] task under
//! `set -euo pipefail`, run twice), then `asdo wait --report-dir`, then a reader with
//! check_delegation_status's logic (tests/speckit/delegation-status.sh), for both marker
//! layouts; and stuck pods, against the fake API server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const CONFIG_MAP: &str = "agentic-sdlc-orchestrator-dev-config";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/speckit")
        .join(name)
}

/// Which spec-kit a test project imitates: what its tasks-meta-utils.sh says decides
/// where asdo writes (a two-line stub naming the directory it reads, not spec-kit code).
#[derive(Clone, Copy)]
enum Version {
    /// 4dac8320 .. baea750e: `delegation_*` relative to the repository root.
    Hook,
    /// d50d5635 on: `$FEATURE_DIR/.async_state/delegation_*`.
    AsyncState,
}

struct Project {
    root: PathBuf,
    feature: PathBuf,
}

impl Project {
    fn new(dir: &Path, version: Version) -> Project {
        let root = dir.join("app");
        let feature = root.join("specs/001-auth");
        std::fs::create_dir_all(&feature).unwrap();
        std::fs::write(
            feature.join("tasks.md"),
            "# Tasks\n- [ ] T001 [ASYNC] login form\n- [ ] T002 [ASYNC] session store\n",
        )
        .unwrap();
        let git = |args: &[&str]| {
            let s = Command::new("git")
                .args(args)
                .current_dir(&root)
                .status()
                .unwrap();
            assert!(s.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["remote", "add", "origin", REPO]);
        let utils = root.join(".specify/scripts/bash/tasks-meta-utils.sh");
        std::fs::create_dir_all(utils.parent().unwrap()).unwrap();
        let stub = match version {
            Version::Hook => {
                "check_delegation_status() { test -f \"delegation_prompts/$1.md\"; }\n"
            }
            Version::AsyncState => {
                "check_delegation_status() { test -f \"$2/.async_state/delegation_prompts/$1.md\"; }\n"
            }
        };
        std::fs::write(&utils, stub).unwrap();
        // spec-kit looks for ./scripts/spawn-pod.sh; the link is all the install there is.
        std::fs::create_dir_all(root.join("scripts")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_asdo"),
            root.join("scripts/spawn-pod.sh"),
        )
        .unwrap();
        Project { root, feature }
    }

    fn report_dir(&self, version: Version) -> PathBuf {
        match version {
            Version::Hook => self.root.clone(),
            Version::AsyncState => self.feature.join(".async_state"),
        }
    }

    /// A command run from the repository root, as spec-kit runs its scripts.
    fn cmd(&self, env: &Env, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).current_dir(&self.root);
        isolate(&mut c);
        c.env("KUBECONFIG", &env.kubeconfig);
        c
    }

    fn implement(&self, env: &Env, tasks: &[&str]) -> Run {
        let mut args = vec![path_str(&self.feature)];
        args.extend_from_slice(tasks);
        let c = self.cmd(env, &script("implement-async.sh"), &args);
        run_with_timeout(c, Duration::from_secs(60))
    }

    fn status(&self, env: &Env, dir: &Path, task: &str) -> String {
        let c = self.cmd(env, &script("delegation-status.sh"), &[path_str(dir), task]);
        let r = run_with_timeout(c, Duration::from_secs(10));
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_string()
    }
}

/// Task pods run a script that waits for `gate`, then T001 succeeds and T002 fails, each
/// saying so in the agent's marker lines (a stand-in for `asdo agent` in the fake kubelet).
fn cluster_values(env: &Env, gate: &Path) {
    let script = format!(
        "while [ ! -e {gate} ]; do sleep 0.05; done; \
         if [ \"$TASK_ID\" = T001 ]; then echo 'asdo: done 0123abcd'; exit 0; fi; \
         echo 'asdo: failed agent: opencode exited 1'; exit 12",
        gate = gate.display()
    );
    let values = format!("pod:\n  command: [\"sh\", \"-c\", {}]\n", json!(script));
    env.server
        .put_configmap(NS, CONFIG_MAP, &[("values.yaml", values.as_str())]);
}

fn implement_rerun_wait_and_read(version: Version) {
    let env = Env::new();
    let project = Project::new(&env.dir.0, version);
    let dir = project.report_dir(version);
    let gate = env.dir.0.join("gate");
    cluster_values(&env, &gate);

    // First /implement: both pods created, both recorded for spec-kit.
    let r = project.implement(&env, &["T001", "T002"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("pod/agent-t001 created") && r.stdout.contains("pod/agent-t002 created"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(&format!(
            "asdo wait T001 -n {NS} --report-dir {}",
            dir.display()
        )),
        "the hint names the directory spec-kit reads: {r:?}"
    );
    let uids: Vec<_> = ["agent-t001", "agent-t002"]
        .map(|p| env.server.pod(NS, p).unwrap().metadata.uid)
        .into();
    for id in ["T001", "T002"] {
        let text = std::fs::read_to_string(dir.join(format!("delegation_prompts/{id}.md")))
            .unwrap_or_else(|e| panic!("{id}: {e} in {}", dir.display()));
        let lower = id.to_lowercase();
        for want in [
            format!("- task: {id}"),
            format!("- pod: agent-{lower}"),
            format!("- branch: specs/001-auth/{id}-async"),
            format!("- repo: {REPO}"),
            "- spec_dir: specs/001-auth".to_string(),
            format!("- namespace: {NS}"),
            "## Prompt".to_string(),
        ] {
            assert!(text.contains(&want), "{want:?} in {text}");
        }
        assert_eq!(project.status(&env, &dir, id), "running");
    }
    // Nothing in the other layout's place.
    let other = match version {
        Version::Hook => project.feature.join(".async_state"),
        Version::AsyncState => project.root.join("delegation_prompts"),
    };
    assert!(!other.exists(), "{} must not exist", other.display());

    // Re-run /implement while they run: nothing changes, the script goes on (exit 0).
    let r = project.implement(&env, &["T001", "T002"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("pod/agent-t001 unchanged\nK8s pod spawned for task T001")
            && r.stdout
                .contains("pod/agent-t002 unchanged\nK8s pod spawned for task T002"),
        "{r:?}"
    );
    let again: Vec<_> = ["agent-t001", "agent-t002"]
        .map(|p| env.server.pod(NS, p).unwrap().metadata.uid)
        .into();
    assert_eq!(uids, again, "no pod was replaced");

    // The same id for another feature's branch stops the script, naming both branches.
    let c = project.cmd(
        &env,
        &project.root.join("scripts/spawn-pod.sh"),
        &[
            "--task-id",
            "T001",
            "--branch",
            "specs/002-billing/T001-async",
            "--repo",
            REPO,
        ],
    );
    let r = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("specs/002-billing/T001-async")
            && r.stderr.contains("specs/001-auth/T001-async"),
        "{r:?}"
    );

    // The tasks end; wait writes what spec-kit reads.
    std::fs::write(&gate, "").unwrap();
    let r = env.asdo(&[
        "wait",
        "T001",
        "T002",
        "--timeout",
        "60s",
        "--report-dir",
        path_str(&dir),
    ]);
    assert_eq!(r.code, 1, "one task failed: {r:?}");
    assert!(r.stdout.contains("T001 Succeeded exit=0"), "{r:?}");
    assert!(r.stdout.contains("T002 Failed exit=12"), "{r:?}");
    assert_eq!(project.status(&env, &dir, "T001"), "completed");
    assert_eq!(project.status(&env, &dir, "T002"), "failed");
    let done = std::fs::read_to_string(dir.join("delegation_completed/T001.txt")).unwrap();
    assert!(done.contains("commit: 0123abcd"), "{done}");
    let failed = std::fs::read_to_string(dir.join("delegation_errors/T002.txt")).unwrap();
    assert!(
        failed.contains("failed_step: agent") && failed.contains("exit_code: 12"),
        "{failed}"
    );

    // A third /implement after a failure: the failed task is not silently "unchanged".
    let r = project.implement(&env, &["T001", "T002"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t001 unchanged"), "{r:?}");
    assert!(
        r.stderr.contains("failed (exit 12)") && r.stderr.contains("ASDO_IF_EXISTS=replace"),
        "{r:?}"
    );
    // ... and the retry spec-kit users can ask for replaces it, retiring the old verdict.
    let mut c = project.cmd(
        &env,
        &project.root.join("scripts/spawn-pod.sh"),
        &[
            "--task-id",
            "T002",
            "--branch",
            "specs/001-auth/T002-async",
            "--repo",
            REPO,
            "--context-dir",
            path_str(&project.feature),
        ],
    );
    c.env("ASDO_IF_EXISTS", "replace");
    let r = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t002 created\n");
    assert_eq!(project.status(&env, &dir, "T002"), "running");
}

#[test]
fn implement_sh_hand_off_with_repo_root_markers() {
    implement_rerun_wait_and_read(Version::Hook);
}

#[test]
fn implement_sh_hand_off_with_async_state_markers() {
    implement_rerun_wait_and_read(Version::AsyncState);
}

#[test]
fn a_stuck_pod_is_named_in_wait_and_can_be_replaced() {
    let env = Env::new();
    let base = [
        "spawn",
        "--task-id",
        "T009",
        "--branch",
        "specs/001-auth/T009-async",
        "--repo",
        REPO,
    ];
    // The git token Secret does not exist: the kubelet reports CreateContainerConfigError.
    let stuck = [
        "--set",
        "pod.gitTokenSecret.enabled=true",
        "--set",
        "pod.gitTokenSecret.name=no-such-secret",
    ];
    let args: Vec<&str> = base.iter().chain(&stuck).copied().collect();
    let r = env.asdo(&args);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(eventually(Duration::from_secs(20), || {
        env.kubectl_pod("agent-t009")["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    }));

    let reports = env.dir.0.join("reports");
    let r = env.asdo(&[
        "wait",
        "T009",
        "--timeout",
        "2s",
        "--report-dir",
        path_str(&reports),
    ]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(
        r.stdout
            .contains("T009 TimedOut(Pending: CreateContainerConfigError: "),
        "the waiting reason, not just Pending: {r:?}"
    );
    assert!(r.stdout.contains("no-such-secret"), "{r:?}");
    let marker = std::fs::read_to_string(reports.join("delegation_errors/T009.txt")).unwrap();
    assert!(
        marker.contains("still Pending: CreateContainerConfigError: "),
        "{marker}"
    );
    // wait records the task for spec-kit when spawn did not (no feature directory here).
    let c = {
        let mut c = Command::new(script("delegation-status.sh"));
        c.args([path_str(&reports), "T009"]);
        c
    };
    let s = run_with_timeout(c, Duration::from_secs(10));
    assert_eq!(s.stdout, "failed\n", "{s:?}");

    // Skipping it would hide that it cannot start: refused, with the reason and the real id.
    let mut again: Vec<&str> = args.clone();
    again.extend(["--if-exists", "skip"]);
    let r = env.asdo(&again);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("cannot start (CreateContainerConfigError"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("<id>"), "{r:?}");

    // --replace swaps a pod that cannot start (it did no work), here for a fixed one.
    let old = env.server.pod(NS, "agent-t009").unwrap().metadata.uid;
    let mut fixed: Vec<&str> = base.to_vec();
    fixed.push("--replace");
    let r = env.asdo(&fixed);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t009 created\n");
    assert_ne!(env.server.pod(NS, "agent-t009").unwrap().metadata.uid, old);
}

#[test]
fn spawn_refuses_an_unwritable_report_dir_before_any_call() {
    let env = Env::new();
    let file = env.write("not-a-dir", "x");
    env.server.clear_requests();
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "T010",
        "--branch",
        "specs/001-auth/T010-async",
        "--repo",
        REPO,
        "--report-dir",
        path_str(&file),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--report-dir"), "{r:?}");
    assert_eq!(env.server.requests().len(), 0, "no API call");
}
