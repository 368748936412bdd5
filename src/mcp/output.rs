//! The tools' results as data: one struct per tool, whose JSON Schema is the tool's
//! `outputSchema` and whose value is the call's `structuredContent` (the schema and
//! the value come from the same type, so they cannot disagree).
//!
//! Where the child asdo prints JSON (`list -o json`, `spawn -o json`) the result is
//! built from that JSON only. `status`, `wait` and `cleanup` have no `-o json` yet:
//! their results are read from the lines the CLI prints today, in the least fragile
//! way (fixed row labels, `key=value` words), each marked `TODO(-o json)` to switch
//! to the task object once those verbs print it.

use rmcp::schemars;
use serde::Serialize;
use serde_json::Value;

/// A task pod as the tools report it: the few fields a caller acts on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TaskSummary {
    /// Task id (the pod's task-id label).
    pub task_id: Option<String>,
    /// Pod name, agent-<task id lowercased>.
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// Pod phase: Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<String>,
    /// The agent container's exit code, once it ended.
    pub exit_code: Option<i64>,
    /// Git branch the agent works on.
    pub branch: Option<String>,
    /// Git repository URL.
    pub repo: Option<String>,
}

impl TaskSummary {
    /// From one task object (src/task.schema.json), as `asdo list -o json` prints
    /// them in an array.
    pub fn of_task(task: &Value) -> TaskSummary {
        let s = |k: &str| task[k].as_str().map(str::to_string);
        TaskSummary {
            task_id: s("id"),
            pod: s("pod"),
            namespace: s("namespace"),
            phase: s("phase"),
            exit_code: task["exit_code"].as_i64(),
            branch: s("branch"),
            repo: s("repo"),
        }
    }

    /// From one Pod object (`asdo spawn -o json`).
    pub fn of_pod(pod: &Value) -> TaskSummary {
        let m = &pod["metadata"];
        let s = |v: &Value| v.as_str().map(str::to_string);
        let exit_code = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == crate::task::CONTAINER))
            .and_then(|c| c["state"]["terminated"]["exitCode"].as_i64());
        TaskSummary {
            task_id: s(&m["labels"][crate::task::LABEL_TASK_ID]),
            pod: s(&m["name"]),
            namespace: s(&m["namespace"]),
            phase: s(&pod["status"]["phase"]),
            exit_code,
            branch: s(&m["annotations"][crate::task::ANN_BRANCH]),
            repo: s(&m["annotations"][crate::task::ANN_REPO]),
        }
    }

    /// `T1 Running specs/1/T1`, one line of a listing.
    pub fn line(&self) -> String {
        let exit = self
            .exit_code
            .map_or(String::new(), |c| format!(" exit={c}"));
        format!(
            "{} {}{exit} {}",
            self.task_id.as_deref().unwrap_or("?"),
            self.phase.as_deref().unwrap_or("?"),
            self.branch.as_deref().unwrap_or("")
        )
    }
}

/// `spawn_task`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Spawned {
    /// The task's pod as the API server holds it after the call (or, for a dry run,
    /// as it would be created).
    #[serde(flatten)]
    pub task: TaskSummary,
    /// Only rendered: nothing was created.
    pub dry_run: bool,
    /// The rendered pod manifest, for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Value>,
}

/// `list_tasks`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
}

/// `list_tasks` from `asdo list -o json` (an array of task objects).
pub fn task_list(stdout: &str) -> Option<TaskList> {
    let list: Value = serde_json::from_str(stdout).ok()?;
    Some(TaskList {
        tasks: list.as_array()?.iter().map(TaskSummary::of_task).collect(),
    })
}

/// `task_status`: the rows `asdo status` shows.
#[derive(Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Status {
    pub task_id: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub phase: Option<String>,
    pub exit_code: Option<i64>,
    /// Why the container ended, when the code is not all (OOMKilled, Error, …).
    pub termination_reason: Option<String>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub node: Option<String>,
    /// RFC 3339 times, each with how long ago.
    pub created: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Why the container waits (ImagePullBackOff: …), while it does.
    pub waiting: Option<String>,
    /// The pod's own reason (DeadlineExceeded: …), when it has one.
    pub reason: Option<String>,
    /// The agent's last `asdo:` marker line.
    pub last_marker: Option<String>,
    pub pull_request: Option<String>,
    /// What the agent is doing now.
    pub last_step: Option<String>,
    /// The agent's token and cost totals.
    pub agent: Option<String>,
    /// The pod's recent Events, one line each (type, reason, age, message).
    pub events: Vec<String>,
}

/// `task_status` from `asdo status`'s `Label: value` rows and its `Events:` lines.
/// TODO(-o json): read `asdo status -o json`'s task object instead.
pub fn status(stdout: &str) -> Status {
    let mut st = Status::default();
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        if line == "Events:" {
            break;
        }
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let v = (value != "-" && !value.is_empty()).then(|| value.to_string());
        match label {
            "Task" => st.task_id = v,
            // `agent-t1 (namespace ns)`
            "Pod" => {
                let (pod, ns) = match value.split_once(" (namespace ") {
                    Some((p, rest)) => (p, rest.strip_suffix(')')),
                    None => (value, None),
                };
                st.pod = Some(pod.to_string());
                st.namespace = ns.filter(|n| *n != "-").map(str::to_string);
            }
            "Phase" => st.phase = v,
            // `1 (Error)` or `0`
            "Exit code" => {
                let (code, reason) = match value.split_once(" (") {
                    Some((c, r)) => (c, r.strip_suffix(')')),
                    None => (value, None),
                };
                st.exit_code = code.parse().ok();
                st.termination_reason = reason.map(str::to_string);
            }
            "Branch" => st.branch = v,
            "Repo" => st.repo = v,
            "Node" => st.node = v,
            "Created" => st.created = v,
            "Started" => st.started = v,
            "Finished" => st.finished = v,
            "Waiting" => st.waiting = v,
            "Reason" => st.reason = v,
            "Last marker" => st.last_marker = v,
            "Pull request" => st.pull_request = v,
            "Last step" => st.last_step = v,
            "Agent" => st.agent = v,
            _ => {}
        }
    }
    st.events = lines
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "<none>" && !l.starts_with('('))
        .map(str::to_string)
        .collect();
    st
}

/// `task_logs`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Logs {
    pub task_id: String,
    /// The newest lines, at most max_bytes.
    pub log: String,
    pub lines: usize,
    /// Older lines were left out.
    pub truncated: bool,
    /// `asdo logs`' exit code: the task's own once it ended (0 while it runs).
    pub exit_code: i32,
}

/// One task's end, as `wait_tasks` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Ended {
    pub task_id: String,
    /// Succeeded, Failed, or TimedOut(<what it still was>).
    pub phase: String,
    pub exit_code: Option<i64>,
    /// How long it ran, e.g. 3m12s.
    pub duration: Option<String>,
    /// The commit it pushed.
    pub commit: Option<String>,
    /// It ended without changing anything.
    pub no_changes: bool,
    /// The agent step that failed.
    pub failed_step: Option<String>,
    /// Why it failed (the agent's reason, or the container's: OOMKilled, DeadlineExceeded).
    pub reason: Option<String>,
    pub pr_url: Option<String>,
    /// Input/output tokens, e.g. 1200/340.
    pub tokens: Option<String>,
    /// e.g. $0.0123
    pub cost: Option<String>,
    /// The line `asdo wait` printed.
    pub line: String,
}

/// One line of `asdo wait`: `T1 Succeeded exit=0 duration=3s commit=abc pr=… tokens=1/2`.
/// The phase may hold spaces (`TimedOut(Pending: ImagePullBackOff: …)`), so it runs to
/// ` exit=`; after it, `key=value` words, the failure reason Rust-quoted.
/// TODO(-o json): read `asdo wait -o json`'s task objects instead.
pub fn ended(line: &str) -> Option<Ended> {
    let (task, rest) = line.split_once(' ')?;
    let (phase, mut rest) = rest.split_once(" exit=")?;
    rest = rest.trim_start();
    let mut e = Ended {
        task_id: task.to_string(),
        phase: phase.to_string(),
        line: line.to_string(),
        ..Ended::default()
    };
    let mut key = "exit";
    loop {
        let (value, after) = if let Some(q) = rest.strip_prefix('"') {
            quoted(q)?
        } else if key == "commit" && rest.starts_with("none (no changes)") {
            ("none".to_string(), &rest["none (no changes)".len()..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        let v = (value != "-").then_some(value);
        match key {
            "exit" => e.exit_code = v.and_then(|c| c.parse().ok()),
            "duration" => e.duration = v,
            "reason" => e.reason = v,
            "commit" if v.as_deref() == Some("none") => e.no_changes = true,
            "commit" => e.commit = v,
            "failed-step" => e.failed_step = v,
            "pr" => e.pr_url = v,
            "tokens" => e.tokens = v,
            "cost" => e.cost = v,
            _ => {}
        }
        rest = after.trim_start();
        if rest.is_empty() {
            return Some(e);
        }
        let (k, r) = rest.split_once('=')?;
        key = k;
        rest = r;
    }
}

/// A Rust `{:?}` string's body (after its opening quote): the text and what follows.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `wait_tasks`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Waited {
    /// Every task succeeded.
    pub all_succeeded: bool,
    /// The timeout passed before every task ended.
    pub timed_out: bool,
    /// `asdo wait`'s exit code: 0 all succeeded, 1 some failed, 124 timed out.
    pub exit_code: i32,
    /// One entry per task, in the order they ended.
    pub tasks: Vec<Ended>,
}

/// `send_message`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Reply {
    pub task_id: String,
    /// The session's answer, as `asdo send` streams it (newest kept).
    pub reply: String,
    pub truncated: bool,
    /// No answer before the timeout.
    pub timed_out: bool,
}

/// One pod `cleanup_tasks` deleted (or would).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Cleaned {
    pub pod: String,
    /// What `asdo cleanup` did: `deleted`, or `deleted (dry run)`.
    pub action: String,
}

/// `cleanup_tasks`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Cleanup {
    /// The pods, by name.
    pub pods: Vec<String>,
    pub actions: Vec<Cleaned>,
    pub dry_run: bool,
}

/// `cleanup_tasks` from `asdo cleanup`'s `pod/NAME ACTION` lines.
/// TODO(-o json): read `asdo cleanup -o json`'s task objects instead.
pub fn cleanup(stdout: &str, dry_run: bool) -> Cleanup {
    let actions: Vec<Cleaned> = stdout
        .lines()
        .filter_map(|l| {
            let (pod, action) = l.strip_prefix("pod/")?.split_once(' ')?;
            Some(Cleaned {
                pod: pod.to_string(),
                action: action.trim().to_string(),
            })
        })
        .collect();
    Cleanup {
        pods: actions.iter().map(|a| a.pod.clone()).collect(),
        actions,
        dry_run,
    }
}

/// `answer_task`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Answered {
    pub task_id: String,
    pub request_id: String,
    pub answers: Vec<String>,
    /// What happens next, as `asdo answer` says it.
    pub note: String,
}

/// A tool's `isError` result: the CLI's one-line message and its exit code.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Failure {
    pub exit_code: i32,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_reads_the_task_array() {
        // `asdo list -o json` prints task objects, not a List of Pods (the old reader
        // looked for `items` and found none).
        let out = r#"[{"id": "T1", "pod": "agent-t1", "namespace": "ns", "phase": "Failed",
            "exit_code": 3, "branch": "specs/1/T1", "repo": "git@h:o/r.git"}]"#;
        let list = task_list(out).unwrap();
        assert_eq!(list.tasks.len(), 1);
        assert_eq!(list.tasks[0].task_id.as_deref(), Some("T1"));
        assert_eq!(list.tasks[0].phase.as_deref(), Some("Failed"));
        assert_eq!(list.tasks[0].exit_code, Some(3));
        assert_eq!(task_list("[]").unwrap().tasks, []);
    }

    #[test]
    fn wait_lines_become_fields() {
        let e = ended("T1 Succeeded exit=0 duration=3s commit=abc1234 pr=https://h/p/1 tokens=10/20 cost=$0.0100").unwrap();
        assert_eq!(e.task_id, "T1");
        assert_eq!(e.phase, "Succeeded");
        assert_eq!(e.exit_code, Some(0));
        assert_eq!(e.duration.as_deref(), Some("3s"));
        assert_eq!(e.commit.as_deref(), Some("abc1234"));
        assert_eq!(e.pr_url.as_deref(), Some("https://h/p/1"));
        assert_eq!(e.tokens.as_deref(), Some("10/20"));
        assert_eq!(e.cost.as_deref(), Some("$0.0100"));

        let e = ended("T2 Failed exit=3 duration=1m reason=OOMKilled failed-step=push reason=\"remote said \\\"no\\\" twice\"").unwrap();
        assert_eq!(e.exit_code, Some(3));
        assert_eq!(e.failed_step.as_deref(), Some("push"));
        assert_eq!(e.reason.as_deref(), Some("remote said \"no\" twice"));

        let e = ended("T3 Succeeded exit=0 duration=- commit=none (no changes)").unwrap();
        assert!(e.no_changes);
        assert_eq!((e.commit, e.duration), (None, None));

        let e =
            ended("T4 TimedOut(Pending: ImagePullBackOff: back-off pulling x) exit=- duration=-")
                .unwrap();
        assert_eq!(
            e.phase,
            "TimedOut(Pending: ImagePullBackOff: back-off pulling x)"
        );
        assert_eq!(e.exit_code, None);

        assert_eq!(ended("No task pods in namespace x."), None);
    }

    #[test]
    fn status_rows_become_fields() {
        let out = "Task:        T1
Pod:         agent-t1 (namespace ns)
Phase:       Failed
Exit code:   137 (OOMKilled)
Branch:      specs/1/T1
Repo:        -
Last marker: asdo: failed push: \"denied\"
Events:
  Normal   Scheduled            4s       Successfully assigned ns/agent-t1
";
        let st = status(out);
        assert_eq!(st.task_id.as_deref(), Some("T1"));
        assert_eq!(st.pod.as_deref(), Some("agent-t1"));
        assert_eq!(st.namespace.as_deref(), Some("ns"));
        assert_eq!(st.exit_code, Some(137));
        assert_eq!(st.termination_reason.as_deref(), Some("OOMKilled"));
        assert_eq!(st.repo, None);
        assert_eq!(
            st.last_marker.as_deref(),
            Some("asdo: failed push: \"denied\"")
        );
        assert_eq!(st.events.len(), 1);
        assert!(st.events[0].starts_with("Normal"));
        assert_eq!(status("Events:\n  <none>\n").events, Vec::<String>::new());
    }

    #[test]
    fn cleanup_lines_become_pods() {
        let c = cleanup(
            "pod/agent-t1 deleted\npod/agent-t2 deleted (dry run)\n",
            false,
        );
        assert_eq!(c.pods, ["agent-t1", "agent-t2"]);
        assert_eq!(c.actions[1].action, "deleted (dry run)");
    }
}
