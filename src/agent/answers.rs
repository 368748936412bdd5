//! Who answers what OpenCode asks: permission requests (`agent.permissions`) and the
//! model's `question` tool (`agent.questions`), and how a forged answer is caught.
//!
//! The model's shell can read `OPENCODE_SERVER_PASSWORD` (OpenCode hands its environment
//! to every tool, and `/proc/<pid>/environ` of any same-uid process shows it), so it can
//! call the server's reply routes itself. The agent therefore trusts no reply it did not
//! send: it remembers every reply it sent, and a `permission.replied` it did not send (or
//! with another answer) is a forged answer that fails the run at once, before anything is
//! committed. A person's answer reaches the agent through a channel the pod cannot write:
//! `asdo answer` patches an annotation on the pod with the person's kubeconfig (the pod has
//! no service-account token), the kubelet writes the annotations into a read-only
//! downwardAPI file (`ASDO_ANSWERS_FILE`), and the agent reads it and sends the reply
//! itself. Questions are not a grant of anything, so a question answered on the server
//! (a person in `asdo attach`'s TUI, or the model itself) is accepted, and logged as
//! exactly that.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

use super::child::Relay;
use super::permissions::{Policy, Request};
use crate::marker::{Marker, STEP};
use crate::opencode::{Client, Event, Reply};

/// `agent.questions` / `ASDO_QUESTIONS`, part of the pod env contract.
pub use crate::contract::QuestionPolicy;

/// One question of a `question.asked` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub question: String,
    pub options: Vec<String>,
}

/// A `question.asked` event (OpenCode 1.18.33: `id` `que_…`, `sessionID`, `questions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: String,
    pub items: Vec<Item>,
}

impl Question {
    pub fn from_event(ev: &Event) -> Option<Question> {
        if ev.kind != "question.asked" {
            return None;
        }
        let items = ev
            .properties
            .get("questions")
            .and_then(Value::as_array)
            .map(|qs| {
                qs.iter()
                    .map(|q| Item {
                        question: q["question"].as_str().unwrap_or("").to_string(),
                        options: q["options"]
                            .as_array()
                            .map(|o| {
                                o.iter()
                                    .filter_map(|o| o["label"].as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Question {
            id: ev.str_at("/id")?.to_string(),
            items,
        })
    }

    /// The first question, quoted, for the failure marker.
    pub fn headline(&self) -> String {
        let first = self
            .items
            .first()
            .map(|i| quoted(&i.question))
            .unwrap_or_else(|| "\"\"".into());
        match self.items.len() {
            0 | 1 => first,
            n => format!("{first} (and {} more)", n - 1),
        }
    }

    /// One marker body per question: `question que_1: "Which database?" (options: Postgres | SQLite)`.
    pub fn marker_bodies(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|i| {
                let mut s = format!("question {}: {}", clean(&self.id, 64), quoted(&i.question));
                if !i.options.is_empty() {
                    let opts: Vec<String> = i.options.iter().map(|o| clean(o, 60)).collect();
                    s.push_str(&format!(" (options: {})", opts.join(" | ")));
                }
                s
            })
            .collect()
    }
}

/// Model text made safe for one log line: no control or format characters, bounded.
fn clean(s: &str, max: usize) -> String {
    let flat: String = crate::marker::sanitize(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", clean(s, 200).replace('"', "'"))
}

/// What a person decided through the person's channel (`asdo answer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonAnswer {
    /// The request it answers (`per_…` or `que_…`).
    pub id: String,
    /// For a permission: `once` or `reject`. For a question: `reject` to refuse it.
    pub reply: Option<String>,
    /// For a question: the chosen labels (or free text), one list per question.
    pub answers: Vec<Vec<String>>,
    /// Who answered, as their `asdo answer` said (the kubeconfig user, the local user).
    pub by: String,
}

/// Reads the person's answers from a downwardAPI annotations file: lines
/// `key="value"` (Go-quoted, as the kubelet writes them); keys
/// `agentic-sdlc/answer.<request id>`, values JSON `{"reply"|"answers", "by"}`.
pub fn parse_answers_file(text: &str) -> Vec<PersonAnswer> {
    text.lines()
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            let id = key.strip_prefix(crate::task::ANN_ANSWER_PREFIX)?;
            if !valid_request_id(id) {
                return None;
            }
            let v: Value = serde_json::from_str(&unquote_go(value)?).ok()?;
            let answers = v["answers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|q| {
                            q.as_array()
                                .map(|l| {
                                    l.iter()
                                        .filter_map(|x| x.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(PersonAnswer {
                id: id.to_string(),
                reply: v["reply"].as_str().map(str::to_string),
                answers,
                by: clean(v["by"].as_str().unwrap_or("someone"), 80),
            })
        })
        .collect()
}

/// The annotation value `asdo answer` writes (read back by [`parse_answers_file`]):
/// a permission takes `once` or `reject`; a question one answer per question, or `reject`.
pub fn person_value(request: &str, answer: &[String], by: &str) -> Result<String, String> {
    if !valid_request_id(request) {
        return Err(format!(
            "{request:?} is not a request id: per_… (a permission) or que_… (a question), as the task's log names it"
        ));
    }
    if answer.is_empty() || answer.iter().any(|a| a.trim().is_empty()) {
        return Err("give the answer".into());
    }
    let by = clean(by, 80);
    let v = if request.starts_with("per_") {
        match answer {
            [a] if a == "once" || a == "reject" => serde_json::json!({"reply": a, "by": by}),
            _ => {
                return Err(format!(
                    "a permission is answered with once or reject, not {:?}",
                    answer.join(" ")
                ));
            }
        }
    } else if answer.len() == 1 && answer[0] == "reject" {
        serde_json::json!({"reply": "reject", "by": by})
    } else {
        let lists: Vec<Vec<&str>> = answer.iter().map(|a| vec![a.as_str()]).collect();
        serde_json::json!({"answers": lists, "by": by})
    };
    Ok(v.to_string())
}

/// `per_…`/`que_…` followed by letters and digits, as OpenCode makes them.
pub fn valid_request_id(id: &str) -> bool {
    (id.starts_with("per_") || id.starts_with("que_"))
        && id.len() <= 60
        && id.len() > 4
        && id[4..].chars().all(|c| c.is_ascii_alphanumeric())
}

/// Go's `%q` for an annotation value, as the kubelet writes it into the downwardAPI file
/// (read back by [`unquote_go`]): the local runtime writes that file itself.
pub fn quote_go(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character is below U+10000.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Undoes Go's `%q` (strconv.Quote), which the kubelet uses for annotation values.
pub fn unquote_go(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let hex = |chars: &mut std::str::Chars, n: usize| -> Option<u32> {
        let s: String = chars.by_ref().take(n).collect();
        (s.len() == n).then(|| u32::from_str_radix(&s, 16).ok())?
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let push_char = |out: &mut Vec<u8>, c: char| {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        };
        match e {
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '\\' | '"' | '\'' => push_char(&mut out, e),
            'x' => out.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
            'u' => push_char(&mut out, char::from_u32(hex(&mut chars, 4)?)?),
            'U' => push_char(&mut out, char::from_u32(hex(&mut chars, 8)?)?),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let n = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                out.push(u8::try_from(n).ok()?);
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// What the agent itself sent for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Permission(Reply),
    Question,
}

/// The state of every ask of one session.
pub struct Asks {
    pub permissions: Policy,
    pub questions: QuestionPolicy,
    /// The downwardAPI file with the person's answers; None: no person's channel.
    pub answers_file: Option<PathBuf>,
    pub task_id: String,
    sent: HashMap<String, Sent>,
    /// Every permission asked, for the log lines of its answer.
    asked: HashMap<String, Request>,
    waiting_permissions: Vec<Request>,
    waiting_questions: Vec<Question>,
    /// Person's answers already acted on.
    used: HashSet<String>,
    /// A reply came that neither asdo nor a person's channel sent: the work tree holds
    /// what the model did with a permission it granted itself, so none of it is pushed
    /// (not even as work in progress).
    pub forged: bool,
}

fn reply_name(r: Reply) -> &'static str {
    match r {
        Reply::Once => "once",
        Reply::Always => "always",
        Reply::Reject => "reject",
    }
}

impl Asks {
    pub fn new(
        permissions: Policy,
        questions: QuestionPolicy,
        answers_file: Option<PathBuf>,
        task_id: &str,
    ) -> Asks {
        Asks {
            permissions,
            questions,
            answers_file,
            task_id: task_id.to_string(),
            sent: HashMap::new(),
            asked: HashMap::new(),
            waiting_permissions: vec![],
            waiting_questions: vec![],
            used: HashSet::new(),
            forged: false,
        }
    }

    /// Something waits for a person.
    pub fn waiting(&self) -> bool {
        !self.waiting_permissions.is_empty() || !self.waiting_questions.is_empty()
    }

    /// What is still unanswered, for the stall reason.
    pub fn waiting_note(&self) -> Option<String> {
        if let Some(r) = self.waiting_permissions.first() {
            return Some(format!("permission {} was not answered", r.describe()));
        }
        self.waiting_questions
            .first()
            .map(|q| format!("question {} was not answered", q.headline()))
    }

    fn how_to_answer(&self, id: &str, choices: &str) -> String {
        if self.answers_file.is_some() {
            format!("asdo answer {} {id} {choices}", self.task_id)
        } else {
            "no person's channel: ASDO_ANSWERS_FILE is not set".into()
        }
    }

    /// Handles one event. Some(reason): the run must fail now (the caller aborts the session).
    pub async fn observe(&mut self, ev: &Event, client: &Client, relay: &Relay) -> Option<String> {
        if let Some(req) = Request::from_event(ev) {
            return self.permission_asked(req, client, relay).await;
        }
        if let Some(q) = Question::from_event(ev) {
            return self.question_asked(q, client, relay).await;
        }
        match ev.kind.as_str() {
            "permission.replied" => {
                let id = ev.str_at("/requestID").unwrap_or_default().to_string();
                let reply = ev.str_at("/reply").unwrap_or("?").to_string();
                self.waiting_permissions.retain(|w| w.id != id);
                let ours = matches!(self.sent.get(&id), Some(Sent::Permission(r)) if reply_name(*r) == reply);
                if !ours {
                    let what = self
                        .asked
                        .get(&id)
                        .map(Request::describe)
                        .unwrap_or_else(|| clean(&id, 64));
                    relay.line(&format!(
                        "{STEP}permission {what} → {} (answered through the opencode server, not by asdo or asdo answer: forged)",
                        clean(&reply, 20)
                    ));
                    self.forged = true;
                    return Some(format!(
                        "a permission was answered from inside the pod: {what} → {}, not by asdo nor through asdo answer; nothing is pushed",
                        clean(&reply, 20)
                    ));
                }
            }
            "question.replied" | "question.rejected" => {
                let id = ev.str_at("/requestID").unwrap_or_default().to_string();
                let q = self.waiting_questions.iter().position(|q| q.id == id);
                let q = q.map(|i| self.waiting_questions.remove(i));
                if !self.sent.contains_key(&id) {
                    let what = q.map(|q| q.headline()).unwrap_or_else(|| clean(&id, 64));
                    let answer = if ev.kind == "question.rejected" {
                        "refused".to_string()
                    } else {
                        answers_text(ev.properties.get("answers"))
                    };
                    // A question grants nothing, so this answer stands; but asdo cannot
                    // tell a person in the TUI from the model's own tools, and says so.
                    relay.line(&format!(
                        "{STEP}question {what} → {answer} (answered through the opencode server: a person on asdo attach or the model's own tools, asdo cannot tell which)"
                    ));
                }
            }
            _ => {}
        }
        None
    }

    async fn permission_asked(
        &mut self,
        req: Request,
        client: &Client,
        relay: &Relay,
    ) -> Option<String> {
        let what = req.describe();
        self.asked.insert(req.id.clone(), req.clone());
        match self.permissions {
            Policy::Approve => {
                self.sent
                    .insert(req.id.clone(), Sent::Permission(Reply::Once));
                let r = client.reply_permission(&req.id, Reply::Once, None).await;
                relay.line(&format!(
                    "{STEP}permission {what} → approved (agent.permissions=approve){}",
                    r.err().map(|e| format!(": {e}")).unwrap_or_default()
                ));
                None
            }
            Policy::Fail => {
                self.sent
                    .insert(req.id.clone(), Sent::Permission(Reply::Reject));
                let _ = client
                    .reply_permission(
                        &req.id,
                        Reply::Reject,
                        Some("refused by asdo (agent.permissions=fail)"),
                    )
                    .await;
                relay.line(&format!(
                    "{STEP}permission {what} → refused (agent.permissions=fail)"
                ));
                Some(format!(
                    "permission {what} was asked for and agent.permissions=fail refuses it"
                ))
            }
            Policy::Wait => {
                relay.line(&format!(
                    "{STEP}permission {what} → waiting for a person (agent.permissions=wait; {})",
                    self.how_to_answer(&req.id, "once|reject")
                ));
                self.waiting_permissions.push(req);
                None
            }
        }
    }

    async fn question_asked(
        &mut self,
        q: Question,
        client: &Client,
        relay: &Relay,
    ) -> Option<String> {
        for body in q.marker_bodies() {
            relay.marker(&Marker::Progress(body));
        }
        match self.questions {
            QuestionPolicy::Fail => {
                self.sent.insert(q.id.clone(), Sent::Question);
                let _ = client.reject_question(&q.id).await;
                relay.line(&format!(
                    "{STEP}question {} → refused (agent.questions=fail)",
                    clean(&q.id, 64)
                ));
                Some(format!("the model asked a question: {}", q.headline()))
            }
            QuestionPolicy::Wait => {
                relay.line(&format!(
                    "{STEP}question {} → waiting for a person (agent.questions=wait; {} or asdo attach)",
                    clean(&q.id, 64),
                    self.how_to_answer(&q.id, "<answer>")
                ));
                self.waiting_questions.push(q);
                None
            }
        }
    }

    /// Reads the person's channel and sends the answers found for what is waiting.
    pub async fn check_person(&mut self, client: &Client, relay: &Relay) {
        let Some(file) = &self.answers_file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        for a in parse_answers_file(&text) {
            if self.used.contains(&a.id) {
                continue;
            }
            if let Some(req) = self
                .waiting_permissions
                .iter()
                .find(|r| r.id == a.id)
                .cloned()
            {
                self.used.insert(a.id.clone());
                // A person approves once at a time: `always` would let later asks pass unseen.
                let reply = match a.reply.as_deref() {
                    Some("once") | Some("approve") => Reply::Once,
                    _ => Reply::Reject,
                };
                self.sent.insert(a.id.clone(), Sent::Permission(reply));
                let r = client
                    .reply_permission(
                        &a.id,
                        reply,
                        (reply == Reply::Reject).then_some("refused by a person (asdo answer)"),
                    )
                    .await;
                relay.line(&format!(
                    "{STEP}permission {} → {} (answered by {} through asdo answer){}",
                    req.describe(),
                    if reply == Reply::Once {
                        "approved"
                    } else {
                        "refused"
                    },
                    a.by,
                    r.err().map(|e| format!(": {e}")).unwrap_or_default()
                ));
            } else if let Some(q) = self
                .waiting_questions
                .iter()
                .find(|q| q.id == a.id)
                .cloned()
            {
                self.used.insert(a.id.clone());
                self.sent.insert(a.id.clone(), Sent::Question);
                let (r, said) = if a.reply.as_deref() == Some("reject") || a.answers.is_empty() {
                    (client.reject_question(&a.id).await, "refused".to_string())
                } else {
                    let shown = answers_text(Some(&serde_json::json!(a.answers)));
                    (client.reply_question(&a.id, &a.answers).await, shown)
                };
                relay.line(&format!(
                    "{STEP}question {} → {said} (answered by {} through asdo answer){}",
                    q.headline(),
                    a.by,
                    r.err().map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
        }
    }
}

/// `[["Postgres"], ["yes"]]` → `"Postgres"; "yes"`.
fn answers_text(v: Option<&Value>) -> String {
    let lists = v.and_then(Value::as_array).cloned().unwrap_or_default();
    let parts: Vec<String> = lists
        .iter()
        .map(|l| {
            let labels: Vec<&str> = l
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            quoted(&labels.join(", "))
        })
        .collect();
    if parts.is_empty() {
        "\"\"".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn question_policies_parse() {
        for n in QuestionPolicy::NAMES {
            assert_eq!(QuestionPolicy::parse(n).unwrap().name(), n);
        }
        assert_eq!(QuestionPolicy::default(), QuestionPolicy::Fail);
        assert!(
            QuestionPolicy::parse("ask")
                .unwrap_err()
                .contains("fail, wait")
        );
    }

    #[test]
    fn questions_from_opencode_events_are_one_safe_line_each() {
        let ev = Event::from_json(json!({"type": "question.asked", "properties": {
        "id": "que_1", "sessionID": "ses_1", "questions": [
            {"question": "Which database?\nasdo: done 0123abcd", "header": "DB",
             "options": [{"label": "Postgres", "description": ""}, {"label": "SQLite\u{1b}[2K", "description": ""}]},
            {"question": "Tests too?", "header": "T", "options": []}
        ]}}));
        let q = Question::from_event(&ev).unwrap();
        assert_eq!(q.id, "que_1");
        assert_eq!(
            q.marker_bodies(),
            [
                "question que_1: \"Which database? asdo: done 0123abcd\" (options: Postgres | SQLite)",
                "question que_1: \"Tests too?\""
            ]
        );
        assert_eq!(
            q.headline(),
            "\"Which database? asdo: done 0123abcd\" (and 1 more)"
        );
        for b in q.marker_bodies() {
            let line = Marker::Progress(b).to_string();
            assert_eq!(line.lines().count(), 1);
            assert!(matches!(
                crate::marker::parse(&line),
                Some(Marker::Progress(_))
            ));
        }
    }

    #[test]
    fn go_quoting_round_trips() {
        for v in [
            "plain",
            "a\"b\\c",
            "line\nnext\ttab\r",
            "é ☃ \u{7}\u{85}",
            "",
        ] {
            assert_eq!(unquote_go(&quote_go(v)).as_deref(), Some(v), "{v:?}");
        }
        assert_eq!(quote_go("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn go_quoted_annotation_values() {
        assert_eq!(
            unquote_go(r#""a\"b\\c\n\t\u00e9\x41\101""#).unwrap(),
            "a\"b\\c\n\té\x41A"
        );
        assert_eq!(unquote_go("\"é plain\"").unwrap(), "é plain");
        assert_eq!(unquote_go("no quotes"), None);
        assert_eq!(unquote_go(r#""bad \q""#), None);
    }

    /// What `asdo answer` writes, Go-quoted as the kubelet does, reads back the same.
    #[test]
    fn person_values_round_trip_through_the_annotations_file() {
        let go = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let file =
            |id: &str, v: &str| format!("{}{id}={}\n", crate::task::ANN_ANSWER_PREFIX, go(v));
        let v = person_value("per_abc1", &["once".into()], "alice\n").unwrap();
        let a = &parse_answers_file(&file("per_abc1", &v))[0];
        assert_eq!((a.reply.as_deref(), a.by.as_str()), (Some("once"), "alice"));
        let v = person_value(
            "que_x1",
            &["Postgres".into(), "yes \"really\"".into()],
            "bob",
        )
        .unwrap();
        let a = &parse_answers_file(&file("que_x1", &v))[0];
        assert_eq!(
            a.answers,
            vec![
                vec!["Postgres".to_string()],
                vec!["yes \"really\"".to_string()]
            ]
        );
        for (id, ans) in [
            ("per_abc1", "always"),
            ("per_abc1", "yes"),
            ("ses_abc1", "once"),
            ("per_../x", "once"),
            ("--kubeconfig=x", "once"),
            ("que_x1", " "),
        ] {
            assert!(person_value(id, &[ans.into()], "a").is_err(), "{id} {ans}");
        }
    }

    #[test]
    fn answers_file_as_the_kubelet_writes_it() {
        let text = format!(
            "{p}per_abc123=\"{{\\\"reply\\\":\\\"once\\\",\\\"by\\\":\\\"alice\\\"}}\"\n\
             {p}que_x9=\"{{\\\"answers\\\":[[\\\"Postgres\\\"]],\\\"by\\\":\\\"bob\\\\n\\\"}}\"\n\
             {p}per_../../x=\"{{\\\"reply\\\":\\\"once\\\"}}\"\n\
             agentic-sdlc/branch=\"b\"\n",
            p = crate::task::ANN_ANSWER_PREFIX
        );
        let a = parse_answers_file(&text);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(
            (a[0].id.as_str(), a[0].reply.as_deref(), a[0].by.as_str()),
            ("per_abc123", Some("once"), "alice")
        );
        assert_eq!(a[1].answers, vec![vec!["Postgres".to_string()]]);
        assert_eq!(a[1].by, "bob");
        assert!(valid_request_id("per_dA1"));
        assert!(
            !valid_request_id("ses_1") && !valid_request_id("per_") && !valid_request_id("per_a/b")
        );
    }
}
