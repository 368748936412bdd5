//! The real agent in a pod: `asdo spawn` creates a task pod whose command is the
//! built `asdo agent`; the fake kubelet runs it as a local process against a local
//! bare repository with a stand-in opencode; `asdo logs`/`wait` read the outcome
//! back through the API server, and git reads what reached the remote.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::agent_fixture::{BRANCH, Fixture, markers, stable};
use crate::common::*;

/// Values that make the task pod run this build's agent in the fixture:
/// stand-ins first on PATH, a scratch HOME, the fixture's work tree as contextDir.
fn values(env: &Env, f: &Fixture, extra_env: &[(&str, &str)]) -> PathBuf {
    let mut pod_env = vec![
        json!({"name": "HOME", "value": f.path("home")}),
        json!({"name": "PATH", "value": f.path_var()}),
        json!({"name": "GIT_CONFIG_NOSYSTEM", "value": "1"}),
        // The fake kubelet's grace period after SIGTERM is 2 s; stop children well within it.
        json!({"name": "ASDO_KILL_GRACE", "value": "1"}),
        // Pods here are processes on one host: each opencode server on a free port.
        json!({"name": "ASDO_OPENCODE_PORT", "value": "0"}),
    ];
    pod_env.extend(
        extra_env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v})),
    );
    let v = json!({
        "pod": {"command": [env!("CARGO_BIN_EXE_asdo"), "agent"], "env": pod_env},
        "task": {"contextDir": f.workspace()},
    });
    // JSON is YAML.
    env.write(
        &format!(
            "agent-values-{}.yaml",
            f.root.file_name().unwrap().to_string_lossy()
        ),
        &v.to_string(),
    )
}

/// `asdo spawn` of task `id` on the fixture's remote; panics unless asdo exits 0.
fn spawn(env: &Env, f: &Fixture, id: &str, repo: &str, extra: &[&str]) {
    let values = values(env, f, &[]);
    let mut args = vec![
        "spawn",
        "--task-id",
        id,
        "--branch",
        BRANCH,
        "--repo",
        repo,
        "--prompt",
        "Add a greeting file",
        "-f",
        path_str(&values),
    ];
    args.extend_from_slice(extra);
    let r = env.asdo(&args);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn agent_pod_pushes_the_branch_and_wait_reports_the_commit() {
    let env = Env::new();
    let f = Fixture::new("e2e-ok");
    f.opencode("echo 'opencode: writing hello.txt'; printf 'hello\\n' > hello.txt");
    spawn(&env, &f, "T101", &f.repo_url(), &[]);

    let logs = env.asdo(&["logs", "T101"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    let sha = f.remote_branch(BRANCH).expect("branch pushed");
    assert_eq!(
        stable(markers(&logs.stdout)),
        f.new_branch_markers("T101", &sha)
    );
    assert!(
        logs.stdout.contains("opencode: writing hello.txt\n"),
        "{logs:?}"
    );
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");
    assert_eq!(
        f.remote_git(&["log", "-1", "--format=%s", &sha]),
        "feat(T101): Add a greeting file"
    );

    let wait = env.asdo(&["wait", "T101", "--timeout", "60s"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    assert!(wait.stdout.contains("T101 Succeeded exit=0"), "{wait:?}");
    assert!(wait.stdout.contains(&format!("commit={sha}")), "{wait:?}");

    // The pod env reached the agent as rendered: task identity, and the password for opencode only.
    let opencode_env = f.read_out("env");
    assert!(opencode_env.contains("TASK_ID=T101\n"), "{opencode_env}");
    assert!(opencode_env.contains("OPENCODE_DISABLE_AUTOUPDATE=1\n"));
    for out in [&logs.stdout, &logs.stderr, &wait.stdout, &wait.stderr] {
        assert!(!out.contains(PASSWORD));
    }
}

/// A pod that changed nothing failed (exit 16): wait says so, and spec-kit's report is an
/// error, not a completion. With --allow-no-changes (a review task) it succeeds.
#[test]
fn agent_pod_with_nothing_to_change_fails_unless_allowed() {
    let env = Env::new();
    let f = Fixture::new("e2e-nochange-fails");
    f.opencode("echo 'nothing to do'");
    spawn(&env, &f, "T106", &f.repo_url(), &[]);
    let report = env.dir.0.join("report");
    let wait = env.asdo(&[
        "wait",
        "T106",
        "--timeout",
        "60s",
        "--report-dir",
        report.to_str().unwrap(),
    ]);
    assert_eq!(wait.code, 1, "{wait:?}");
    assert!(wait.stdout.contains("T106 Failed exit=16"), "{wait:?}");
    assert!(
        wait.stdout
            .contains("failed-step=no-changes reason=\"\\\"stand-in finished\\\"\""),
        "{wait:?}"
    );
    assert!(report.join("delegation_errors/T106.txt").exists());
    assert!(!report.join("delegation_completed/T106.txt").exists());
    assert_eq!(f.remote_branch(BRANCH), None);

    let f = Fixture::new("e2e-nochange");
    f.opencode("echo 'nothing to do'");
    spawn(&env, &f, "T102", &f.repo_url(), &["--allow-no-changes"]);
    let wait = env.asdo(&["wait", "T102", "--timeout", "60s"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    assert!(wait.stdout.contains("commit=none (no changes)"), "{wait:?}");
    let logs = env.asdo(&["logs", "T102"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert_eq!(
        markers(&logs.stdout).last().unwrap(),
        &"asdo: done no-changes"
    );
    assert_eq!(f.remote_branch(BRANCH), None);
}

#[test]
fn agent_pod_failures_carry_their_step_and_exit_code() {
    let env = Env::new();

    // opencode fails: 12, step agent.
    let f = Fixture::new("e2e-agent-fails");
    f.opencode("echo partial > partial.txt; echo 'model error' >&2; exit 1");
    spawn(&env, &f, "T103", &f.repo_url(), &[]);
    let logs = env.asdo(&["logs", "T103"]);
    assert_eq!(logs.code, 12, "{logs:?}");
    assert!(
        markers(&logs.stdout)
            .last()
            .unwrap()
            .starts_with("asdo: failed agent: model error; partial work pushed "),
        "{logs:?}"
    );
    assert!(
        logs.stdout.contains("model error"),
        "stderr is in the pod log too: {logs:?}"
    );
    let wait = env.asdo(&["wait", "T103", "--timeout", "60s"]);
    assert_eq!(wait.code, 1, "{wait:?}");
    assert!(wait.stdout.contains("T103 Failed exit=12"), "{wait:?}");
    assert!(wait.stdout.contains("failed-step=agent"), "{wait:?}");
    // What it had written is kept as work in progress, and wait says where.
    let sha = f.remote_branch(BRANCH).expect("partial work pushed");
    assert!(
        wait.stdout.contains(&format!("partial work pushed {sha}")),
        "{wait:?}"
    );

    // The remote refuses the push: 14, step push.
    let f = Fixture::new("e2e-push-rejected");
    f.remote_hook("pre-receive", "echo 'branch protected' >&2; exit 1");
    f.opencode("echo x > x.txt");
    spawn(&env, &f, "T104", &f.repo_url(), &[]);
    let logs = env.asdo(&["logs", "T104"]);
    assert_eq!(logs.code, 14, "{logs:?}");
    let last = *markers(&logs.stdout).last().unwrap();
    assert!(
        last.starts_with("asdo: failed push: git push exited 1: "),
        "{logs:?}"
    );
    assert!(last.contains("pre-receive hook declined"), "{logs:?}");
    let wait = env.asdo(&["wait", "T104", "--timeout", "60s"]);
    assert!(wait.stdout.contains("failed-step=push"), "{wait:?}");
    assert_eq!(f.remote_branch(BRANCH), None);

    // The repository does not exist: 11, step clone; opencode never runs.
    let f = Fixture::new("e2e-no-repo");
    f.opencode("touch ran");
    let missing = format!("file://{}/missing.git", f.root.display());
    spawn(&env, &f, "T105", &missing, &[]);
    let logs = env.asdo(&["logs", "T105"]);
    assert_eq!(logs.code, 11, "{logs:?}");
    let last = *markers(&logs.stdout).last().unwrap();
    assert!(
        last.starts_with("asdo: failed clone: git clone exited 128: fatal:"),
        "{logs:?}"
    );
    assert!(f.read_out("argv").is_empty());
    let wait = env.asdo(&["wait", "T105", "--timeout", "60s"]);
    assert!(wait.stdout.contains("failed-step=clone"), "{wait:?}");
}

/// activeDeadlineSeconds: the kubelet sends SIGTERM to the agent, which stops opencode,
/// says why, and exits 143 within the grace period.
#[test]
fn agent_pod_past_its_deadline_reports_sigterm() {
    let env = Env::new();
    let f = Fixture::new("e2e-deadline");
    f.opencode("echo started; sleep 120");
    spawn(
        &env,
        &f,
        "T106",
        &f.repo_url(),
        // Into the session even on a loaded machine: with 3 s (and once with 10 s) the
        // deadline landed under a CPU hog before the stand-in's session began (step
        // `agent`, not `timeout`). Still a timing bound, not an event: see the report.
        &["--set", "pod.activeDeadlineSeconds=20"],
    );
    let logs = env.asdo(&["logs", "T106"]);
    assert_eq!(logs.code, 143, "{logs:?}");
    assert!(logs.stdout.contains("started\n"), "{logs:?}");
    assert_eq!(
        markers(&logs.stdout).last().unwrap(),
        &"asdo: failed timeout: terminated by SIGTERM; no changes to push"
    );
    let pod = env.kubectl_pod("agent-t106");
    assert_eq!(pod["status"]["reason"], "DeadlineExceeded", "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 143,
        "{pod}"
    );
    assert_eq!(f.remote_branch(BRANCH), None);
}

/// The real opencode (1.18.33) in a task pod run by the fake kubelet, against the
/// scripted model server: the outcome, the step lines and the totals read back with
/// `asdo logs`, `asdo wait` and `asdo status`.
#[test]
fn real_opencode_agent_pod_reads_back_with_logs_wait_and_status() {
    use crate::agent_fixture::opencode_dir;
    use crate::support::model_server::{ModelServer, Step};
    let env = Env::new();
    let f = Fixture::new("e2e-real");
    let model = ModelServer::start(vec![
        Step::write(&f.workspace().join("hello.txt"), "hello\n"),
        Step::text("Wrote hello.txt."),
    ]);
    let path = format!("{}:{}", opencode_dir().display(), f.path_var());
    let config = model.opencode_config();
    let values = values(
        &env,
        &f,
        &[
            ("PATH", &path),
            ("OPENCODE_CONFIG_CONTENT", &config),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ],
    );
    let r = env.asdo(&[
        "spawn",
        "T201",
        BRANCH,
        &f.repo_url(),
        "--prompt",
        "Add a greeting file",
        "--model",
        "stub/stub-model",
        "-f",
        path_str(&values),
    ]);
    assert_eq!(r.code, 0, "{r:?}");

    // The real opencode on a loaded 2-core machine can take minutes: a generous bound.
    let slow = |args: &[&str]| run_with_timeout(env.cmd(args), Duration::from_secs(300));
    let logs = slow(&["logs", "T201"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    let sha = f.remote_branch(BRANCH).expect("branch pushed");
    assert_eq!(
        markers(&logs.stdout).last().unwrap(),
        &format!("asdo: done {sha}")
    );
    assert!(logs.stdout.contains("\n· write hello.txt\n"), "{logs:?}");
    assert!(
        logs.stdout.contains("\n· says: Wrote hello.txt.\n"),
        "{logs:?}"
    );
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");

    let wait = slow(&["wait", "T201", "--timeout", "240s"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    assert!(
        wait.stdout.contains(&format!("commit={sha} tokens=240/60")),
        "{wait:?}"
    );

    let status = env.asdo(&["status", "T201"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status
            .stdout
            .contains("Last step:   says: Wrote hello.txt.\n"),
        "{status:?}"
    );
    assert!(
        status
            .stdout
            .contains("Agent:       files 1, tokens 240 in / 60 out\n"),
        "{status:?}"
    );
    for out in [&logs.stdout, &logs.stderr, &wait.stdout, &status.stdout] {
        assert!(!out.contains(PASSWORD));
    }
}

/// A prompt too big for an env value (spec-kit tasks with the spec inlined) goes in a
/// ConfigMap owned by the pod, mounted as TASK_PROMPT_FILE; one over what a ConfigMap
/// can hold is one line and exit 2 before any request.
#[test]
fn big_prompts_travel_in_a_configmap_owned_by_the_pod() {
    const REPO: &str = "https://github.com/org/repo.git";
    let env = Env::new();
    let script = env.script_values("true");
    let big = "spec line: the endpoint returns 200.\n".repeat(200 * 1000 / 37);
    let file = env.write("big-prompt.md", &big);
    env.server.clear_requests();
    let r = env.asdo(&[
        "spawn",
        "T301",
        BRANCH,
        REPO,
        "--prompt-file",
        path_str(&file),
        "-f",
        path_str(&script),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let writes: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method != "GET")
        .map(|q| q.path)
        .collect();
    assert_eq!(
        writes,
        [
            format!("/api/v1/namespaces/{NS}/pods"),
            format!("/api/v1/namespaces/{NS}/configmaps")
        ]
    );
    let pod = env.kubectl_pod("agent-t301");
    let vars = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let var = |n: &str| {
        vars.iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(var("TASK_PROMPT"), None);
    assert_eq!(
        var("TASK_PROMPT_FILE"),
        Some(json!("/etc/asdo/prompt/prompt"))
    );
    let vol = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "prompt")
        .unwrap()
        .clone();
    assert_eq!(vol["configMap"]["name"], "agent-t301-prompt");
    let cm = env.kubectl(&[
        "get",
        "configmap",
        "agent-t301-prompt",
        "-n",
        NS,
        "-o",
        "json",
    ]);
    assert_eq!(cm.code, 0, "{cm:?}");
    let cm: serde_json::Value = serde_json::from_str(&cm.stdout).unwrap();
    assert_eq!(cm["data"]["prompt"].as_str().unwrap(), big);
    let owner = &cm["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Pod"), Some("agent-t301"))
    );
    assert_eq!(owner["uid"], pod["metadata"]["uid"]);

    let huge = env.write("huge-prompt.md", &"x".repeat(1024 * 1024 + 1));
    env.server.clear_requests();
    let r = env.asdo(&[
        "spawn",
        "T302",
        BRANCH,
        REPO,
        "--prompt-file",
        path_str(&huge),
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains("over the 1 MiB a ConfigMap can hold"),
        "{r:?}"
    );
    assert!(
        env.server.requests().is_empty(),
        "{:?}",
        env.server.requests()
    );
}

/// `asdo answer` is the person's channel: it patches the pod's annotation with the
/// caller's credentials, in the shape the agent reads from its downwardAPI file (checked
/// with kubectl as an independent client). Bad input is refused before any call.
#[test]
fn answer_patches_the_pods_annotation_and_refuses_bad_input_first() {
    let env = Env::new();
    env.spawn_script("Q1", "sleep 30");
    let r = env.asdo(&["answer", "Q1", "per_2b6c4e1f9aA01x", "once"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["answer", "Q1", "que_2b6c4e2aa6001y", "Postgres"]);
    assert_eq!(r.code, 0, "{r:?}");
    let ann = &env.kubectl_pod("agent-q1")["metadata"]["annotations"];
    let per: serde_json::Value = serde_json::from_str(
        ann["agentic-sdlc/answer.per_2b6c4e1f9aA01x"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(per["reply"], "once", "{ann}");
    assert!(per["by"].as_str().is_some_and(|b| !b.is_empty()), "{per}");
    let que: serde_json::Value = serde_json::from_str(
        ann["agentic-sdlc/answer.que_2b6c4e2aa6001y"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(que["answers"], json!([["Postgres"]]), "{ann}");
    assert_eq!(
        ann["agentic-sdlc/branch"], "specs/001-auth/Q1-async",
        "the rest kept: {ann}"
    );
    let patches = env.count("PATCH", "/api/v1/namespaces");
    for bad in [
        vec!["answer", "Q1", "per_x", "always"],
        vec!["answer", "Q1", "ses_abc", "once"],
        vec!["answer", "Q1", "per_../../x", "once"],
        vec!["answer", "Q1", "--kubeconfig=/tmp/x", "once"],
    ] {
        let r = env.asdo(&bad);
        assert_eq!(r.code, 2, "{bad:?}: {r:?}");
    }
    assert_eq!(
        env.count("PATCH", "/api/v1/namespaces"),
        patches,
        "no call for bad input"
    );
}

/// The whole person's channel in a task pod: the agent waits under
/// `agent.permissions=wait`; `asdo answer` patches the pod; the fake kubelet rewrites the
/// pod's downwardAPI annotations file; the agent reads it, approves the request itself and
/// the task pushes, crediting the person.
#[test]
fn agent_pod_permission_is_approved_through_asdo_answer() {
    let env = Env::new();
    let f = Fixture::new("e2e-answer");
    f.opencode("printf 'hello\\n' > hello.txt");
    let values = values(
        &env,
        &f,
        &[
            ("ASDO_PERMISSIONS", "wait"),
            ("ASDO_STANDIN_ASK", "edit"),
            // Pods are processes here: the volume's directory instead of its mount path.
            (
                "ASDO_ANSWERS_FILE",
                "$(FAKE_KUBELET_VOLUME_ANSWERS)/annotations",
            ),
        ],
    );
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "A1",
        "--branch",
        BRANCH,
        "--repo",
        &f.repo_url(),
        "--prompt",
        "Add a greeting file",
        "-f",
        path_str(&values),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let asked = "· permission edit hello.txt → waiting for a person (agent.permissions=wait; asdo answer A1 per_standin1 once|reject)";
    // kubectl as the independent reader (asdo logs follows a running pod to its end).
    let log = || env.kubectl(&["logs", "agent-a1", "-n", NS]).stdout;
    assert!(
        eventually(std::time::Duration::from_secs(60), || log().contains(asked)),
        "{}",
        log()
    );
    let r = env.asdo(&["answer", "A1", "per_standin1", "once"]);
    assert_eq!(r.code, 0, "{r:?}");
    let wait = env.asdo(&["wait", "A1", "--timeout", "60s"]);
    assert_eq!(wait.code, 0, "{wait:?}");
    assert_eq!(f.read_out("permission-reply"), "once");
    assert_eq!(f.remote_file(BRANCH, "hello.txt"), "hello");
    let logs = env.asdo(&["logs", "A1"]).stdout;
    let who = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    assert!(
        logs.contains(&format!(
            "· permission edit hello.txt → approved (answered by {who} through asdo answer)"
        )),
        "{logs}"
    );
}
