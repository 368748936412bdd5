//! Hostile input, round 2 (issue 19): forged session ids in a pod's log, servers that
//! never answer or answer too much, refused writes half-way through a spawn, 503s and
//! 403s, log bytes that are not UTF-8, and bad repo/model values. Each runs the real
//! binary against the fake API server; the task pod's OpenCode server is a small
//! recording stand-in (fake_opencode.py) where the test is about what asdo sends it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::common::*;

fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 on PATH");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The pod as `asdo spawn` renders it (password from the chart's Secret, the `opencode`
/// port), running `script` instead of the agent.
fn task_pod_running(env: &Env, id: &str, script: &str) -> Pod {
    let values = env.write(
        &format!("pod-{id}.yaml"),
        &json!({"pod": {"command": ["sh", "-c", script]}}).to_string(),
    );
    let pod = crate::visibility::rendered_pod(env, id, &values);
    let name = format!("agent-{}", id.to_lowercase());
    env.server.insert_pod(pod.clone());
    assert!(
        env.server
            .wait_for_phase(NS, &name, "Running", Duration::from_secs(30))
    );
    pod
}

/// A task pod whose log first says `session_line`, then serves the recording stand-in.
/// Returns the file the stand-in records its requests in.
fn fake_opencode_pod(env: &Env, id: &str, session_line: &str, mode: &str) -> PathBuf {
    let record = env.dir.0.join(format!("requests-{id}.txt"));
    std::fs::write(&record, "").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/fake_opencode.py");
    let sh = format!(
        "printf '%s\\n' {line}; exec {py} {script} \"$FAKE_KUBELET_PORT_4096\" {mode} {rec}",
        line = shell_quote(session_line),
        py = shell_quote(&python()),
        script = shell_quote(script),
        rec = shell_quote(path_str(&record)),
    );
    task_pod_running(env, id, &sh);
    record
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn recorded(record: &PathBuf) -> String {
    std::fs::read_to_string(record).unwrap_or_default()
}

#[test]
fn forged_session_ids_from_the_log_are_refused() {
    let env = Env::new();
    // A path walk out of /session/…: send must not post to /permission/….
    let record = fake_opencode_pod(
        &env,
        "F1",
        "asdo: opencode session ../../permission/perm_1/reply?x= on http://127.0.0.1:4096",
        "ok",
    );
    let r = env.asdo(&["send", "F1", "approve everything", "--timeout", "2m"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not an OpenCode session id") && r.stderr.contains("refusing"),
        "{r:?}"
    );
    let seen = recorded(&record);
    assert!(
        !seen.contains("/permission") && !seen.contains("prompt_async"),
        "{seen}"
    );

    // An option for `opencode attach`: never run with it.
    fake_opencode_pod(
        &env,
        "F2",
        "asdo: opencode session --print-logs on http://127.0.0.1:4096",
        "ok",
    );
    let bin = env.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let argv = env.dir.0.join("opencode-argv.txt");
    let fake = bin.join("opencode");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n", path_str(&argv)),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = env.cmd(&["attach", "F2"]);
    c.env(
        "PATH",
        format!("{}:{}", path_str(&bin), std::env::var("PATH").unwrap()),
    );
    let r = run_with_timeout(c, Duration::from_secs(120));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("\"--print-logs\""), "{r:?}");
    assert!(
        !argv.exists(),
        "opencode ran: {:?}",
        std::fs::read_to_string(&argv)
    );
}

#[test]
fn send_is_bounded_when_the_secret_or_the_log_read_never_answers() {
    let env = Env::new();
    fake_opencode_pod(
        &env,
        "B1",
        "asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096",
        "ok",
    );
    // The Secret read never answered: --request-timeout ends it.
    env.server
        .hang_next_matching(1, Some("GET"), Some("/secrets/"));
    let r = env.asdo(&["send", "B1", "hi", "--request-timeout", "3s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("read Secret") && r.stderr.contains("did not answer within 3s"),
        "{r:?}"
    );
    // The session-log read never answered, no --request-timeout: send's own --timeout
    // ends the whole command.
    env.server.hang_next_matching(1, Some("GET"), Some("/log"));
    let r = env.asdo(&[
        "send",
        "B1",
        "hi",
        "--timeout",
        "5s",
        "--request-timeout",
        "0",
    ]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(
        r.stderr.contains("no answer within 5s (--timeout)"),
        "{r:?}"
    );
}

#[test]
fn a_huge_health_answer_is_capped_and_named() {
    let env = Env::new();
    fake_opencode_pod(
        &env,
        "H1",
        "asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096",
        "huge-health",
    );
    let r = env.asdo(&["send", "H1", "hi", "--timeout", "2m"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("GET /global/health is over 64 KiB (asdo's cap)"),
        "{r:?}"
    );
}

#[test]
fn a_message_over_the_cap_is_refused_before_any_call() {
    let env = Env::new();
    let big = env.write("big.md", &"x".repeat(4 * 1024 * 1024 + 1));
    let r = env.asdo(&["send", "T1", "--file", path_str(&big)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains("over the 4 MiB a message may have"),
        "{r:?}"
    );
    assert!(env.server.requests().is_empty());
}

#[test]
fn attach_backs_off_when_it_runs_out_of_file_descriptors() {
    let env = Env::new();
    fake_opencode_pod(
        &env,
        "A1",
        "asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096",
        "ok",
    );
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 64 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_asdo"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["attach", "A1", "--print-url"]);
    isolate(&mut c);
    let mut child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr = url.trim().strip_prefix("http://").unwrap().to_string();
    // 120 connections held open: far more than 64 descriptors can serve.
    let held: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(held.len() >= 100, "{}", held.len());
    // A window to count warnings in (not a synchronisation: nothing is awaited).
    std::thread::sleep(Duration::from_secs(5));
    drop(held);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    let warnings = err.lines().filter(|l| l.starts_with("warning: ")).count();
    assert!(warnings <= 4, "{warnings} warnings:\n{err}\n{out:?}");
    // Running out of descriptors is not the pod ending: Ctrl-C ends the forward, exit 0.
    assert_eq!(out.code, 0, "{err}\n{out:?}");
    assert!(!err.contains("ended (pod"), "{err}");
    assert!(err.contains("cannot accept a connection"), "{err}");
}

/// `spawn <id> --prompt-file <prompt> -f <values>` and then `extra`: a prompt that big
/// goes in its own ConfigMap.
fn spawn_big_prompt(env: &Env, id: &str, prompt: &Path, values: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--prompt-file", path_str(prompt), "-f", path_str(values)];
    args.extend_from_slice(extra);
    env.asdo(&spawn_args(id, &args))
}

/// The uid of the owner of `pod`'s prompt ConfigMap, read with kubectl (it must exist).
fn prompt_owner_uid(env: &Env, pod: &str) -> serde_json::Value {
    let name = format!("{pod}-prompt");
    let cm = env.kubectl(&["get", "configmap", &name, "-n", NS, "-o", "json"]);
    assert_eq!(cm.code, 0, "{pod}: {cm:?}");
    let cm: serde_json::Value = serde_json::from_str(&cm.stdout).unwrap();
    cm["metadata"]["ownerReferences"][0]["uid"].clone()
}

#[test]
fn a_refused_prompt_configmap_leaves_nothing_behind() {
    let env = Env::new();
    let values = env.script_values("cat \"$TASK_PROMPT_FILE\" >/dev/null; echo ran");
    let prompt = env.write("prompt.md", &"Do it. ".repeat(20_000));
    for (id, fault) in [("C1", Some(500)), ("C2", Some(413)), ("C3", None)] {
        match fault {
            Some(code) => env
                .server
                .fail_next_matching(1, code, "POST", "/configmaps"),
            None => env
                .server
                .hang_next_matching(1, Some("POST"), Some("/configmaps")),
        }
        let r = spawn_big_prompt(&env, id, &prompt, &values, &["--request-timeout", "3s"]);
        assert_eq!(r.code, 1, "{id}: {r:?}");
        assert!(
            r.stderr.contains("configmap") && r.stderr.contains("deleted again"),
            "{id}: {r:?}"
        );
        if fault.is_none() {
            assert!(r.stderr.contains("did not answer within 3s"), "{r:?}");
        }
    }
    let pods = env.kubectl(&["get", "pods", "-n", NS, "-o", "name"]);
    assert_eq!((pods.code, pods.stdout.as_str()), (0, ""), "{pods:?}");
    // The hung create was never stored; the refused ones neither.
    let cms = env.kubectl(&["get", "configmaps", "-n", NS, "-o", "name"]);
    assert_eq!((cms.code, cms.stdout.as_str()), (0, ""), "{cms:?}");

    // Nothing in the way of the next try.
    let r = spawn_big_prompt(&env, "C1", &prompt, &values, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let first = env.kubectl_pod("agent-c1")["metadata"]["uid"].clone();
    assert_eq!(prompt_owner_uid(&env, "agent-c1"), first);

    // --replace of the finished run: the old run's prompt ConfigMap (the fake API server
    // collects no garbage, like a cluster whose GC has not come yet) gives way to the new.
    assert!(
        env.server
            .wait_for_phase(NS, "agent-c1", "Succeeded", Duration::from_secs(60))
    );
    let r = spawn_big_prompt(&env, "C1", &prompt, &values, &["--replace"]);
    assert_eq!(r.code, 0, "{r:?}");
    let second = env.kubectl_pod("agent-c1")["metadata"]["uid"].clone();
    assert_ne!(second, first);
    assert_eq!(prompt_owner_uid(&env, "agent-c1"), second);
}

/// The prompt ConfigMap is written only after its pod exists (it is owned by the pod's
/// uid): a pod create that is refused, or not answered and not stored, sends none.
#[test]
fn a_failed_pod_create_sends_no_prompt_configmap() {
    let env = Env::new();
    let values = env.script_values("echo ran");
    let prompt = env.write("prompt.md", &"Do it. ".repeat(20_000));
    env.server.fail_next_matching(1, 500, "POST", "/pods");
    env.server
        .hang_next_matching(1, Some("POST"), Some("/pods"));
    for id in ["P1", "P2"] {
        let r = spawn_big_prompt(&env, id, &prompt, &values, &["--request-timeout", "3s"]);
        assert_eq!(r.code, 1, "{id}: {r:?}");
    }
    assert_eq!(env.count("POST", "/configmaps"), 0);
    assert!(env.server.pods(NS).is_empty());
    let cms = env.kubectl(&["get", "configmaps", "-n", NS, "-o", "name"]);
    assert_eq!((cms.code, cms.stdout.as_str()), (0, ""), "{cms:?}");
}

/// A big prompt's spawn whose pod or prompt ConfigMap was stored but its answer lost: a
/// proxy's 504 (kube-rs retries and gets AlreadyExists for its own object) or no answer
/// within --request-timeout. The pod is adopted by this call's spawn id, the ConfigMap by
/// its owner (that pod's uid): the spawn succeeds with both, instead of deleting the pod
/// and leaving the ConfigMap behind.
#[test]
fn a_big_prompt_spawn_whose_answer_was_lost_keeps_its_own_pod_and_configmap() {
    let env = Env::new();
    let values = env.script_values("cat \"$TASK_PROMPT_FILE\" >/dev/null; echo ran");
    let prompt = env.write("prompt.md", &"Do it. ".repeat(20_000));
    for (id, path, hang) in [
        ("L1", "/configmaps", false),
        ("L2", "/configmaps", true),
        ("L3", "/pods", false),
        ("L4", "/pods", true),
    ] {
        if hang {
            env.server.hang_next_after_handling(1, "POST", path);
        } else {
            env.server.fail_next_after_handling(1, 504, "POST", path);
        }
        let r = spawn_big_prompt(&env, id, &prompt, &values, &["--request-timeout", "3s"]);
        let pod = format!("agent-{}", id.to_lowercase());
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, format!("pod/{pod} created\n").as_str()),
            "{id}: {r:?}"
        );
        assert_eq!(
            prompt_owner_uid(&env, &pod),
            env.kubectl_pod(&pod)["metadata"]["uid"],
            "{id}"
        );
        // The pod got its prompt and ran.
        assert!(
            env.server
                .wait_for_phase(NS, &pod, "Succeeded", Duration::from_secs(60)),
            "{id}"
        );
    }
}

/// A plain-http API server (kube's own HTTP/1.1 stack, not src/apiconn.rs) that resets
/// the connection while asdo is still sending: asdo restores SIGPIPE's default action
/// (`asdo list | head`), so a write to the dead socket that raised SIGPIPE would kill it
/// silently. Each case ends with one `error:` line and exit 1, never a signal.
#[test]
fn a_plain_http_connection_reset_mid_request_is_an_error_line_not_sigpipe() {
    let env = Env::new();
    assert!(env.server.url().starts_with("http://"), "plain http");
    let values = env.script_values("echo ran");
    // Near the 1 MiB a ConfigMap holds: the biggest body asdo sends.
    let prompt = env.write("prompt.md", &"Do it. ".repeat(130_000));
    let cases: [(&str, &str, &str, Vec<&str>); 3] = [
        (
            "POST",
            "/configmaps",
            "R1",
            vec!["--prompt-file", path_str(&prompt), "-f", path_str(&values)],
        ),
        ("POST", "/pods", "R2", vec!["-f", path_str(&values)]),
        ("GET", "/pods", "", vec![]),
    ];
    for (method, path, id, extra) in cases {
        env.server.reset_next_matching(1, method, path);
        let r = if id.is_empty() {
            env.asdo(&["list"])
        } else {
            env.asdo(&spawn_args(id, &extra))
        };
        assert_eq!(r.code, 1, "{method} {path}: not a signal death: {r:?}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{method} {path}: {r:?}");
        assert!(lines[0].starts_with("error: "), "{method} {path}: {r:?}");
    }
    // Nothing half-created: the pod whose prompt ConfigMap was cut went again.
    assert!(env.server.pods(NS).is_empty());
}

#[test]
fn a_503_answer_says_so_and_how_often_it_was_retried() {
    let env = Env::new();
    env.server.fail_next_matching(12, 503, "POST", "/pods");
    let values = env.script_values("echo hi");
    let r = env.asdo(&spawn_args("S1", &["-f", path_str(&values)]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("answered 503") && r.stderr.contains("retried it 4 times"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("did not answer"), "{r:?}");
    assert_eq!(env.count("POST", "/pods"), 5);
}

#[test]
fn a_forbidden_portforward_is_said_at_once_with_the_rule() {
    let env = Env::new();
    fake_opencode_pod(
        &env,
        "P1",
        "asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096",
        "ok",
    );
    env.server
        .fail_next_matching(1000, 403, "GET", "/portforward");
    let r = env.asdo(&["send", "P1", "hi", "--timeout", "5m"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("forbidden") && r.stderr.contains("pods/portforward"),
        "{r:?}"
    );
    assert!(r.stderr.contains("verbs: [\"create\""), "{r:?}");
    // One try, maybe two racing: not a minute of them.
    assert!(env.count("GET", "/portforward") <= 3, "{r:?}");
}

#[test]
fn log_bytes_that_are_not_utf8_keep_markers_and_archive_byte_for_byte() {
    let env = Env::new();
    let bytes: &[u8] = b"asdo: cloning\n\xff\xfe binary \x80 output\nasdo: done abc1234\n";
    env.spawn_script(
        "U1",
        r"printf 'asdo: cloning\n\377\376 binary \200 output\nasdo: done abc1234\n'",
    );
    let w = env.asdo(&["wait", "U1", "--timeout", "2m"]);
    assert_eq!(w.code, 0, "{w:?}");
    assert!(w.stdout.contains("commit=abc1234"), "{w:?}");
    let s = env.asdo(&["status", "U1"]);
    assert!(s.stdout.contains("asdo: done abc1234"), "{s:?}");
    let dir = TempDir::new("archive");
    let c = env.asdo(&["cleanup", "--save-logs", path_str(&dir.0)]);
    assert_eq!(c.code, 0, "{c:?}");
    let logs: Vec<_> = std::fs::read_dir(dir.0.join(NS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(std::fs::read(&logs[0]).unwrap(), bytes);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(logs[0].with_extension("json")).unwrap()).unwrap();
    assert_eq!(summary["commit"], "abc1234");
    assert_eq!(summary["log_bytes"], bytes.len());
    assert_eq!(
        env.kubectl(&["get", "pods", "-n", NS, "-o", "name"]).stdout,
        ""
    );
}

#[test]
fn cleanup_task_id_follows_the_same_case_rule_as_logs_and_wait() {
    let env = Env::new();
    env.spawn_script("COK2", "echo hi");
    env.spawn_script("cok3", "echo hi");
    assert_eq!(
        env.asdo(&["wait", "COK2", "cok3", "--timeout", "2m"]).code,
        0
    );
    for (given, pod) in [("cok2", "agent-cok2"), ("COK3", "agent-cok3")] {
        let r = env.asdo(&["cleanup", "--task-id", given]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains(pod), "{given}: {r:?}");
        let k = env.kubectl(&["get", "pod", pod, "-n", NS]);
        assert_ne!(k.code, 0, "{given}: still there");
    }
}

#[test]
fn wait_report_dir_records_namespace_and_repo_from_the_pod() {
    let env = Env::new();
    env.spawn_script("L001", "echo hi");
    let dir = TempDir::new("report");
    let r = env.asdo(&[
        "wait",
        "L001",
        "--timeout",
        "2m",
        "--report-dir",
        path_str(&dir.0),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let md = std::fs::read_to_string(dir.0.join("delegation_prompts/L001.md")).unwrap();
    assert!(md.contains(&format!("- namespace: {NS}\n")), "{md}");
    assert!(md.contains("- repo: git@github.com:org/repo.git\n"), "{md}");
    assert!(md.contains(&format!("asdo logs L001 -n {NS}")), "{md}");
    assert!(!md.contains("-n -"), "{md}");
}

#[test]
fn option_like_ssh_hosts_and_bad_models_are_refused_before_any_call() {
    let env = Env::new();
    let base = ["spawn", "--task-id", "M1", "--branch", "specs/1/x"];
    for extra in [
        vec!["--repo", "ssh://-oProxyCommand=touch${IFS}/tmp/pwn/x"],
        vec!["--repo", "git@-oProxyCommand=x:y"],
        vec!["--repo", "git@github.com:o/r.git", "--model", "no-provider"],
        vec!["--repo", "git@github.com:o/r.git", "--model", "p/m x"],
        vec!["--repo", "git@github.com:o/r.git", "--model", "p/m\n--x"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let r = env.asdo(&args);
        assert_eq!(r.code, 2, "{extra:?}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{extra:?}: {r:?}");
    }
    let long = format!("p/{}", "m".repeat(300));
    let r = env.asdo(&spawn_args("M1", &["--model", &long]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        env.server.requests().is_empty(),
        "{:?}",
        env.server.requests()
    );
}
