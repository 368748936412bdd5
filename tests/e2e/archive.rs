//! `asdo cleanup --save-logs DIR`: every deleted pod's full log and summary are on disk
//! first, and a pod whose log could not be read is kept.

use std::time::Duration;

use crate::common::*;

fn archived(dir: &std::path::Path, pod: &str, ext: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir.join(NS))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("{pod}-")) && n.ends_with(ext)
        })
}

#[test]
fn cleanup_saves_logs_before_deleting_and_keeps_what_it_could_not_save() {
    let env = Env::new();
    let script = "echo 'asdo: cloning'; \
                  echo 'asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096'; \
                  i=0; while [ $i -lt 2000 ]; do \
                  echo \"line $i of the transcript\"; i=$((i+1)); done; echo 'asdo: done 0a1b2c3d'";
    let ok = env.spawn_script("T1", script);
    let bad = env.spawn_script("T2", "echo 'asdo: failed agent: opencode exited 3'; exit 3");
    let limit = Duration::from_secs(30);
    assert!(env.server.wait_for_phase(NS, &ok, "Succeeded", limit));
    assert!(env.server.wait_for_phase(NS, &bad, "Failed", limit));
    let k = env.kubectl(&["logs", &ok, "-n", NS, "-c", "agent"]);
    assert_eq!(k.code, 0, "{k:?}");
    let full_log = k.stdout;
    assert!(
        full_log.ends_with("asdo: done 0a1b2c3d\n") && full_log.len() > 40_000,
        "{} bytes, ends {:?}",
        full_log.len(),
        &full_log[full_log.len().saturating_sub(80)..]
    );

    // The API refuses T2's log once: T2 must stay, T1 must go with its log on disk.
    let archive = TempDir::new("archive");
    env.server
        .fail_next_matching(1, 500, "GET", &format!("{bad}/log"));
    let r = env.asdo(&["cleanup", "--save-logs", archive.0.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains(&format!("pod/{ok} deleted")), "{r:?}");
    assert!(!r.stdout.contains(&bad), "{r:?}");
    assert!(r.stderr.contains(&format!("pod/{bad} kept")), "{r:?}");
    assert!(env.server.pod(NS, &ok).is_none(), "T1 was deleted");
    assert!(env.server.pod(NS, &bad).is_some(), "T2 was kept");

    let log = archived(&archive.0, &ok, ".log").expect("T1's log file");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), full_log);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(archived(&archive.0, &ok, ".json").unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["id"], "T1");
    assert_eq!(summary["phase"], "Succeeded");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["commit"], "0a1b2c3d");
    // Announced 2000 lines before the end: from the whole log, not its tail.
    assert_eq!(summary["session_id"], "ses_0a1b2c3d4e5fAbCdEfGhIjKlMn");
    assert_eq!(summary["branch"], "specs/001-auth/T1-async");
    assert_eq!(summary["log_bytes"], full_log.len());
    assert!(summary["finished"].is_string(), "{summary}");
    assert!(
        archived(&archive.0, &bad, ".json").is_none(),
        "nothing half-written for T2"
    );

    // Next run: T2's log is readable, so it is saved and deleted.
    let r = env.asdo(&["cleanup", "--save-logs", archive.0.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(env.server.pod(NS, &bad).is_none());
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(archived(&archive.0, &bad, ".json").unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["status"], "Failed (agent)");
    assert_eq!(s["failed_step"], "agent");
    assert_eq!(s["message"], "opencode exited 3");
}

#[test]
fn cleanup_refuses_an_unusable_archive_before_any_request() {
    let env = Env::new();
    let pod = env.spawn_script("T3", "echo hi");
    assert!(
        env.server
            .wait_for_phase(NS, &pod, "Succeeded", Duration::from_secs(30))
    );
    let file = env.write("not-a-dir", "x");
    env.server.clear_requests();
    let target = file.join("archive");
    let r = env.asdo(&["cleanup", "--save-logs", target.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--save-logs"), "{r:?}");
    assert!(
        env.server.requests().is_empty(),
        "no request before the archive is usable"
    );
    assert!(env.server.pod(NS, &pod).is_some());
}
