//! `asdo spawn` against the fake API server, checked with kubectl.

use std::time::Duration;

use crate::common::*;

/// `spawn --task-id <id> --branch BRANCH --repo REPO`, then `extra`.
#[test]
fn spawn_creates_the_task_pod_with_one_write() {
    let env = Env::new();
    env.server.clear_requests();
    let r = env.asdo(&spawn_args("T001", &["--prompt", "Add login"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t001 created\n");
    assert!(r.stderr.contains("asdo logs T001"), "{r:?}");
    assert!(!r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD));

    // One write; the only other request reads the chart's ConfigMap.
    let writes: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method != "GET")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, format!("/api/v1/namespaces/{NS}/pods"));

    // kubectl, an independent client, sees what asdo promised.
    let pod = env.kubectl_pod("agent-t001");
    assert_eq!(pod["metadata"]["labels"]["app"], "agent-orchestrator");
    assert_eq!(pod["metadata"]["labels"]["task-id"], "T001");
    assert_eq!(
        pod["metadata"]["annotations"]["agentic-sdlc/branch"],
        BRANCH
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["name"], "agent");
    let env_of = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    assert_eq!(env_of("TASK_ID").unwrap()["value"], "T001");
    assert_eq!(env_of("GIT_BRANCH").unwrap()["value"], BRANCH);
    assert_eq!(env_of("TASK_PROMPT").unwrap()["value"], "Add login");
    let pw = env_of("OPENCODE_SERVER_PASSWORD").unwrap();
    assert!(pw.get("value").is_none());
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], PASSWORD_SECRET);
}

#[test]
fn positional_form_and_env_defaults() {
    let env = Env::new();
    let mut c = env.cmd(&["spawn", "T002", "specs/x/T002-async", REPO, "specs/x"]);
    c.env("SSH_SECRET_NAME", "git-ssh");
    let r = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(r.code, 0, "{r:?}");
    let pod = env.kubectl_pod("agent-t002");
    assert_eq!(
        pod["metadata"]["annotations"]["agentic-sdlc/spec-dir"],
        "specs/x"
    );
    let vols = pod["spec"]["volumes"].as_array().unwrap();
    let ssh = vols
        .iter()
        .find(|v| v["name"] == "ssh-key")
        .expect("ssh volume");
    assert_eq!(ssh["secret"]["secretName"], "git-ssh");
    assert_eq!(ssh["secret"]["defaultMode"], 256);
}

#[test]
fn dry_run_needs_no_cluster_and_prints_no_secret() {
    let dir = TempDir::new("dry");
    // A kubeconfig pointing at a port nothing listens on.
    let kc = dir.0.join("kc");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    for (fmt, check) in [
        ("json", "\"kind\": \"Pod\""),
        ("yaml", "kind: Pod"),
        ("name", "pod/agent-t001"),
    ] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asdo"));
        c.args([
            "--kubeconfig",
            path_str(&kc),
            "spawn",
            "--task-id",
            "T001",
            "--branch",
            BRANCH,
            "--repo",
            REPO,
            "--dry-run",
            "-o",
            fmt,
        ]);
        isolate(&mut c);
        let r = run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains(check), "{r:?}");
        assert!(
            !r.stdout.to_lowercase().contains("pw-"),
            "no secret value in dry-run output"
        );
    }
}

#[test]
fn already_exists_says_what_to_do() {
    let env = Env::new();
    env.spawn_script("T003", "sleep 30");
    let r = env.asdo(&spawn_args("T003", &[]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--replace"),
        "{r:?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");

    // --replace refuses to kill a running task...
    env.server
        .wait_for_phase(NS, "agent-t003", "Running", Duration::from_secs(10));
    let r = env.asdo(&spawn_args("T003", &["--replace"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("still Running"), "{r:?}");
}

#[test]
fn replace_swaps_a_finished_pod() {
    let env = Env::new();
    env.spawn_script("T004", "echo first");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t004", "Succeeded", Duration::from_secs(10))
    );
    let old_uid = env.server.pod(NS, "agent-t004").unwrap().metadata.uid;
    let values = env.script_values("echo second");
    let r = env.asdo(&spawn_args("T004", &["--replace", "-f", path_str(&values)]));
    assert_eq!(r.code, 0, "{r:?}");
    let new_uid = env.server.pod(NS, "agent-t004").unwrap().metadata.uid;
    assert_ne!(old_uid, new_uid);
}

#[test]
fn follow_streams_and_exits_with_the_task_code() {
    let env = Env::new();
    let values = env.script_values("echo working; sleep 0.3; echo giving up; exit 7");
    let r = env.asdo(&spawn_args("T005", &["-f", path_str(&values), "--follow"]));
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t005 created\nworking\ngiving up\n");
    assert!(r.stderr.contains("Failed, exit code 7"), "{r:?}");
}

#[test]
fn wait_returns_once_running() {
    let env = Env::new();
    env.server.set_schedule_delay(Duration::from_millis(600));
    let values = env.script_values("sleep 30");
    let r = env.asdo(&spawn_args("T006", &["-f", path_str(&values), "--wait"]));
    assert_eq!(r.code, 0, "{r:?}");
    let pod = env.server.pod(NS, "agent-t006").unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
}

#[test]
fn cluster_configmap_values_apply_and_flags_win() {
    let env = Env::new();
    env.server.put_configmap(
        NS,
        "agentic-sdlc-orchestrator-dev-config",
        &[(
            "values.yaml",
            "pod:\n  image:\n    tag: from-cluster\n  activeDeadlineSeconds: 60\n",
        )],
    );
    let r = env.asdo(&spawn_args(
        "T007",
        &["--set", "pod.activeDeadlineSeconds=90"],
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let pod = env.kubectl_pod("agent-t007");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "agentic-sdlc/opencode:from-cluster"
    );
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 90);
}

#[test]
fn bad_input_fails_before_any_request() {
    let env = Env::new();
    let bad_yaml = env.write("bad.yaml", "pod:\n  image: [unclosed\n");
    let wrong_type = env.write("wrong.yaml", "pod:\n  activeDeadlineSeconds: soon\n");
    let typo = env.write("typo.yaml", "task:\n  contxtDir: /workspace/x\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["spawn", "--branch", BRANCH, "--repo", REPO],
            "--task-id is required",
        ),
        (spawn_args("T_1", &[]), "invalid task id"),
        (
            vec!["spawn", "--task-id", "T1", "--repo", REPO],
            "--branch is required",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "a..b",
                "--repo",
                REPO,
            ],
            "invalid branch",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "has space",
                "--repo",
                REPO,
            ],
            "invalid branch",
        ),
        (
            vec!["spawn", "--task-id", "T1", "--branch", BRANCH],
            "--repo is required",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                BRANCH,
                "--repo",
                "http://x/y",
            ],
            "invalid repo",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                BRANCH,
                "--repo",
                "https://u:hunter2@github.com/o/r",
            ],
            "contains a password",
        ),
        (
            spawn_args("T1", &["--set", "pod.gitTokenSecret.enabled=true"]),
            "gitTokenSecret.enabled needs a Secret name",
        ),
        (
            spawn_args("T1", &["--set", "pod.imagee.tag=1.0"]),
            "unknown value pod.imagee in --set pod.imagee.tag=1.0",
        ),
        (
            spawn_args("T1", &["-f", path_str(&typo)]),
            "unknown value task.contxtDir in",
        ),
        (
            spawn_args("T1", &["-e", "qa"]),
            "unknown environment \"qa\"",
        ),
        (
            spawn_args("T1", &["-f", path_str(&bad_yaml)]),
            "invalid YAML",
        ),
        (
            spawn_args("T1", &["-f", path_str(&wrong_type)]),
            "invalid values",
        ),
        (spawn_args("T1", &["--set", "novalue"]), "invalid --set"),
        (
            spawn_args("T1", &["--prompt-file", "/nonexistent/p.md"]),
            "cannot read --prompt-file",
        ),
    ];
    env.server.clear_requests();
    for (full, expect) in cases {
        let r = env.asdo(&full);
        assert_eq!(r.code, 2, "{full:?}: {r:?}");
        assert!(
            r.stderr.contains(expect),
            "{full:?} should say {expect:?}: {r:?}"
        );
        // A YAML error shows the file's annotated snippet on its lines (one `error:`).
        if !expect.contains("YAML") {
            assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {r:?}");
        }
        assert!(r.stderr.starts_with("error: "), "{r:?}");
        assert!(!r.stderr.contains("hunter2"), "secret echoed: {r:?}");
    }
    assert!(
        env.server.requests().is_empty(),
        "no API call on bad input: {:?}",
        env.server.requests()
    );
    assert!(env.server.pods(NS).is_empty());
}

#[test]
fn api_errors_are_one_clear_line() {
    let env = Env::new();
    // Unknown namespace: say how to get one.
    let r = env.asdo(&spawn_args("T8", &["-n", "nowhere"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("nowhere") && r.stderr.contains("helm upgrade --install"),
        "{r:?}"
    );

    // A server error on the create.
    env.server.fail_next_matching(1, 500, "POST", "/pods");
    let r = env.asdo(&spawn_args("T9", &[]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("500"), "{r:?}");
    assert!(env.server.pods(NS).is_empty(), "nothing half-created");

    // Forbidden: point at RBAC.
    env.server.forbid_namespace(NS);
    let r = env.asdo(&spawn_args("T10", &[]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("forbidden") && r.stderr.contains("rbac.subjects"),
        "{r:?}"
    );
}

#[test]
fn unreachable_cluster_fails_fast() {
    let dir = TempDir::new("unreach");
    let kc = dir.0.join("kc");
    // 127.0.0.1:9 (discard) has no listener: connection refused.
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    for args in [
        vec![
            "spawn",
            "--task-id",
            "T1",
            "--branch",
            BRANCH,
            "--repo",
            REPO,
        ],
        vec!["list"],
        vec!["logs", "T1"],
        vec!["cleanup"],
    ] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asdo"));
        c.arg("--kubeconfig").arg(&kc).args(&args);
        isolate(&mut c);
        let r = run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("unreachable"), "{args:?}: {r:?}");
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{r:?}");
    }
}

#[test]
fn values_the_api_would_reject_are_refused_locally() {
    let env = Env::new();
    let file = |name: &str, text: &str| env.write(name, text);
    let bad_label_key = file("lk.yaml", "pod:\n  labels:\n    \"bad key!\": x\n");
    let bad_env = file(
        "env.yaml",
        "pod:\n  env:\n    - name: 1BAD\n      value: x\n",
    );
    let bad_qty = file(
        "q.yaml",
        "pod:\n  resources:\n    limits:\n      memory: 2GB\n",
    );
    let bad_pull = file(
        "ps.yaml",
        "pod:\n  imagePullSecrets:\n    - name: Bad_Name\n",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            spawn_args("T1", &["--set", "pod.labels.team=has space"]),
            "label",
        ),
        (
            spawn_args("T1", &["-f", path_str(&bad_label_key)]),
            "label key",
        ),
        (
            spawn_args("T1", &["-f", path_str(&bad_env)]),
            "environment variable",
        ),
        (spawn_args("T1", &["-f", path_str(&bad_qty)]), "2GB"),
        (spawn_args("T1", &["-f", path_str(&bad_pull)]), "Bad_Name"),
        (
            spawn_args("T1", &["--set", "pod.activeDeadlineSeconds=0"]),
            "activeDeadlineSeconds",
        ),
        (
            spawn_args("T1", &["--set", "pod.activeDeadlineSeconds=-5"]),
            "activeDeadlineSeconds",
        ),
        (
            spawn_args("T1", &["--ssh-secret", "Bad_Secret"]),
            "Bad_Secret",
        ),
        (
            spawn_args("T1", &["--image", "UPPER/Img:1"]),
            "invalid image",
        ),
        (
            spawn_args("T1", &["--image", "img:bad tag"]),
            "invalid image",
        ),
        (
            spawn_args(
                "T1",
                &[
                    "--set",
                    "pod.gitTokenSecret.enabled=true",
                    "--set",
                    "pod.gitTokenSecret.name=no/slash",
                ],
            ),
            "no/slash",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "HEAD",
                "--repo",
                REPO,
            ],
            "reserved",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "b",
                "--repo",
                "git:ghp_hunter2@github.com:o/r.git",
            ],
            "password or token",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "b",
                "--repo",
                "https://github.com/o/r.git?access_token=hunter2",
            ],
            "password or token",
        ),
        (
            vec![
                "spawn",
                "--task-id",
                "T1",
                "--branch",
                "b",
                "--repo",
                "ssh://git:hunter2@github.com/o/r.git",
            ],
            "password or token",
        ),
    ];
    env.server.clear_requests();
    for (full, expect) in cases {
        let r = env.asdo(&full);
        assert_eq!(r.code, 2, "{full:?}: {r:?}");
        assert!(
            r.stderr.contains(expect),
            "{full:?} should say {expect:?}: {r:?}"
        );
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {r:?}");
        assert!(!r.stderr.contains("hunter2"), "secret echoed: {r:?}");
        // --dry-run refuses the same, before printing anything.
        let mut dry = full.clone();
        dry.push("--dry-run");
        let r = env.asdo(&dry);
        assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{dry:?}: {r:?}");
    }
    assert!(
        env.server.requests().is_empty(),
        "{:?}",
        env.server.requests()
    );
}

#[test]
fn usage_errors_are_one_line_and_a_hint() {
    let env = Env::new();
    for args in [
        &["spawn", "--bogus"][..],
        &["wait"],
        &["logs", "--tail"],
        &["nope"],
    ] {
        let r = env.asdo(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {r:?}");
        assert!(lines[0].starts_with("error: "), "{r:?}");
        assert!(lines[1].contains("--help"), "{r:?}");
    }
    assert_eq!(env.asdo(&["--help"]).code, 0);
}

#[test]
fn a_create_stored_but_answered_504_is_reported_as_created() {
    let env = Env::new();
    // The API server stores the pod; the proxy in front answers 504; kube-rs retries the
    // POST and gets AlreadyExists for the pod this very call created.
    env.server.fail_next_after_handling(1, 504, "POST", "/pods");
    let r = env.asdo(&spawn_args("T504", &[]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "pod/agent-t504 created\n", "{r:?}");
    assert!(env.count("POST", "/pods") >= 2, "the create was retried");
    assert_eq!(env.server.pods(NS).len(), 1);
    // Someone else's pod of the same name is still AlreadyExists, exit 1.
    let r = env.asdo(&spawn_args("T504", &[]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");
}

#[test]
fn concurrent_replaces_never_delete_the_other_runs_pod() {
    let env = Env::new();
    env.spawn_script("TR", "echo first");
    assert!(
        env.server
            .wait_for_phase(NS, "agent-tr", "Succeeded", Duration::from_secs(20))
    );
    let values = env.script_values("echo again; sleep 30");
    for round in 0..3 {
        let children: Vec<_> = (0..2)
            .map(|_| env.start(&spawn_args("TR", &["--replace", "-f", path_str(&values)])))
            .collect();
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| wait_output(c, Duration::from_secs(60)))
            .collect();
        let ok: Vec<&Run> = runs.iter().filter(|r| r.code == 0).collect();
        assert_eq!(ok.len(), 1, "round {round}: exactly one wins: {runs:?}");
        assert!(runs.iter().any(|r| r.code == 1), "{runs:?}");
        // The winner's pod is the one standing, and nobody deleted it.
        let pod = env.server.pod(NS, "agent-tr").expect("the winner's pod");
        let deletes_of_new = env
            .server
            .requests()
            .iter()
            .filter(|q| q.method == "DELETE" && q.status == 200)
            .count();
        assert_eq!(deletes_of_new, round + 1, "one successful delete per round");
        // Finish it so the next round can replace it. First let the fake kubelet report it
        // Running: on a loaded machine that update can come after ours and undo it.
        assert!(
            env.server
                .wait_for_phase(NS, "agent-tr", "Running", Duration::from_secs(30))
        );
        let uid = pod.metadata.uid.clone().unwrap();
        let mut done = task_pod("TR", "Succeeded", Some(0), Duration::from_secs(1));
        done.metadata.uid = Some(uid);
        env.server.insert_pod(done);
    }
}

#[test]
fn a_create_stored_but_never_answered_is_reported_as_created() {
    let env = Env::new();
    env.server.hang_next_after_handling(1, "POST", "/pods");
    let mut args = vec!["--request-timeout", "2s"];
    args.extend(spawn_args("TH", &[]));
    let r = env.asdo(&args);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "pod/agent-th created\n"),
        "{r:?}"
    );
    assert_eq!(env.server.pods(NS).len(), 1);

    // Not stored and never answered: one line naming the server and the bound, exit 1.
    env.server
        .hang_next_matching(1, Some("POST"), Some("/pods"));
    let mut args = vec!["--request-timeout", "2s"];
    args.extend(spawn_args("TJ", &[]));
    let r = env.asdo(&args);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("did not answer within 2s"), "{r:?}");
    assert!(env.server.pod(NS, "agent-tj").is_none());
}
