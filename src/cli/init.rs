//! `asdo init opencode`: registers `asdo mcp` as a local MCP server in a project's
//! OpenCode config (`opencode.json`) and adds a subagent (`.opencode/agent/asdo.md`)
//! that runs [ASYNC] tasks through those tools. A user's file is never rewritten:
//! the `mcp.asdo` entry is inserted as text into it (everything else stays byte for
//! byte), and anything that cannot be merged that way is refused with the difference.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::error::{Error, Result, exit};

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(subcommand)]
    pub target: InitTarget,
}

#[derive(Debug, Subcommand)]
pub enum InitTarget {
    /// Register `asdo mcp` in opencode.json and add the asdo subagent.
    #[command(after_help = "Writes (or merges into):
  opencode.json              \"mcp\": {\"asdo\": {\"type\": \"local\", \"command\": [\"asdo\", \"mcp\"], \"enabled\": true}}
  .opencode/agent/asdo.md    a subagent that spawns, follows and reports [ASYNC] tasks
An existing entry or file that differs is left alone: the command says what differs, exit 1.")]
    Opencode(OpencodeArgs),
}

#[derive(Debug, Args)]
pub struct OpencodeArgs {
    /// The project directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The command OpenCode runs for the MCP server (default: asdo mcp). Global flags
    /// such as -e prod or -n NAMESPACE may follow.
    #[arg(long = "command", value_name = "ARG", num_args = 1.., allow_hyphen_values = true, default_values = ["asdo", "mcp"])]
    pub command: Vec<String>,
}

const CONFIG: &str = "opencode.json";
const AGENT: &str = ".opencode/agent/asdo.md";

/// The subagent: what a main OpenCode session delegates [ASYNC] tasks to.
const AGENT_MD: &str = r#"---
description: Runs [ASYNC] tasks as asdo task pods (one pod and one git branch per task), follows them and reports back
mode: subagent
tools:
  asdo_*: true
---
You delegate tasks marked [ASYNC] to asdo, which runs each one as an OpenCode agent in its own
Kubernetes pod, on its own git branch, and pushes the result.

For each task you are given:
1. Call `asdo_spawn_task` with `task_id` (e.g. T001), `branch` (e.g. specs/001-auth/T001-async),
   `repo` (the git remote URL), `prompt` (what to do, with the spec's context) and, for spec-kit,
   `context_dir` (the feature directory). A tool error is bad input: fix the argument, do not retry blindly.
2. Follow it with `asdo_wait_tasks` (`task_ids`, `timeout`), or `asdo_task_status` and
   `asdo_task_logs` (`tail`) while it runs.
3. If a task is going the wrong way, steer it with `asdo_send_message` (`task_id`, `message`).
4. Report back, per task: its final phase and exit code, the commit it pushed (from the wait
   result), or the failing step and the last log lines. Never report a task as done unless
   `asdo_wait_tasks` says it Succeeded.
5. When asked to tidy up, `asdo_cleanup_tasks` deletes finished task pods.
"#;

pub fn run(args: InitArgs) -> Result<i32> {
    let InitTarget::Opencode(a) = args.target;
    if !a.dir.is_dir() {
        return Err(Error::usage(format!(
            "--dir {} is not a directory",
            a.dir.display()
        )));
    }
    let entry = json!({"type": "local", "command": a.command, "enabled": true});
    let mut refused = false;
    let config = a.dir.join(CONFIG);
    match write_config(&config, &entry)? {
        Outcome::Written(how) => println!("{how} {}", config.display()),
        Outcome::Unchanged => println!("unchanged {} (asdo already registered)", config.display()),
        Outcome::Refused(why) => {
            refused = true;
            eprintln!("error: {}: {why}", config.display());
        }
    }
    let agent = a.dir.join(AGENT);
    match write_agent(&agent)? {
        Outcome::Written(how) => println!("{how} {}", agent.display()),
        Outcome::Unchanged => println!("unchanged {}", agent.display()),
        Outcome::Refused(why) => {
            refused = true;
            eprintln!("error: {}: {why}", agent.display());
        }
    }
    Ok(if refused { exit::FAILURE } else { exit::OK })
}

enum Outcome {
    Written(&'static str),
    Unchanged,
    Refused(String),
}

fn write_config(path: &Path, entry: &Value) -> Result<Outcome> {
    let fresh = serde_json::to_string_pretty(&json!({
        "$schema": "https://opencode.ai/config.json",
        "mcp": {"asdo": entry},
    }))
    .expect("JSON");
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomic(path, &(fresh + "\n"))?;
            return Ok(Outcome::Written("created"));
        }
        Err(e) => return Err(Error::other(format!("cannot read {}: {e}", path.display()))),
    };
    match merge_entry(&text, entry) {
        Merge::Merged(new) => {
            write_atomic(path, &new)?;
            Ok(Outcome::Written("added mcp.asdo to"))
        }
        Merge::Present => Ok(Outcome::Unchanged),
        Merge::Differs(old) => Ok(Outcome::Refused(format!(
            "mcp.asdo is already set to something else; left alone. Differs:\n- {old}\n+ {}\nedit it by hand, or remove it and run asdo init opencode again",
            entry
        ))),
        Merge::Cannot(why) => Ok(Outcome::Refused(format!(
            "{why}; left alone. Add this under \"mcp\" by hand:\n+ \"asdo\": {entry}"
        ))),
    }
}

fn write_agent(path: &Path) -> Result<Outcome> {
    match std::fs::read_to_string(path) {
        Ok(t) if t == AGENT_MD => Ok(Outcome::Unchanged),
        Ok(_) => Ok(Outcome::Refused(
            "exists and differs from asdo's subagent; left alone (remove it to get asdo's)".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::other(format!("cannot create {}: {e}", dir.display())))?;
            }
            write_atomic(path, AGENT_MD)?;
            Ok(Outcome::Written("created"))
        }
        Err(e) => Err(Error::other(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Atomic, keeping the file's mode (opencode.json holds provider keys, often 0600) and
/// owner, and writing through a symlinked config to its target.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    crate::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| Error::other(format!("cannot write {}: {e}", path.display())))
}

#[derive(Debug, PartialEq)]
enum Merge {
    /// The new text: the old one with the entry inserted.
    Merged(String),
    Present,
    /// The entry there now, as JSON.
    Differs(String),
    Cannot(String),
}

/// Inserts `"asdo": entry` into the top-level `mcp` object (creating `mcp` if needed)
/// as text, then checks by parsing that exactly that one entry was added.
fn merge_entry(text: &str, entry: &Value) -> Merge {
    let Ok(old) = serde_json::from_str::<Value>(text) else {
        return Merge::Cannot("not plain JSON (comments or a syntax error)".into());
    };
    let Some(obj) = old.as_object() else {
        return Merge::Cannot("the top level is not an object".into());
    };
    // The inserted line ends as the file's lines do.
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let insert = match obj.get("mcp") {
        Some(Value::Object(m)) => match m.get("asdo") {
            Some(e) if e == entry => return Merge::Present,
            Some(e) => return Merge::Differs(e.to_string()),
            None => object_body_start(text, Some("mcp")).map(|at| {
                (
                    at,
                    format!("{nl}    \"asdo\": {entry}{}", comma(m.is_empty())),
                )
            }),
        },
        Some(_) => return Merge::Cannot("\"mcp\" is not an object".into()),
        None => object_body_start(text, None).map(|at| {
            (
                at,
                format!(
                    "{nl}  \"mcp\": {{\"asdo\": {entry}}}{}",
                    comma(obj.is_empty())
                ),
            )
        }),
    };
    let Some((at, piece)) = insert else {
        return Merge::Cannot("could not find where to insert the entry".into());
    };
    let new = format!("{}{piece}{}", &text[..at], &text[at..]);
    let mut want = old.clone();
    want.as_object_mut()
        .unwrap()
        .entry("mcp")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap()
        .insert("asdo".into(), entry.clone());
    match serde_json::from_str::<Value>(&new) {
        Ok(v) if v == want => Merge::Merged(new),
        _ => Merge::Cannot("could not insert the entry without changing anything else".into()),
    }
}

fn comma(empty: bool) -> &'static str {
    if empty { "" } else { "," }
}

/// The byte just after the `{` of the top-level object (`key` None) or of the
/// top-level member `key`'s object value.
fn object_body_start(text: &str, key: Option<&str>) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut last_string: Option<(usize, usize)> = None;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                last_string = Some((start, i));
            }
            b'{' => {
                depth += 1;
                match key {
                    None if depth == 1 => return Some(i + 1),
                    Some(k) if depth == 2 => {
                        // Only the value of `"k":` directly before this brace.
                        let (s, e) = last_string?;
                        let between = &text[e + 1..i];
                        if &text[s..e] == k && between.trim() == ":" {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({"type": "local", "command": ["asdo", "mcp"], "enabled": true})
    }

    #[test]
    fn merges_into_an_existing_mcp_keeping_the_rest_byte_for_byte() {
        let text = "{\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"other\": {\"type\": \"remote\", \"url\": \"http://x\"}\n  }\n}\n";
        let Merge::Merged(new) = merge_entry(text, &entry()) else {
            panic!()
        };
        assert!(new.starts_with("{\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"asdo\": {"));
        assert!(
            new.ends_with(
                "\n    \"other\": {\"type\": \"remote\", \"url\": \"http://x\"}\n  }\n}\n"
            )
        );
        assert_eq!(merge_entry(&new, &entry()), Merge::Present);
    }

    #[test]
    fn adds_mcp_when_missing_and_refuses_what_it_cannot_merge() {
        let Merge::Merged(new) = merge_entry("{\"model\": \"a/b\"}", &entry()) else {
            panic!()
        };
        let v: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v["model"], "a/b");
        assert_eq!(v["mcp"]["asdo"], entry());
        assert!(matches!(merge_entry("{}", &entry()), Merge::Merged(_)));
        assert!(matches!(
            merge_entry(
                "{\"mcp\": {\"asdo\": {\"type\": \"local\", \"command\": [\"x\"]}}}",
                &entry()
            ),
            Merge::Differs(_)
        ));
        assert!(matches!(
            merge_entry("// c\n{}", &entry()),
            Merge::Cannot(_)
        ));
        // A nested "mcp" key is not the top-level one.
        let nested = "{\"agent\": {\"mcp\": {}}}";
        let Merge::Merged(new) = merge_entry(nested, &entry()) else {
            panic!()
        };
        let v: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(v["agent"]["mcp"], json!({}));
        assert_eq!(v["mcp"]["asdo"], entry());
    }
}
