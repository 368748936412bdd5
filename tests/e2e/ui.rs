//! `asdo ui` in a real browser: Debian's chromium driven by selenium (tests/e2e/ui_browser.py)
//! against the fake API server. Skipped, saying so, when chromium, chromedriver or the
//! py-tests venv with selenium is missing (.ci/run installs them).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The py-tests Python with selenium, when it and the browser are there; else says the
/// test is skipped.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("ASDO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/py-tests/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|b| std::path::Path::new(b).exists());
    if !(ok && browser) {
        eprintln!(
            "skipped: needs chromium, chromium-driver and selenium in .ci/cache/py-tests (run .ci/run)"
        );
        return None;
    }
    Some(p)
}

/// `asdo ui --no-open` outside any git clone, and the URL it printed first.
fn start_ui(env: &Env) -> (std::process::Child, String) {
    let mut ui = env
        .cmd(&["ui", "--no-open"])
        .current_dir(&env.dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(ui.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "{url:?}"
    );
    (ui, url)
}

/// tests/e2e/ui_browser.py against that page (its mode and inputs still to add).
fn browser(py: &std::path::Path, url: &str, env: &Env) -> Command {
    let mut driver = Command::new(py);
    driver
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ui_browser.py"))
        .env("ASDO_UI_URL", url)
        .env("ASDO_BIN", env!("CARGO_BIN_EXE_asdo"))
        .env("ASDO_KUBECONFIG", &env.kubeconfig)
        .env("ASDO_NS", NS)
        .env("ASDO_SECRET", PASSWORD);
    if let Some(dir) = std::env::var_os("ASDO_SCREENSHOTS") {
        driver.env("ASDO_SCREENSHOTS", dir);
    }
    driver
}

/// Runs the browser checks, then ends `asdo ui` with Ctrl-C: both must pass, and
/// neither prints the server password.
fn drive(driver: Command, ui: std::process::Child) -> Run {
    let run = run_with_timeout(driver, Duration::from_secs(600));
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert_eq!(
        run.code, 0,
        "browser checks failed:\n{run:?}\n--- asdo ui\n{served:?}"
    );
    assert_eq!(served.code, 0, "Ctrl-C ends asdo ui cleanly: {served:?}");
    assert!(!served.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
    run
}

#[test]
fn ui_in_a_real_browser() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    env.server.insert_pod(task_pod(
        "T100",
        "Succeeded",
        Some(0),
        Duration::from_secs(600),
    ));
    let mut oom: serde_json::Value = serde_json::to_value(task_pod(
        "T101",
        "Failed",
        Some(137),
        Duration::from_secs(300),
    ))
    .unwrap();
    oom["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = json!("OOMKilled");
    env.server.insert_pod(serde_json::from_value(oom).unwrap());
    let mut stuck: serde_json::Value =
        serde_json::to_value(task_pod("T102", "Pending", None, Duration::from_secs(60))).unwrap();
    stuck["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CreateContainerError", "message": "no such secret: api-key"}});
    stuck["status"]["containerStatuses"][0]["ready"] = json!(false);
    env.server
        .insert_pod(serde_json::from_value(stuck).unwrap());

    // A running task that writes a marker and a step, waits for `<gate>.lines` (made once its
    // page is open, so a loaded machine cannot let the lines run ahead of the page), writes 40
    // numbered lines, then waits for the gate; its log streams are cut every 1000 bytes (more than a second of its log, so each resume makes progress), so the page resumes many times.
    let gate = env.dir.0.join("gate");
    env.spawn_script(
        "T110",
        &format!(
            "echo 'asdo: running opencode'; echo '· write src/a.rs'; while [ ! -e '{g}.lines' ]; do sleep 0.1; done; i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.25; done; while [ ! -e '{g}' ]; do sleep 0.1; done; echo 'asdo: done 0123abcd'",
            g = gate.display()
        ),
    );
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t110", "Running", Duration::from_secs(30))
    );
    env.server.set_log_drop_after_bytes(Some(1000));
    let later = env.script_values("echo 'asdo: done no-commit-needed'");

    // Outside any git clone: the diff box says so instead of fetching from the repo URL.
    let (ui, url) = start_ui(&env);
    let mut driver = browser(&py, &url, &env);
    driver
        .env("ASDO_SPAWN_VALUES", &later)
        .env("ASDO_GATE", &gate);
    drive(driver, ui);
    // One watch of the task pods, not a request per task.
    let watches = env
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.ends_with("/pods") && r.query.contains("watch=true")
        })
        .count();
    assert!(watches >= 1, "the page is fed by a watch");
}

/// Issue 23: the follow-up box reaches the real OpenCode of a real agent in a pod (the
/// set-up of `visibility::send_steers_a_running_agent_and_its_file_is_pushed`): typed
/// and sent in the browser while the agent's first turn waits on a gate, its answer
/// streams into the page, and the file it asked for is on the pushed branch.
#[test]
fn ui_send_box_steers_the_real_agent() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    let agent = crate::visibility::steerable_agent(&env, "T230", "e2e-ui-steer");
    let (ui, url) = start_ui(&env);
    let mut driver = browser(&py, &url, &env);
    driver
        .env("ASDO_UI_MODE", "steer")
        .env("ASDO_POD", "agent-t230")
        .env("ASDO_GATE", &agent.gate);
    let run = drive(driver, ui);
    assert!(run.stdout.contains("all browser checks passed"), "{run:?}");
    agent.assert_steered(&env, "T230");
}

#[test]
fn ui_refuses_a_bad_address_and_warns_off_loopback() {
    let env = Env::new();
    let r = env.asdo(&["ui", "--address", "not-an-ip", "--no-open"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(env.server.requests().is_empty(), "checked before any call");
    let mut ui = env.start(&["ui", "--address", "0.0.0.0", "--no-open"]);
    let mut out = BufReader::new(ui.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    assert!(url.starts_with("http://0.0.0.0:"), "{url:?}");
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert!(
        served.stderr.contains("is not a loopback address"),
        "{served:?}"
    );
}

/// The scale figures of the README: 500 task pods, the page's render time for the
/// snapshot, the time from a task's exit to its new phase in the page (an upper bound: it
/// includes the fake kubelet noticing the exit), and asdo ui's peak RSS. Not a pass/fail
/// test (no timed assertions); run by hand:
///   cargo test --release --test e2e ui::ui_bench_500_task_pods -- --ignored --nocapture
#[test]
#[ignore]
fn ui_bench_500_task_pods() {
    let Some(py) = python() else {
        return;
    };
    let env = Env::new();
    for i in 0..500 {
        let (phase, code) = if i % 7 == 0 {
            ("Failed", 1)
        } else {
            ("Succeeded", 0)
        };
        env.server.insert_pod(task_pod(
            &format!("T{i:03}"),
            phase,
            Some(code),
            Duration::from_secs(3600 - i as u64 * 5),
        ));
    }
    let gate = env.dir.0.join("gate");
    env.spawn_script(
        "T999",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done; echo 'asdo: done 0123abcd'",
            gate.display()
        ),
    );
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t999", "Running", Duration::from_secs(30))
    );
    let (ui, url) = start_ui(&env);
    let mut driver = Command::new(py);
    driver
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ui_bench.py"))
        .env("ASDO_UI_URL", &url)
        .env("ASDO_NS", NS)
        .env("ASDO_GATE", &gate);
    let run = run_with_timeout(driver, Duration::from_secs(400));
    let status = std::fs::read_to_string(format!("/proc/{}/status", ui.id())).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    unsafe { libc::kill(ui.id() as i32, libc::SIGINT) };
    let served = wait_output(ui, Duration::from_secs(30));
    assert_eq!(run.code, 0, "{run:?}\n{served:?}");
    println!(
        "ui bench (500 finished task pods + 1 running): {} asdo ui peak RSS {}",
        run.stdout.trim(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
}
