//! A message into a task's running OpenCode session, and its answer: post it, follow the
//! session's events, print what the assistant says, and tell when our message has been
//! answered. The server is reached through [`crate::remote`]; `asdo send` and the web page
//! use this.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::marker::STEP;
use crate::opencode;
use crate::opencode::event::{Part, ToolStatus};
use crate::remote::Remote;

/// The longest message `send` posts. OpenCode echoes a message back on its event stream
/// (JSON-escaped, up to 6 bytes per byte), and that event must stay under the client's
/// 32 MiB cap on one event; a task's instructions longer than this belong in a file in
/// the repository.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The message from the argument or the file, refused when empty or over
/// [`MAX_MESSAGE`]: checked before any call.
pub fn message_text(message: Option<&str>, file: Option<&std::path::Path>) -> Result<String> {
    let too_big = |len: u64| {
        Error::usage(format!(
            "the message is {} KiB, over the {} a message may have (asdo's cap); put the details in a file in the repository and point the message at it",
            len.div_ceil(1024),
            crate::opencode::size(MAX_MESSAGE)
        ))
    };
    let text = match (message, file) {
        (Some(m), _) => m.to_string(),
        (None, Some(f)) => {
            use std::io::Read;
            // `-`: stdin, how `asdo mcp` passes a message (no file, no argv).
            let stdin = f.as_os_str() == "-";
            let name = if stdin {
                "- (stdin)".to_string()
            } else {
                f.display().to_string()
            };
            let fail = |e: std::io::Error| Error::usage(format!("cannot read --file {name}: {e}"));
            let reader: Box<dyn Read> = if stdin {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(f).map_err(fail)?)
            };
            // Read at most one byte past the cap: a huge file is refused, not loaded.
            let mut bytes = Vec::new();
            reader
                .take(MAX_MESSAGE as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(fail)?;
            if bytes.len() > MAX_MESSAGE {
                let len = if stdin {
                    bytes.len() as u64
                } else {
                    std::fs::metadata(f).map_or(bytes.len() as u64, |m| m.len())
                };
                return Err(too_big(len));
            }
            String::from_utf8(bytes)
                .map_err(|_| Error::usage(format!("cannot read --file {name}: not UTF-8 text")))?
        }
        (None, None) => return Err(Error::usage("give the message, or --file FILE")),
    };
    if text.len() > MAX_MESSAGE {
        return Err(too_big(text.len() as u64));
    }
    if text.trim().is_empty() {
        return Err(Error::usage("the message is empty"));
    }
    Ok(text)
}

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
                let m = ev.message().filter(|m| !m.id.is_empty())?;
                if m.role == "user" {
                    self.created.insert(m.id.clone(), m.created);
                }
                // Ours answered: by an assistant message that names it as its parent, or
                // that started after it (OpenCode may fold a message sent mid-turn into
                // the running loop, whose messages keep the first prompt as parent).
                if m.role == "assistant"
                    && m.completed
                    && let Some(ours) = &self.our_message
                {
                    let after = self.created.get(ours).is_some_and(|t| m.created >= *t);
                    if after || m.parent.as_deref() == Some(ours.as_str()) {
                        self.answered = true;
                    }
                }
                self.roles.insert(m.id, m.role);
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
            "message.part.updated" => match ev.part()? {
                Part::Text {
                    id,
                    message,
                    text,
                    ended,
                    ..
                } => {
                    if text == self.ours && !self.assistant(message.as_deref()) {
                        self.our_message = message;
                        return None;
                    }
                    if !self.assistant(message.as_deref()) {
                        return None;
                    }
                    let shown = self.shown.entry(id).or_insert(0);
                    let rest = text.get(*shown..).unwrap_or("");
                    *shown = text.len();
                    let mut s = rest.to_string();
                    if ended && !text.is_empty() {
                        s.push('\n');
                    }
                    (!s.is_empty()).then_some(s)
                }
                Part::Tool {
                    id,
                    message,
                    tool,
                    status,
                    title,
                    ..
                } => {
                    if !self.assistant(message.as_deref())
                        || !status.is_done()
                        || !self.tools_done.insert(id)
                    {
                        return None;
                    }
                    let mark = if status == ToolStatus::Error {
                        " (failed)"
                    } else {
                        ""
                    };
                    Some(format!(
                        "{STEP}{} {}{mark}\n",
                        tool.as_deref().unwrap_or("tool"),
                        title.as_deref().unwrap_or("")
                    ))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real OpenCode 1.18.33 run, replayed as `send` sees it after posting the prompt.
    #[test]
    fn a_real_runs_events_make_the_transcript() {
        let mut t = Transcript {
            ours: "write hello.txt".into(),
            ..Default::default()
        };
        let out: String = opencode::event::real_events()
            .iter()
            .filter_map(|e| t.take(e))
            .collect();
        assert_eq!(out, "· write hello.txt\nWrote it.\n");
        assert_eq!(
            t.our_message.as_deref(),
            Some("msg_24199bb44001DY0fqldLKhbuWb")
        );
        assert!(t.answered);
    }

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
