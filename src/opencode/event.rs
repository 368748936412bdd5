//! The events of `GET /event`, kept as JSON with accessors for the fields asdo reads:
//! OpenCode adds event types between releases, and an unknown one must not break a run.

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
