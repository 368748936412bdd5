//! A message into a task's running OpenCode session, and its answer: post it, follow the
//! session's events, print what the assistant says, and tell when our message has been
//! answered. The server is reached through [`crate::remote`]; `asdo send` and the web page
//! use this.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::opencode;
use crate::remote::Remote;

/// How a follow-up message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The session went idle after answering it.
    Answered,
    /// The session reported an error (the provider's own message).
    Failed(String),
    /// `timeout` passed first.
    TimedOut,
}

/// A message posted into the task's session, its answer still to come.
pub struct Posted<'a> {
    remote: &'a Remote,
    session: String,
    text: String,
    events: opencode::EventStream,
}

/// Posts `text` into the task's session (subscribed to its events first, so nothing
/// between the post and the stream is missed).
pub async fn post<'a>(r: &'a Remote, text: &str) -> Result<Posted<'a>> {
    let session = r.require_session()?.to_string();
    let events = r.client.events().await.map_err(|e| talk(r, e))?;
    r.client
        .prompt_async(&session, text, None)
        .await
        .map_err(|e| talk(r, e))?;
    Ok(Posted {
        remote: r,
        session,
        text: text.to_string(),
        events,
    })
}

/// An error of the task's server, naming the task.
fn talk(r: &Remote, e: opencode::Error) -> Error {
    Error::other(format!("task {}: {e}", r.task))
}

impl Posted<'_> {
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Reports what the session prints (the assistant's text as it streams, and
    /// `· <tool> <title>` per finished tool call) through `out`, until the session
    /// is idle with an answer to this message.
    pub async fn wait(
        mut self,
        timeout: Duration,
        mut out: impl FnMut(&str),
    ) -> Result<SendOutcome> {
        let r = self.remote;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut view = Transcript {
            ours: self.text.clone(),
            ..Default::default()
        };
        loop {
            let ev = match tokio::time::timeout_at(deadline, self.events.next()).await {
                Err(_) => return Ok(SendOutcome::TimedOut),
                // The agent ends the pod once the session is idle, so the stream can be cut
                // before that idle reaches us: an answer to ours that has completed is an
                // answer all the same.
                Ok(None | Some(Err(_))) if view.answered => return Ok(SendOutcome::Answered),
                Ok(None) => {
                    return Err(Error::other(format!(
                        "task {}: the OpenCode server closed its event stream (the pod may have ended); see `asdo logs {}`",
                        r.task, r.task
                    )));
                }
                Ok(Some(Err(e))) => return Err(talk(r, e)),
                Ok(Some(Ok(ev))) => ev,
            };
            if ev.session_id() != Some(self.session.as_str()) {
                continue;
            }
            if let Some(line) = view.take(&ev) {
                out(&line);
            }
            match ev.kind.as_str() {
                "session.error" => {
                    let msg = ev
                        .properties
                        .get("error")
                        .map(opencode::event::error_message)
                        .unwrap_or_else(|| "unknown error".into());
                    return Ok(SendOutcome::Failed(msg));
                }
                "session.idle" => {
                    // A message sent while the session was busy is answered after the
                    // current turn: idle only counts once our message has its answer.
                    // The events usually say so; the agent may end the pod right after
                    // this idle, so ask the server only when they did not.
                    if view.answered {
                        return Ok(SendOutcome::Answered);
                    }
                    let messages = r
                        .client
                        .messages(&self.session)
                        .await
                        .map_err(|e| talk(r, e))?;
                    if answered(&messages, &self.text) {
                        return Ok(SendOutcome::Answered);
                    }
                }
                _ => {}
            }
        }
    }
}

/// True when the last user message carrying `text` is followed by a completed assistant message.
fn answered(messages: &[serde_json::Value], text: &str) -> bool {
    let is_ours = |m: &serde_json::Value| {
        m["info"]["role"] == "user"
            && m["parts"].as_array().is_some_and(|parts| {
                parts
                    .iter()
                    .any(|p| p["type"] == "text" && p["text"].as_str() == Some(text))
            })
    };
    let Some(i) = messages.iter().rposition(is_ours) else {
        return false;
    };
    messages[i + 1..]
        .iter()
        .any(|m| m["info"]["role"] == "assistant" && !m["info"]["time"]["completed"].is_null())
}

/// Turns the event stream into what a person reads: assistant text (streamed by
/// deltas, completed from the final part) and one line per finished tool call.
#[derive(Default)]
struct Transcript {
    /// The text we sent, to recognise our user message; its id once seen.
    ours: String,
    our_message: Option<String>,
    /// An assistant message answering ours has completed.
    answered: bool,
    /// When each user message was created (ms), to tell what came after ours.
    created: std::collections::HashMap<String, i64>,
    roles: std::collections::HashMap<String, String>,
    /// Text parts of assistant messages, and how many bytes of each were shown.
    shown: std::collections::HashMap<String, usize>,
    tools_done: std::collections::HashSet<String>,
}

impl Transcript {
    fn assistant(&self, message: Option<&str>) -> bool {
        message.and_then(|m| self.roles.get(m)).map(String::as_str) == Some("assistant")
    }

    fn take(&mut self, ev: &opencode::Event) -> Option<String> {
        match ev.kind.as_str() {
            "message.updated" => {
                let id = ev.str_at("/info/id")?.to_string();
                let role = ev.str_at("/info/role")?.to_string();
                let completed = !ev
                    .properties
                    .pointer("/info/time/completed")
                    .is_none_or(|v| v.is_null());
                let created = ev
                    .properties
                    .pointer("/info/time/created")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                if role == "user" {
                    self.created.insert(id.clone(), created);
                }
                // Ours answered: by an assistant message that names it as its parent, or
                // that started after it (OpenCode may fold a message sent mid-turn into
                // the running loop, whose messages keep the first prompt as parent).
                if role == "assistant"
                    && completed
                    && let Some(ours) = &self.our_message
                {
                    let after = self.created.get(ours).is_some_and(|t| created >= *t);
                    if after || ev.str_at("/info/parentID") == Some(ours.as_str()) {
                        self.answered = true;
                    }
                }
                self.roles.insert(id, role);
                None
            }
            "message.part.delta" => {
                let part = ev.str_at("/partID")?;
                if ev.str_at("/field") != Some("text")
                    || !self.assistant(ev.str_at("/messageID"))
                    || !self.shown.contains_key(part)
                {
                    return None;
                }
                let delta = ev.str_at("/delta")?;
                *self.shown.get_mut(part)? += delta.len();
                Some(delta.to_string())
            }
            "message.part.updated" => {
                let p = ev.properties.get("part")?;
                let id = p.get("id")?.as_str()?.to_string();
                let message = p.get("messageID").and_then(|v| v.as_str());
                if p.get("type").and_then(|v| v.as_str()) == Some("text")
                    && p.get("text").and_then(|v| v.as_str()) == Some(self.ours.as_str())
                    && !self.assistant(message)
                {
                    self.our_message = message.map(str::to_string);
                    return None;
                }
                if !self.assistant(message) {
                    return None;
                }
                match p.get("type")?.as_str()? {
                    "text" => {
                        let text = p.get("text").and_then(|v| v.as_str()).unwrap_or("");
                        let shown = self.shown.entry(id).or_insert(0);
                        let finished = !p.pointer("/time/end").is_none_or(|v| v.is_null());
                        let rest = text.get(*shown..).unwrap_or("");
                        *shown = text.len();
                        let mut s = rest.to_string();
                        if finished && !text.is_empty() {
                            s.push('\n');
                        }
                        (!s.is_empty()).then_some(s)
                    }
                    "tool" => {
                        let status = p.pointer("/state/status").and_then(|v| v.as_str())?;
                        if !matches!(status, "completed" | "error") || !self.tools_done.insert(id) {
                            return None;
                        }
                        let tool = p.get("tool").and_then(|v| v.as_str()).unwrap_or("tool");
                        let title = p
                            .pointer("/state/title")
                            .and_then(|v| v.as_str())
                            .unwrap_or("");
                        let mark = if status == "error" { " (failed)" } else { "" };
                        Some(format!("· {tool} {title}{mark}\n"))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_streams_the_assistant_and_knows_when_ours_is_answered() {
        let ev = |v: serde_json::Value| opencode::Event::from_json(v);
        let mut t = Transcript {
            ours: "more please".into(),
            ..Default::default()
        };
        let mut out = String::new();
        let events = [
            serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "m1", "role": "user", "time": {"created": 10}}}}),
            serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "a1", "role": "assistant", "parentID": "m1", "time": {"created": 11}}}}),
            serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "m2", "role": "user", "time": {"created": 20}}}}),
            serde_json::json!({"type": "message.part.updated", "properties": {"part": {"id": "p0", "messageID": "m2", "type": "text", "text": "more please"}}}),
            // The first turn ends after ours was sent: not an answer to ours.
            serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "a1", "role": "assistant", "parentID": "m1", "time": {"created": 11, "completed": 25}}}}),
            serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "a2", "role": "assistant", "parentID": "m1", "time": {"created": 26}}}}),
            serde_json::json!({"type": "message.part.updated", "properties": {"part": {"id": "p1", "messageID": "a2", "type": "text", "text": ""}}}),
            serde_json::json!({"type": "message.part.delta", "properties": {"messageID": "a2", "partID": "p1", "field": "text", "delta": "Hel"}}),
            serde_json::json!({"type": "message.part.updated", "properties": {"part": {"id": "p1", "messageID": "a2", "type": "text", "text": "Hello", "time": {"end": 30}}}}),
            serde_json::json!({"type": "message.part.updated", "properties": {"part": {"id": "p2", "messageID": "a2", "type": "tool", "tool": "write", "state": {"status": "completed", "title": "x.txt"}}}}),
        ];
        for e in events {
            if let Some(s) = t.take(&ev(e)) {
                out.push_str(&s);
            }
        }
        assert_eq!(out, "Hello\n· write x.txt\n");
        assert!(!t.answered, "a1 started before ours");
        t.take(&ev(serde_json::json!({"type": "message.updated", "properties": {"info": {"id": "a2", "role": "assistant", "parentID": "m1", "time": {"created": 26, "completed": 31}}}})));
        assert!(
            t.answered,
            "a2 started after ours (folded into the running loop)"
        );
    }
}
