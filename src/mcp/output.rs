//! The tools' results as data. Every tool that reports tasks runs its child asdo with
//! `-o json` and returns the task object of `src/task.schema.json` (the one the CLI
//! prints) as `structuredContent`: `task_status` and `spawn_task` the object itself,
//! the tools about several tasks an object holding them (`{"tasks": [...]}`: MCP wants
//! an object at the top level). Their `outputSchema` is built from that same file, so
//! the schema the CLI documents and the one MCP declares cannot disagree. The tools
//! whose verbs print no task (`task_logs`, `answer_task`) keep a struct whose JSON
//! Schema is derived from the type.

use std::sync::Arc;

use rmcp::model::JsonObject;
use rmcp::schemars;
use serde::Serialize;
use serde_json::{Value, json};

/// The task object's JSON Schema, as the CLI documents it.
const TASK_SCHEMA: &str = include_str!("../task.schema.json");

/// The task schema as a `$defs` entry: without `$schema`/`$id`, which only the
/// document's root may carry.
fn task_def() -> Value {
    let mut v: Value = serde_json::from_str(TASK_SCHEMA).expect("src/task.schema.json is JSON");
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    v
}

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => unreachable!("a schema built here is an object"),
    }
}

/// `task_status`, `spawn_task`: the task object itself.
pub fn task_schema() -> Arc<JsonObject> {
    object(serde_json::from_str(TASK_SCHEMA).expect("src/task.schema.json is JSON"))
}

/// An object holding `tasks` (task objects) and `extra` properties, all required.
fn tasks_schema(description: &str, extra: Value) -> Arc<JsonObject> {
    let mut properties = json!({
        "tasks": {"type": "array", "items": {"$ref": "#/$defs/task"}}
    });
    let mut required = vec![Value::from("tasks")];
    if let (Some(p), Value::Object(extra)) = (properties.as_object_mut(), extra) {
        for (k, v) in extra {
            required.push(Value::from(k.clone()));
            p.insert(k, v);
        }
    }
    object(json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
        "$defs": {"task": task_def()},
    }))
}

/// `list_tasks`.
pub fn list_schema() -> Arc<JsonObject> {
    tasks_schema("The tasks, as `asdo list -o json` prints them.", json!({}))
}

/// `wait_tasks`.
pub fn wait_schema() -> Arc<JsonObject> {
    tasks_schema(
        "The tasks in the order they ended, as `asdo wait -o json` prints them.",
        json!({
            "all_succeeded": {"type": "boolean", "description": "Every task succeeded."},
            "timed_out": {"type": "boolean", "description": "The timeout passed before every task ended."},
            "exit_code": {"type": "integer", "description": "`asdo wait`'s exit code: 0 all succeeded, 1 some failed, 124 timed out."},
        }),
    )
}

/// `cleanup_tasks`.
pub fn cleanup_schema() -> Arc<JsonObject> {
    tasks_schema(
        "The tasks deleted (or, for a dry run, that would be), as `asdo cleanup -o json` prints them.",
        json!({"dry_run": {"type": "boolean", "description": "Only shown: nothing was deleted."}}),
    )
}

/// `send_message`: `asdo send -o json`'s object, the reply bounded.
pub fn send_schema() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "required": ["task", "session_id", "outcome", "reply", "error", "truncated"],
        "properties": {
            "task": {"description": "The task after the message (null when it could not be read).",
                "anyOf": [{"$ref": "#/$defs/task"}, {"type": "null"}]},
            "session_id": {"type": ["string", "null"], "description": "The OpenCode session the message went to."},
            "outcome": {"type": "string", "enum": ["answered", "failed", "timed-out"]},
            "reply": {"type": "string", "description": "The session's answer (newest kept)."},
            "error": {"type": ["string", "null"]},
            "truncated": {"type": "boolean", "description": "The reply was cut (its start left out)."},
        },
        "$defs": {"task": task_def()},
    }))
}

/// One task object from a child's JSON (a line of `wait -o json`, `spawn -o json`,
/// `status -o json`): None unless it is an object with an id.
pub fn task(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    v["id"].is_string().then_some(v)
}

/// A JSON array of task objects (`list -o json`, `cleanup -o json`).
pub fn tasks(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str(text.trim()).ok()? {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// `T1 Succeeded exit=0 commit=abc1234 specs/1/T1`: one task in a line, for the text
/// content and progress messages.
pub fn line(task: &Value) -> String {
    let s = |k: &str| task[k].as_str();
    let mut out = format!("{} {}", s("id").unwrap_or("?"), s("phase").unwrap_or("?"));
    if let Some(r) = s("reason") {
        out.push_str(&format!(" ({r})"));
    }
    match task["exit_code"].as_i64() {
        Some(c) => out.push_str(&format!(" exit={c}")),
        None => out.push_str(" exit=-"),
    }
    for (key, label) in [
        ("commit", "commit"),
        ("failed_step", "failed-step"),
        ("pr_url", "pr"),
    ] {
        if let Some(v) = s(key) {
            out.push_str(&format!(" {label}={v}"));
        }
    }
    if let Some(b) = s("branch") {
        out.push_str(&format!(" {b}"));
    }
    out
}

/// Lines for several tasks, or `none` when there are none.
pub fn lines(tasks: &[Value], none: &str) -> String {
    if tasks.is_empty() {
        return none.to_string();
    }
    tasks.iter().map(line).collect::<Vec<_>>().join("\n")
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
            "reason": "no-changes", "exit_code": 3, "branch": "specs/1/T1", "commit": null}]"#;
        let list = tasks(out).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(line(&list[0]), "T1 Failed (no-changes) exit=3 specs/1/T1");
        assert_eq!(tasks("[]").unwrap(), Vec::<Value>::new());
        assert_eq!(tasks("{}"), None);
        assert_eq!(lines(&[], "none"), "none");
    }

    #[test]
    fn a_task_is_an_object_with_an_id() {
        let t = task(r#"{"id": "T1", "phase": "Succeeded", "exit_code": 0, "commit": "abc"}"#);
        assert_eq!(line(&t.unwrap()), "T1 Succeeded exit=0 commit=abc");
        assert_eq!(task("T1 Succeeded exit=0"), None);
        assert_eq!(task("[]"), None);
    }

    #[test]
    fn schemas_embed_the_task_schema() {
        let file: Value = serde_json::from_str(TASK_SCHEMA).unwrap();
        assert_eq!(Value::Object((*task_schema()).clone()), file);
        for s in [
            list_schema(),
            wait_schema(),
            cleanup_schema(),
            send_schema(),
        ] {
            assert_eq!(s["type"], "object");
            let def = &s["$defs"]["task"];
            assert_eq!(def["properties"], file["properties"]);
            assert_eq!(def["required"], file["required"]);
            assert!(def.get("$id").is_none());
        }
    }
}
