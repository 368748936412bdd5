//! The events of `GET /event`, kept as JSON with accessors for the fields asdo reads:
//! OpenCode adds event types between releases, and an unknown one must not break a run.
//! The parts of a message and a message's info are decoded here, once ([`Part`],
//! [`Message`]), for the agent's tracker and `send`'s transcript alike.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `type`, e.g. `message.part.updated`, `session.idle`, `permission.asked`.
    pub kind: String,
    pub properties: Value,
}

impl Event {
    pub fn from_json(v: Value) -> Event {
        Event {
            kind: v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            properties: v.get("properties").cloned().unwrap_or(Value::Null),
        }
    }

    /// The session the event belongs to, wherever this event type keeps it.
    pub fn session_id(&self) -> Option<&str> {
        let p = &self.properties;
        p.get("sessionID")
            .or_else(|| p.pointer("/info/sessionID"))
            .or_else(|| p.pointer("/part/sessionID"))
            .and_then(Value::as_str)
    }

    /// Heartbeats only say the connection is alive, not that the agent is doing anything.
    pub fn is_heartbeat(&self) -> bool {
        self.kind == "server.heartbeat" || self.kind == "server.connected"
    }

    /// `str` at a JSON pointer into the properties.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.properties.pointer(pointer).and_then(Value::as_str)
    }
}

impl Event {
    /// The part of a `message.part.updated` event, if it is one asdo can read.
    pub fn part(&self) -> Option<Part> {
        if self.kind != "message.part.updated" {
            return None;
        }
        Part::decode(self.properties.get("part")?)
    }

    /// The message info of a `message.updated` event.
    pub fn message(&self) -> Option<Message> {
        if self.kind != "message.updated" {
            return None;
        }
        Message::decode(self.properties.get("info")?)
    }
}

/// Where a tool call is (`state.status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolStatus {
    Pending,
    Running,
    Completed,
    Error,
    /// A status a later OpenCode may add.
    Other(String),
}

impl ToolStatus {
    fn parse(s: &str) -> ToolStatus {
        match s {
            "pending" => ToolStatus::Pending,
            "running" => ToolStatus::Running,
            "completed" => ToolStatus::Completed,
            "error" => ToolStatus::Error,
            other => ToolStatus::Other(other.to_string()),
        }
    }

    /// Finished, well or badly.
    pub fn is_done(&self) -> bool {
        matches!(self, ToolStatus::Completed | ToolStatus::Error)
    }

    pub fn as_str(&self) -> &str {
        match self {
            ToolStatus::Pending => "pending",
            ToolStatus::Running => "running",
            ToolStatus::Completed => "completed",
            ToolStatus::Error => "error",
            ToolStatus::Other(s) => s,
        }
    }
}

/// Tokens of one model turn (`step-finish`'s `tokens`); absent counts are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// One part of a message, as OpenCode 1.18.33 sends it in `message.part.updated`. Every
/// part has an `id` (a part is updated many times under the same id); the session and
/// message it belongs to are kept where asdo needs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A tool call: `tool` (`write`, `bash`, …), `state.{status,title,input,error}` and,
    /// for bash, `state.metadata.exit`.
    Tool {
        id: String,
        message: Option<String>,
        tool: Option<String>,
        status: ToolStatus,
        title: Option<String>,
        input: Value,
        error: Option<String>,
        exit: Option<i64>,
    },
    /// Text of the user or the model; `ended` once `time.end` is set (the model has
    /// finished saying it; a user's prompt never has one). `synthetic`: made by OpenCode.
    Text {
        id: String,
        session: Option<String>,
        message: Option<String>,
        text: String,
        ended: bool,
        synthetic: bool,
    },
    /// The end of one model turn, with its usage and `reason` (`stop`, `tool-calls`, …).
    StepFinish {
        id: String,
        tokens: Tokens,
        cost: f64,
        reason: Option<String>,
    },
    /// The files a turn changed (absolute paths).
    Patch { id: String, files: Vec<String> },
    /// A part asdo does not read (`step-start`, `reasoning`, …, or a tool without status).
    Other { id: String, kind: String },
}

impl Part {
    /// None for a part without an id or a type.
    pub fn decode(p: &Value) -> Option<Part> {
        let id = p.get("id")?.as_str()?.to_string();
        let s = |v: &Value| v.as_str().map(str::to_string);
        let kind = p.get("type")?.as_str()?;
        Some(match kind {
            "tool" => {
                let state = &p["state"];
                let Some(status) = state["status"].as_str() else {
                    return Some(Part::Other {
                        id,
                        kind: kind.into(),
                    });
                };
                Part::Tool {
                    message: s(&p["messageID"]),
                    tool: s(&p["tool"]),
                    status: ToolStatus::parse(status),
                    title: s(&state["title"]),
                    input: state["input"].clone(),
                    error: s(&state["error"]),
                    exit: state["metadata"]["exit"].as_i64(),
                    id,
                }
            }
            "text" => Part::Text {
                session: s(&p["sessionID"]),
                message: s(&p["messageID"]),
                text: s(&p["text"]).unwrap_or_default(),
                ended: !p.pointer("/time/end").is_none_or(Value::is_null),
                synthetic: p["synthetic"] == true,
                id,
            },
            "step-finish" => {
                let t = &p["tokens"];
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                Part::StepFinish {
                    tokens: Tokens {
                        input: n(&t["input"]),
                        output: n(&t["output"]),
                        reasoning: n(&t["reasoning"]),
                        cache_read: n(&t["cache"]["read"]),
                        cache_write: n(&t["cache"]["write"]),
                    },
                    cost: p["cost"].as_f64().unwrap_or(0.0),
                    reason: s(&p["reason"]),
                    id,
                }
            }
            "patch" => Part::Patch {
                files: p["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect(),
                id,
            },
            other => Part::Other {
                id,
                kind: other.into(),
            },
        })
    }
}

/// A message's info (`message.updated`'s `info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub session: Option<String>,
    /// `user` or `assistant`.
    pub role: String,
    /// The user message an assistant message answers.
    pub parent: Option<String>,
    /// `time.created`, ms.
    pub created: i64,
    /// `time.completed` is set: the assistant has finished this message.
    pub completed: bool,
    /// How an assistant message ended (`stop`, `tool-calls`, …).
    pub finish: Option<String>,
}

impl Message {
    /// None without a role; the id may be missing in old or partial events.
    pub fn decode(info: &Value) -> Option<Message> {
        let s = |v: &Value| v.as_str().map(str::to_string);
        Some(Message {
            id: s(&info["id"]).unwrap_or_default(),
            session: s(&info["sessionID"]),
            role: s(&info["role"])?,
            parent: s(&info["parentID"]),
            created: info
                .pointer("/time/created")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            completed: !info.pointer("/time/completed").is_none_or(Value::is_null),
            finish: s(&info["finish"]),
        })
    }
}

/// An OpenCode error object (`{"name": "APIError", "data": {"message": …}}`) as one line:
/// the provider's own message first, since that is what says what to fix.
pub fn error_message(error: &Value) -> String {
    let name = error.get("name").and_then(Value::as_str).unwrap_or("error");
    let data = error.get("data");
    let message = data
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let status = data
        .and_then(|d| d.get("statusCode"))
        .and_then(Value::as_u64);
    match (message, status) {
        (Some(m), Some(s)) => format!("{m} (HTTP {s})"),
        (Some(m), None) if name == "UnknownError" || name == "APIError" => m.to_string(),
        (Some(m), None) => format!("{name}: {m}"),
        (None, _) => name.to_string(),
    }
}

/// A real run of OpenCode 1.18.33 (`opencode serve` against the tests' scripted model:
/// write hello.txt, then say "Wrote it."), as `GET /event` sent it; the work tree's path
/// shortened to `/ws`. Heartbeats and status events left out.
#[cfg(test)]
pub(crate) const REAL_EVENTS: &str = include_str!("testdata/events-1.18.33.jsonl");

#[cfg(test)]
pub(crate) fn real_events() -> Vec<Event> {
    REAL_EVENTS
        .lines()
        .map(|l| Event::from_json(serde_json::from_str(l).unwrap()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every part kind of a real run decodes to its typed form.
    #[test]
    fn parts_of_a_real_run_decode() {
        let events = real_events();
        let parts: Vec<Part> = events.iter().filter_map(Event::part).collect();
        let updates = events
            .iter()
            .filter(|e| e.kind == "message.part.updated")
            .count();
        assert_eq!(parts.len(), updates, "every part has an id and a type");
        let tools: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Tool { tool, status, .. } => Some((tool.as_deref(), status.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            tools,
            [
                (Some("write"), ToolStatus::Pending),
                (Some("write"), ToolStatus::Running),
                (Some("write"), ToolStatus::Completed)
            ]
        );
        let Some(Part::Tool {
            title,
            input,
            error,
            exit,
            message,
            ..
        }) = parts.iter().find(|p| {
            matches!(
                p,
                Part::Tool {
                    status: ToolStatus::Completed,
                    ..
                }
            )
        })
        else {
            unreachable!()
        };
        assert_eq!(title.as_deref(), Some("hello.txt"));
        assert_eq!(input["filePath"], "/ws/hello.txt");
        assert_eq!((error, exit), (&None, &None));
        assert_eq!(message.as_deref(), Some("msg_24199cb56001S8DGOrBp0NVN3z"));
        let finishes: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                Part::StepFinish {
                    tokens,
                    cost,
                    reason,
                    ..
                } => Some((tokens.input, tokens.output, *cost, reason.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(
            finishes,
            [
                (120, 30, 0.0, Some("tool-calls")),
                (120, 30, 0.0, Some("stop"))
            ]
        );
        assert!(parts.contains(&Part::Patch {
            id: "prt_24199f04a001vrwPTnyihBCpT9".into(),
            files: vec!["/ws/hello.txt".into()],
        }));
        let texts: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text {
                    text,
                    ended,
                    synthetic,
                    session,
                    ..
                } => {
                    assert!(!synthetic);
                    assert_eq!(session.as_deref(), Some("ses_dbe6645abffeSXrkeYJSWx01i3"));
                    Some((text.as_str(), *ended))
                }
                _ => None,
            })
            .collect();
        // The user's prompt never ends; the model's text is empty when it starts.
        assert_eq!(
            texts,
            [("write hello.txt", false), ("", false), ("Wrote it.", true)]
        );
        assert!(
            parts
                .iter()
                .any(|p| matches!(p, Part::Other { kind, .. } if kind == "step-start"))
        );
    }

    #[test]
    fn messages_of_a_real_run_decode() {
        let messages: Vec<Message> = real_events().iter().filter_map(Event::message).collect();
        let user = &messages[0];
        assert_eq!(
            (user.role.as_str(), user.parent.as_deref(), user.completed),
            ("user", None, false)
        );
        let done: Vec<_> = messages
            .iter()
            .filter(|m| m.role == "assistant" && m.completed)
            .map(|m| (m.finish.as_deref(), m.parent.as_deref(), m.created > 0))
            .collect();
        assert_eq!(
            done,
            [
                (Some("tool-calls"), Some(user.id.as_str()), true),
                (Some("stop"), Some(user.id.as_str()), true)
            ]
        );
        assert!(
            messages
                .iter()
                .all(|m| m.session.as_deref() == Some("ses_dbe6645abffeSXrkeYJSWx01i3"))
        );
    }

    #[test]
    fn a_part_without_id_or_status_is_not_misread() {
        assert_eq!(Part::decode(&json!({"type": "text", "text": "x"})), None);
        assert_eq!(
            Part::decode(&json!({"id": "p", "type": "tool", "tool": "bash", "state": {}})),
            Some(Part::Other {
                id: "p".into(),
                kind: "tool".into()
            })
        );
        let Some(Part::Tool {
            exit,
            error,
            status,
            ..
        }) = Part::decode(&json!({"id": "p", "type": "tool", "tool": "bash",
            "state": {"status": "error", "error": "boom", "metadata": {"exit": 2}}}))
        else {
            unreachable!()
        };
        assert_eq!(
            (exit, error.as_deref(), status),
            (Some(2), Some("boom"), ToolStatus::Error)
        );
    }

    #[test]
    fn session_ids_from_each_event_shape() {
        for v in [
            json!({"type":"session.idle","properties":{"sessionID":"ses_a"}}),
            json!({"type":"message.updated","properties":{"info":{"sessionID":"ses_a"}}}),
            json!({"type":"message.part.updated","properties":{"part":{"sessionID":"ses_a"}}}),
        ] {
            assert_eq!(Event::from_json(v).session_id(), Some("ses_a"));
        }
        assert_eq!(
            Event::from_json(json!({"type":"file.edited","properties":{"file":"x"}})).session_id(),
            None
        );
    }

    #[test]
    fn error_messages_keep_the_providers_words() {
        let api = json!({"name":"APIError","data":{"message":"Incorrect API key provided","statusCode":401,"isRetryable":false}});
        assert_eq!(error_message(&api), "Incorrect API key provided (HTTP 401)");
        let auth =
            json!({"name":"ProviderAuthError","data":{"providerID":"stub","message":"no key"}});
        assert_eq!(error_message(&auth), "ProviderAuthError: no key");
        assert_eq!(
            error_message(&json!({"name":"MessageAbortedError"})),
            "MessageAbortedError"
        );
    }
}
