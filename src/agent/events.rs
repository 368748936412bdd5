//! OpenCode's event stream turned into the log a person reads: one line per finished
//! step (`· write src/auth.rs`, `· bash cargo test → exit 0`, what the model said), plus
//! the running totals the final summary reports (files changed, tokens, cost).
//!
//! Pure: events in, lines out, so every format is unit-tested without a server. The
//! events' parts are decoded in `opencode::event` ([`Part`]); this only matches on them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::budget::{EmptyTurns, Totals, Turn};
use crate::marker::STEP;
use crate::opencode::Event;
use crate::opencode::event::{Part, ToolStatus, error_message};

/// A step line's text is cut to this many characters.
const MAX_TEXT: usize = 200;

#[derive(Debug, Default)]
pub struct Tracker {
    /// The work tree; paths under it are shown relative.
    root: String,
    /// Our session (child sessions, e.g. subagents, are tracked too but judged by ours).
    session: String,
    /// Part id → the state already logged, so a part updated many times logs once.
    logged: HashMap<String, String>,
    counted: HashSet<String>,
    pub files: BTreeSet<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    /// `finish` of our session's newest assistant message (`stop`, `tool-calls`, …).
    pub last_finish: Option<String>,
    /// Our session's `session.error`, in the provider's words.
    pub error: Option<String>,
    /// Permissions refused by anyone (us or a person on `asdo attach`).
    pub rejected: Vec<String>,
    /// The newest step line, for `asdo status`.
    pub last_step: Option<String>,
    pub idle: bool,
    /// Model turns finished (step-finish parts), for the running totals.
    pub turns: u64,
    /// A tool part was seen since the last step-finish: this turn called a tool.
    tool_in_turn: bool,
    /// Consecutive turns with no tokens and no tool call (`budget::EmptyTurns`).
    pub empty: EmptyTurns,
    /// Set when the empty-turn guard trips; the session is then ended.
    pub looping: bool,
    /// Tool calls in progress: part id → (what it is, e.g. `bash sleep 40`, since when).
    pub running: BTreeMap<String, (String, Instant)>,
    /// The newest finished text of the model in our session: its answer.
    pub final_text: Option<String>,
}

impl Tracker {
    pub fn new(root: &Path, session: &str) -> Tracker {
        Tracker {
            root: root.display().to_string(),
            session: session.to_string(),
            ..Tracker::default()
        }
    }

    fn ours(&self, ev: &Event) -> bool {
        ev.session_id() == Some(self.session.as_str())
    }

    /// Records `ev` and returns the lines to log for it (often none).
    pub fn observe(&mut self, ev: &Event) -> Vec<String> {
        let mut lines = vec![];
        match ev.kind.as_str() {
            "message.part.updated" => {
                if let Some(line) = ev.part().and_then(|p| self.part(p)) {
                    lines.push(line);
                }
            }
            "message.updated" if self.ours(ev) => {
                if let Some(m) = ev.message()
                    && m.role == "assistant"
                    && let Some(f) = m.finish
                {
                    self.last_finish = Some(f);
                }
            }
            "file.edited" => {
                if let Some(f) = ev.str_at("/file") {
                    let f = self.rel(f);
                    self.files.insert(f);
                }
            }
            "session.status" if self.ours(ev) => {
                let s = &ev.properties["status"];
                if s["type"] == "retry" {
                    lines.push(format!(
                        "{STEP}retrying (attempt {}): {}",
                        s["attempt"],
                        cut(s["message"].as_str().unwrap_or(""))
                    ));
                }
            }
            "session.error" if self.ours(ev) || ev.session_id().is_none() => {
                let msg = error_message(&ev.properties["error"]);
                lines.push(format!("{STEP}error: {msg}"));
                self.error.get_or_insert(msg);
            }
            "permission.replied" if ev.str_at("/reply") == Some("reject") => {
                let id = ev.str_at("/requestID").unwrap_or("?").to_string();
                self.rejected.push(id);
            }
            "session.idle" if self.ours(ev) => self.idle = true,
            _ => {}
        }
        if let Some(l) = lines.last() {
            self.last_step = Some(l.clone());
        }
        lines
    }

    fn part(&mut self, p: Part) -> Option<String> {
        match p {
            Part::Tool {
                id,
                tool,
                status,
                title,
                input,
                error,
                exit,
                ..
            } => {
                self.tool_in_turn = true;
                let tool = tool.as_deref().unwrap_or("tool");
                if matches!(status, ToolStatus::Pending | ToolStatus::Running) {
                    // `bash sleep 40`: the command says more than its title (the
                    // model's description), which stands in only when there is no target.
                    let mut what = tool.to_string();
                    let target = self.target(tool, &input);
                    let title = title.as_deref().map(cut).unwrap_or_default();
                    let detail = if target.is_empty() { title } else { target };
                    if !detail.is_empty() {
                        what.push(' ');
                        what.push_str(&detail);
                    }
                    let since = self
                        .running
                        .get(&id)
                        .map(|(_, t)| *t)
                        .unwrap_or_else(Instant::now);
                    self.running.insert(id, (what, since));
                    return None;
                }
                self.running.remove(&id);
                if !status.is_done() {
                    return None;
                }
                if self.logged.get(&id).map(String::as_str) == Some(status.as_str()) {
                    return None;
                }
                self.logged.insert(id, status.as_str().to_string());
                let mut line = format!("{STEP}{tool}");
                let target = self.target(tool, &input);
                if !target.is_empty() {
                    line.push(' ');
                    line.push_str(&target);
                }
                if status == ToolStatus::Error {
                    line.push_str(" ✗ ");
                    line.push_str(&cut(error.as_deref().unwrap_or("failed")));
                } else if tool == "bash"
                    && let Some(code) = exit
                {
                    line.push_str(&format!(" → exit {code}"));
                }
                Some(line)
            }
            Part::Text {
                id,
                session,
                text,
                ended,
                synthetic,
                ..
            } => {
                // Logged once, when the model has finished saying it.
                if !ended || synthetic || self.logged.contains_key(&id) {
                    return None;
                }
                let text = text.trim();
                self.logged.insert(id, "text".into());
                if !text.is_empty() && session.as_deref() == Some(self.session.as_str()) {
                    self.final_text = Some(text.to_string());
                }
                // The user's prompt is a text part too, but never has an end time.
                (!text.is_empty()).then(|| format!("{STEP}says: {}", cut(text)))
            }
            Part::StepFinish {
                id,
                tokens: t,
                cost,
                reason,
            } => {
                if self.counted.insert(id) {
                    self.turns += 1;
                    self.tokens_in += t.input + t.cache_read;
                    self.tokens_out += t.output + t.reasoning;
                    self.cost += cost;
                    let turn = Turn {
                        tokens: t.input + t.output + t.reasoning + t.cache_read,
                        tool_call: std::mem::take(&mut self.tool_in_turn),
                        stopped: reason.as_deref() == Some("stop"),
                    };
                    if self.empty.record(turn) {
                        self.looping = true;
                    }
                }
                None
            }
            Part::Patch { files, .. } => {
                for f in files {
                    let f = self.rel(&f);
                    self.files.insert(f);
                }
                None
            }
            Part::Other { .. } => None,
        }
    }

    /// What a tool worked on, as short as it can be said.
    fn target(&self, tool: &str, input: &Value) -> String {
        let s = |k: &str| input[k].as_str().unwrap_or("").to_string();
        let t = match tool {
            "read" | "write" | "edit" | "patch" | "multiedit" => self.rel(&s("filePath")),
            "bash" => s("command"),
            "glob" | "grep" => s("pattern"),
            "list" => self.rel(&s("path")),
            "task" => s("description"),
            "webfetch" => s("url"),
            "todowrite" => match input["todos"].as_array() {
                Some(t) => format!("{} items", t.len()),
                None => String::new(),
            },
            _ => String::new(),
        };
        cut(&t)
    }

    fn rel(&self, path: &str) -> String {
        let root = self.root.trim_end_matches('/');
        match path.strip_prefix(root) {
            Some(rest) if rest.starts_with('/') => rest[1..].to_string(),
            Some("") => ".".into(),
            _ => path.to_string(),
        }
    }

    /// What the budgets are checked against.
    pub fn totals(&self) -> Totals {
        Totals {
            turns: self.turns,
            tokens: self.tokens_in + self.tokens_out,
            cost: self.cost,
        }
    }

    /// `files 2, tokens 240 in / 60 out, cost $0.0123` (cost only when the provider
    /// reports one), the body of the `asdo: summary: …` line.
    pub fn summary(&self) -> crate::marker::Summary {
        crate::marker::Summary {
            files: self.files.len() as u64,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            cost: (self.cost > 0.0).then_some(self.cost),
        }
    }
}

/// One line, at most [`MAX_TEXT`] characters.
fn cut(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, properties: Value) -> Event {
        Event::from_json(json!({"type": kind, "properties": properties}))
    }

    fn tool(id: &str, tool: &str, state: Value) -> Event {
        ev(
            "message.part.updated",
            json!({"sessionID": "ses_1", "part": {"id": id, "sessionID": "ses_1", "type": "tool", "tool": tool, "state": state}}),
        )
    }

    /// A real OpenCode 1.18.33 run, replayed: the lines a person reads and the totals.
    #[test]
    fn a_real_runs_events_make_the_log_and_the_summary() {
        let mut t = Tracker::new(Path::new("/ws"), "ses_dbe6645abffeSXrkeYJSWx01i3");
        let lines: Vec<String> = crate::opencode::event::real_events()
            .iter()
            .flat_map(|e| t.observe(e))
            .collect();
        assert_eq!(lines, ["· write hello.txt", "· says: Wrote it."]);
        let s = t.summary();
        assert_eq!(
            (s.files, s.tokens_in, s.tokens_out, s.cost),
            (1, 240, 60, None)
        );
        assert_eq!(t.turns, 2);
        assert_eq!(t.last_finish.as_deref(), Some("stop"));
        assert_eq!(t.final_text.as_deref(), Some("Wrote it."));
        assert!(t.idle && t.running.is_empty() && t.error.is_none());
    }

    #[test]
    fn one_line_per_finished_tool_call() {
        let mut t = Tracker::new(Path::new("/ws"), "ses_1");
        let input = json!({"filePath": "/ws/src/auth.rs", "content": "x"});
        assert!(
            t.observe(&tool(
                "p1",
                "write",
                json!({"status": "running", "input": input})
            ))
            .is_empty()
        );
        assert_eq!(
            t.observe(&tool(
                "p1",
                "write",
                json!({"status": "completed", "input": input})
            )),
            ["· write src/auth.rs"]
        );
        // The same part updated again logs nothing more.
        assert!(
            t.observe(&tool(
                "p1",
                "write",
                json!({"status": "completed", "input": input})
            ))
            .is_empty()
        );
        let bash = json!({"status": "completed", "input": {"command": "cargo test\n  --quiet"}, "metadata": {"exit": 0}});
        assert_eq!(
            t.observe(&tool("p2", "bash", bash)),
            ["· bash cargo test --quiet → exit 0"]
        );
        let rejected = json!({"status": "error", "input": {"filePath": "/ws/.env"}, "error": "The user rejected permission to use this specific tool call."});
        assert_eq!(
            t.observe(&tool("p3", "read", rejected)),
            ["· read .env ✗ The user rejected permission to use this specific tool call."]
        );
        assert_eq!(
            t.last_step.as_deref(),
            Some("· read .env ✗ The user rejected permission to use this specific tool call.")
        );
    }

    #[test]
    fn text_once_finished_and_totals_from_step_finish() {
        let mut t = Tracker::new(Path::new("/ws"), "ses_1");
        let text = |end: Option<u64>| {
            ev(
                "message.part.updated",
                json!({"part": {"id": "t1", "type": "text", "text": "Wrote it.\nAll good.", "time": {"start": 1, "end": end}}}),
            )
        };
        assert!(t.observe(&text(None)).is_empty());
        assert_eq!(t.observe(&text(Some(2))), ["· says: Wrote it. All good."]);
        assert!(t.observe(&text(Some(2))).is_empty());
        let finish = |id: &str| {
            ev(
                "message.part.updated",
                json!({"part": {"id": id, "type": "step-finish", "cost": 0.01, "tokens": {"input": 100, "output": 20, "reasoning": 5, "cache": {"read": 10, "write": 0}}}}),
            )
        };
        t.observe(&finish("s1"));
        t.observe(&finish("s1"));
        t.observe(&finish("s2"));
        t.observe(&ev(
            "message.part.updated",
            json!({"part": {"id": "x", "type": "patch", "files": ["/ws/a.txt", "/ws/b/c.txt"]}}),
        ));
        t.observe(&ev("file.edited", json!({"file": "/ws/a.txt"})));
        let s = t.summary();
        assert_eq!((s.files, s.tokens_in, s.tokens_out), (2, 220, 50));
        assert!((s.cost.unwrap() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn running_tools_empty_turns_and_the_final_answer() {
        let mut t = Tracker::new(Path::new("/ws"), "ses_1");
        let bash =
            json!({"status": "running", "input": {"command": "sleep 40"}, "title": "wait a bit"});
        t.observe(&tool("p1", "bash", bash));
        assert_eq!(
            t.running
                .values()
                .map(|(w, _)| w.as_str())
                .collect::<Vec<_>>(),
            ["bash sleep 40"]
        );
        t.observe(&tool(
            "p1",
            "bash",
            json!({"status": "completed", "input": {"command": "sleep 40"}, "metadata": {"exit": 0}}),
        ));
        assert!(t.running.is_empty());
        let finish = |id: &str, tokens: u64, reason: &str| {
            ev(
                "message.part.updated",
                json!({"part": {"id": id, "type": "step-finish", "reason": reason, "cost": 0,
                    "tokens": {"input": tokens, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}}}),
            )
        };
        // The turn that ran the tool is not empty, even with no usage reported.
        t.observe(&finish("s0", 0, "tool-calls"));
        assert_eq!(t.empty.run, 0);
        for i in 0..super::super::budget::MAX_EMPTY_TURNS {
            assert!(!t.looping);
            t.observe(&finish(&format!("s{}", i + 1), 0, "unknown"));
        }
        assert!(t.looping);
        assert_eq!(t.totals().turns, 9);
        let text = ev(
            "message.part.updated",
            json!({"part": {"id": "t9", "sessionID": "ses_1", "type": "text", "text": " Done! ", "time": {"start": 1, "end": 2}}}),
        );
        t.observe(&text);
        assert_eq!(t.final_text.as_deref(), Some("Done!"));
    }

    #[test]
    fn errors_retries_rejections_and_idle_of_our_session() {
        let mut t = Tracker::new(Path::new("/ws"), "ses_1");
        let retry = ev(
            "session.status",
            json!({"sessionID": "ses_1", "status": {"type": "retry", "attempt": 2, "message": "internal server error", "next": 0}}),
        );
        assert_eq!(
            t.observe(&retry),
            ["· retrying (attempt 2): internal server error"]
        );
        let other = ev(
            "session.error",
            json!({"sessionID": "ses_2", "error": {"name": "UnknownError", "data": {"message": "x"}}}),
        );
        assert!(t.observe(&other).is_empty());
        let err = ev(
            "session.error",
            json!({"sessionID": "ses_1", "error": {"name": "UnknownError", "data": {"message": "Model not found: stub/no-such-model. Did you mean: stub-model?"}}}),
        );
        assert_eq!(
            t.observe(&err),
            ["· error: Model not found: stub/no-such-model. Did you mean: stub-model?"]
        );
        assert_eq!(
            t.error.as_deref(),
            Some("Model not found: stub/no-such-model. Did you mean: stub-model?")
        );
        t.observe(&ev(
            "permission.replied",
            json!({"sessionID": "ses_1", "requestID": "per_1", "reply": "reject"}),
        ));
        assert_eq!(t.rejected, ["per_1"]);
        t.observe(&ev("message.updated", json!({"sessionID": "ses_1", "info": {"role": "assistant", "sessionID": "ses_1", "finish": "tool-calls"}})));
        assert_eq!(t.last_finish.as_deref(), Some("tool-calls"));
        assert!(!t.idle);
        t.observe(&ev("session.idle", json!({"sessionID": "ses_1"})));
        assert!(t.idle);
    }
}
