//! How `asdo agent` answers OpenCode's permission requests (value `agent.permissions`,
//! env `ASDO_PERMISSIONS`). OpenCode's own defaults ask before reading `*.env`, before
//! touching paths outside the project and on a repeated identical call; headless, an
//! unanswered "ask" stops the session, so every request gets a decision here and the
//! decision is logged.

use crate::opencode::Event;

/// `agent.permissions` / `ASDO_PERMISSIONS`, part of the pod env contract.
pub use crate::contract::Policy;

/// A `permission.asked` event, as much of it as the decision and the log need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub session: String,
    /// `read`, `edit`, `bash`, `external_directory`, `doom_loop`, …
    pub permission: String,
    /// What it is for, e.g. `.env` or the command line.
    pub patterns: Vec<String>,
}

impl Request {
    pub fn from_event(ev: &Event) -> Option<Request> {
        if ev.kind != "permission.asked" {
            return None;
        }
        Some(Request {
            id: ev.str_at("/id")?.to_string(),
            session: ev.str_at("/sessionID").unwrap_or_default().to_string(),
            permission: ev.str_at("/permission").unwrap_or("?").to_string(),
            patterns: ev
                .properties
                .get("patterns")
                .and_then(|p| p.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// `read .env`, `bash rm -rf build`, `doom_loop`.
    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            self.permission.clone()
        } else {
            format!("{} {}", self.permission, self.patterns.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_parse_and_name_themselves() {
        for n in Policy::NAMES {
            assert_eq!(Policy::parse(n).unwrap().name(), n);
        }
        assert_eq!(Policy::default(), Policy::Approve);
        let e = Policy::parse("yes").unwrap_err();
        assert!(e.contains("approve, fail, wait"), "{e}");
    }

    #[test]
    fn requests_from_opencode_events() {
        let ev = Event::from_json(json!({"type": "permission.asked", "properties": {
            "id": "per_1", "sessionID": "ses_1", "permission": "read", "patterns": [".env"],
            "metadata": {}, "always": ["*"]}}));
        let r = Request::from_event(&ev).unwrap();
        assert_eq!(
            (r.id.as_str(), r.describe()),
            ("per_1", "read .env".to_string())
        );
        let other = Event::from_json(json!({"type": "session.idle", "properties": {}}));
        assert_eq!(Request::from_event(&other), None);
    }
}
