//! The task object (src/task.schema.json) as the verbs print it with `-o json`, checked
//! against the schema by Python's `jsonschema` (an independent validator), and the STATUS
//! reasons `list` and `status` show for pods the fake API server's kubelet really ran.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Every document must be valid against the schema (see tests/support/task_schema.rs).
fn assert_valid(env: &Env, what: &str, docs: &[Value]) {
    crate::support::task_schema::assert_valid(&env.dir.0, what, docs)
}

fn json(r: &Run) -> Value {
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

fn json_lines(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {r:?}")))
        .collect()
}

const DONE: &str = "echo 'asdo: opencode session ses_abc123 on http://127.0.0.1:4096'; \
    echo '· write src/a.rs'; \
    echo 'asdo: summary: files 2, tokens 240 in / 60 out, cost $0.0123'; \
    echo 'asdo: pr https://forge.example/o/r/pull/7'; echo 'asdo: done 0123abcd'";
/// What the agent prints when the model changed no file and no-ops are not allowed.
const NO_CHANGES: &str = "echo 'asdo: summary: files 0, tokens 90 in / 10 out'; \
    echo 'asdo: failed no-changes: \"Done!\"'; exit 16";

#[test]
fn every_json_output_is_a_task_object_the_schema_accepts() {
    let env = Env::new();
    // spawn -o json: the task it created, one object per line.
    let values = env.script_values(DONE);
    let r = env.asdo(&spawn_args("T1", &["-f", path_str(&values), "-o", "json"]));
    let spawned = json_lines(&r);
    assert_eq!(spawned.len(), 1, "{r:?}");
    assert_eq!(spawned[0]["id"], "T1");
    assert!(r.stderr.contains("pod/agent-t1 created"), "{r:?}");
    let values = env.script_values(NO_CHANGES);
    let r = env.asdo(&[
        "spawn",
        "--task-id",
        "T2",
        "--branch",
        "specs/001-auth/T2-async",
        "--repo",
        REPO,
        "-f",
        path_str(&values),
        "-o",
        "json",
    ]);
    let mut docs = spawned;
    docs.extend(json_lines(&r));

    // wait -o json: one task object per line as each ends.
    let r = env.asdo(&["wait", "T1", "T2", "--timeout", "2m", "-o", "json"]);
    assert_eq!(r.code, 1, "T2 failed: {r:?}");
    let ended = json_lines(&r);
    assert_eq!(ended.len(), 2, "{r:?}");
    let t1 = ended.iter().find(|t| t["id"] == "T1").unwrap();
    assert_eq!(t1["status"], "Succeeded");
    assert_eq!(t1["commit"], "0123abcd");
    assert_eq!(t1["pr_url"], "https://forge.example/o/r/pull/7");
    assert_eq!(
        (t1["tokens_in"].as_u64(), t1["cost"].as_f64()),
        (Some(240), Some(0.0123))
    );
    assert_eq!(t1["session_id"], "ses_abc123");
    assert_eq!(t1["last_step"], "write src/a.rs");
    let t2 = ended.iter().find(|t| t["id"] == "T2").unwrap();
    assert_eq!(t2["status"], "Failed (no-changes)", "{t2}");
    assert_eq!(
        (t2["exit_code"].as_i64(), t2["failed_step"].as_str()),
        (Some(16), Some("no-changes"))
    );
    docs.extend(ended);

    // status -o json: one object; -o yaml the same object.
    let status = json(&env.asdo(&["status", "T2", "-o", "json"]));
    assert_eq!(status["status"], "Failed (no-changes)");
    assert_eq!(status["message"], "\"Done!\"");
    let yaml = env.asdo(&["status", "T2", "-o", "yaml"]);
    assert!(
        yaml.stdout.contains("status: Failed (no-changes)\n"),
        "{yaml:?}"
    );
    docs.push(status);

    // list -o json: an array of task objects, no longer Pods.
    let list = json(&env.asdo(&["list", "-o", "json"]));
    let list = list.as_array().expect("an array").clone();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|t| t.get("kind").is_none() && t["id"].is_string())
    );
    assert_eq!(
        list[0]["tokens_out"], 60,
        "list reads the agent's totals: {}",
        list[0]
    );
    docs.extend(list);

    // cleanup -o json: the tasks it removed.
    let removed = json(&env.asdo(&["cleanup", "-o", "json"]));
    let removed = removed.as_array().unwrap().clone();
    let ids: Vec<&str> = removed.iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{removed:?}");
    assert!(env.server.pods(NS).is_empty());
    docs.extend(removed);
    assert_eq!(
        json(&env.asdo(&["cleanup", "-o", "json"])),
        Value::Array(vec![])
    );

    assert_valid(&env, "every verb", &docs);
}

/// A long run: the agent announced its session once, early, and the last 40 lines (the
/// tail every reader fetches) no longer hold it. The task object still names it: the
/// log's head is read for it.
#[test]
fn a_long_runs_session_id_comes_from_the_head_of_its_log() {
    let env = Env::new();
    let values = env.script_values(
        "echo 'asdo: opencode session ses_0a1b2c3d4e5fAbCdEfGhIjKlMn on http://127.0.0.1:4096'; \
         i=1; while [ $i -le 200 ]; do echo \"· bash step $i\"; i=$((i+1)); done; \
         echo 'asdo: summary: files 1, tokens 10 in / 5 out'; echo 'asdo: done 0123abcd'",
    );
    let r = env.asdo(&spawn_args("LONG1", &["-f", path_str(&values)]));
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.asdo(&["wait", "LONG1", "--timeout", "2m", "-o", "json"]);
    let ended = json_lines(&r);
    assert_eq!(ended.len(), 1, "{r:?}");
    assert_eq!(ended[0]["commit"], "0123abcd", "{r:?}");
    assert_eq!(ended[0]["last_step"], "bash step 200", "{r:?}");
    assert_eq!(
        ended[0]["session_id"], "ses_0a1b2c3d4e5fAbCdEfGhIjKlMn",
        "{r:?}"
    );
    assert_valid(&env, "wait -o json", &ended);
    // Every reader of the task object through the runtime names it too: status and list.
    let r = env.asdo(&["status", "LONG1", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let status: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        status["session_id"], "ses_0a1b2c3d4e5fAbCdEfGhIjKlMn",
        "{r:?}"
    );
    let r = env.asdo(&["list", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let listed: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let row = listed
        .as_array()
        .and_then(|a| a.iter().find(|t| t["id"] == "LONG1"))
        .unwrap_or_else(|| panic!("listed: {r:?}"));
    assert_eq!(row["session_id"], "ses_0a1b2c3d4e5fAbCdEfGhIjKlMn", "{r:?}");
}

#[test]
fn statuses_say_why_as_kubectl_does() {
    let env = Env::new();
    // The git token Secret does not exist: the kubelet reports CreateContainerConfigError.
    let r = env.asdo(&spawn_args(
        "T7",
        &[
            "--set",
            "pod.gitTokenSecret.enabled=true",
            "--set",
            "pod.gitTokenSecret.name=no-such-secret",
        ],
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let running = env.spawn_script("T8", "echo '· bash cargo test --all'; sleep 60");
    let nothing = env.spawn_script("T9", NO_CHANGES);
    assert!(eventually(Duration::from_secs(30), || {
        env.kubectl_pod("agent-t7")["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    }));
    assert!(
        env.server
            .wait_for_phase(NS, &nothing, "Failed", Duration::from_secs(30))
    );
    assert!(eventually(Duration::from_secs(30), || {
        env.kubectl(&["logs", &running, "-n", NS])
            .stdout
            .contains("cargo test")
    }));

    let r = env.asdo(&["list"]);
    assert_eq!(r.code, 0, "{r:?}");
    let line = |id: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id}: {r:?}"))
            .to_string()
    };
    assert!(
        r.stdout.lines().next().unwrap().contains(" STATUS "),
        "{r:?}"
    );
    assert!(
        line("T7").contains(" Pending (CreateContainerConfigError) "),
        "{r:?}"
    );
    assert!(line("T9").contains(" Failed (no-changes) "), "{r:?}");
    // A running agent's last step, in the STEP column.
    assert!(line("T8").contains(" Running "), "{r:?}");
    assert!(line("T8").ends_with("bash cargo test --all"), "{r:?}");

    let stuck = json(&env.asdo(&["status", "T7", "-o", "json"]));
    assert_eq!(stuck["phase"], "Pending");
    assert_eq!(stuck["reason"], "CreateContainerConfigError");
    assert!(
        stuck["message"]
            .as_str()
            .unwrap()
            .contains("no-such-secret"),
        "{stuck}"
    );
    let text = env.asdo(&["status", "T7"]);
    assert!(
        text.stdout
            .contains("Status:      Pending (CreateContainerConfigError)\n"),
        "{text:?}"
    );
    // --phase Failed selects the no-changes failure alone.
    let r = env.asdo(&["list", "--phase", "failed", "-o", "name"]);
    assert_eq!(r.stdout, "pod/agent-t9\n", "{r:?}");
    assert_valid(&env, "reasons", &[stuck]);
    env.asdo(&["cleanup", "--all", "--force"]);
}
