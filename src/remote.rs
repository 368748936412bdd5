//! A task's OpenCode server, reached from this machine: the running pod, its
//! `opencode` port forwarded to 127.0.0.1, the server password, and the session the
//! agent drives. Shared by `asdo attach`, `asdo send` and the MCP `send_message` tool.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::LogParams;
use kube::{Api, Client};

use crate::contract::{OPENCODE_PORT, OPENCODE_PORT_NAME, PASSWORD_ENV};
use crate::error::{Error, Result};
use crate::follow;
use crate::opencode;
use crate::portforward::{self, Forward};
use crate::task::{self, CONTAINER};

/// How long to wait for the server behind the forward to answer (it starts with the pod).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The password given on this side, first match wins: `--password-file`, then
/// `OPENCODE_SERVER_PASSWORD` in asdo's own environment; None means "read the pod's
/// Secret". The file is read now, so bad input fails before any call.
pub fn password_override(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Error::usage(format!("cannot read --password-file {}: {e}", f.display()))
        })?;
        let pw = text.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(Error::usage(format!(
                "--password-file {} is empty",
                f.display()
            )));
        }
        return Ok(Some(pw));
    }
    Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
}

/// A reachable task server.
pub struct Remote {
    pub task: String,
    pub pod: String,
    pub namespace: String,
    /// The pod's port the server listens on.
    pub port: u16,
    pub forward: Forward,
    pub client: opencode::Client,
    /// The agent's session, from its log; None before the agent has opened one.
    pub session: Option<String>,
    /// Where the password came from, for messages (never the value).
    pub password_from: String,
    /// Kept for `opencode attach`, which gets it through its environment.
    password: String,
}

impl Remote {
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The session, or a message saying why there is none yet.
    pub fn require_session(&self) -> Result<&str> {
        self.session.as_deref().ok_or_else(|| {
            Error::other(format!(
                "task {} has no OpenCode session yet (its log has no `{}{}…` line): wait until the agent has started it (`asdo logs {} -n {}`)",
                self.task,
                crate::marker::PREFIX,
                crate::marker::SESSION.trim_end(),
                self.task,
                self.namespace
            ))
        })
    }
}

/// The one line for a task whose pod is not running.
pub fn not_running(task: &str, ns: &str, phase: &str) -> Error {
    let why = match phase {
        "Pending" => "not running yet: its OpenCode server is not up; follow it with",
        _ => "finished: its OpenCode server is gone; read what it did with",
    };
    Error::other(format!(
        "task {task} is {why} `asdo logs {task} -n {ns}` (pod phase {phase})"
    ))
}

/// Finds the running pod, forwards its OpenCode port to 127.0.0.1:`local_port` and
/// checks that the server answers with the password.
pub async fn open(
    client: &Client,
    ns: &str,
    task_or_pod: &str,
    password: Option<String>,
    local_port: u16,
) -> Result<Remote> {
    let name = task::pod_name_for(task_or_pod)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = crate::cluster::get_pod(&api, &name, ns)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no pod {name} in namespace {ns}; see the task pods with `asdo list -n {ns}`"
            ))
        })?;
    let task = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(task::LABEL_TASK_ID))
        .cloned()
        .unwrap_or_else(|| task_or_pod.to_string());
    let phase = follow::phase(&pod).to_string();
    if phase != "Running" {
        return Err(not_running(&task, ns, &phase));
    }
    let port = server_port(&pod);
    let (password, password_from) = match password {
        Some(p) => (p, format!("--password-file or {PASSWORD_ENV}")),
        None => secret_password(client, ns, &pod).await?,
    };
    let forward = portforward::start(api.clone(), &name, port, local_port).await?;
    let oc = opencode::Client::new(forward.authority(), Some(&password));
    wait_ready(&oc, &forward, &task, port).await?;
    let session = session_from_log(&api, &name, &task).await?;
    Ok(Remote {
        task,
        pod: name,
        namespace: ns.to_string(),
        port,
        forward,
        client: oc,
        session,
        password_from,
        password,
    })
}

/// The container port named `opencode`, else the agent's default port.
pub fn server_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == CONTAINER)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(OPENCODE_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(OPENCODE_PORT)
}

/// The password from the Secret the pod's `OPENCODE_SERVER_PASSWORD` references.
async fn secret_password(client: &Client, ns: &str, pod: &Pod) -> Result<(String, String)> {
    let reference = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == PASSWORD_ENV)
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone());
    let Some(r) = reference else {
        return Err(Error::other(format!(
            "the pod does not take {PASSWORD_ENV} from a Secret; pass --password-file or set {PASSWORD_ENV}"
        )));
    };
    // The name comes from the pod's spec: data, checked before it becomes a URL path.
    crate::validate::object_name("Secret", &r.name)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let what = format!("read Secret {} in namespace {ns}", r.name);
    let secret = crate::cluster::bounded(&what, secrets.get(&r.name))
        .await
        .map_err(|e| match e {
            Error::Api(m) if m.contains("forbidden") => Error::Api(format!(
                "{m}; or pass --password-file / set {PASSWORD_ENV} if you may not read it"
            )),
            other => other,
        })?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| secret.string_data.as_ref()?.get(&r.key).cloned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::other(format!(
                "Secret {ns}/{} has no key {:?}; check the chart's serverPassword settings",
                r.name, r.key
            ))
        })?;
    Ok((value, format!("Secret {ns}/{} key {}", r.name, r.key)))
}

/// The server starts with the pod: retry until it answers, but a refused password is final.
async fn wait_ready(oc: &opencode::Client, forward: &Forward, task: &str, port: u16) -> Result<()> {
    let end = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut delay = Duration::from_millis(200);
    loop {
        let last = match oc.healthy().await {
            Ok(true) => return Ok(()),
            Ok(false) => "it says it is not healthy".to_string(),
            Err(opencode::Error::Status { status: 401, .. }) => {
                return Err(Error::other(format!(
                    "the OpenCode server of task {task} refused the password (HTTP 401); pass the right one with --password-file or {PASSWORD_ENV}"
                )));
            }
            Err(e @ opencode::Error::TooBig { .. }) => {
                return Err(Error::other(format!("task {task}: {e}")));
            }
            Err(e) => e.to_string(),
        };
        // A forward the API server refuses (RBAC) never starts working: say so now.
        if let Some(refused) = forward.refused() {
            return Err(Error::Api(refused.to_string()));
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::other(format!(
                "the OpenCode server of task {task} (pod port {port}) did not answer within {}s ({last}); see `asdo logs {task}`",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The last session the agent announced in the first MiB of its log. The log is data
/// anyone with a shell in the pod (or a model's tool) can write to, so an announced id
/// is used only when it has OpenCode's shape ([`crate::marker::is_session_id`]); a forged one is refused,
/// never skipped for an older one.
async fn session_from_log(api: &Api<Pod>, pod: &str, task: &str) -> Result<Option<String>> {
    let lp = LogParams {
        container: Some(CONTAINER.into()),
        limit_bytes: Some(crate::cluster::LOG_TAIL_MAX as i64),
        ..Default::default()
    };
    let bytes = crate::cluster::log_bytes(
        api,
        pod,
        &lp,
        crate::cluster::Keep::First(crate::cluster::LOG_TAIL_MAX),
    )
    .await?;
    match crate::marker::session_announcement(&String::from_utf8_lossy(&bytes)) {
        None => Ok(None),
        Some(Ok(id)) => Ok(Some(id)),
        Some(Err(forged)) => Err(Error::other(format!(
            "task {task}: its log names the session {forged:?}, which is not an OpenCode session id (ses_ and 1-{} letters or digits); refusing to use it (see `asdo logs {task}`)",
            crate::marker::SESSION_ID_MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_names_the_phase_and_asdo_logs() {
        let e = not_running("T1", "ns", "Succeeded").to_string();
        assert!(
            e.contains("phase Succeeded") && e.contains("asdo logs T1 -n ns"),
            "{e}"
        );
        assert_eq!(not_running("T1", "ns", "Pending").exit_code(), 1);
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

    #[test]
    fn server_port_is_the_named_port_or_4096() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-t1"},
            "spec": {"containers": [{"name": "agent", "ports": [{"name": "opencode", "containerPort": 5000}]}]}
        }))
        .unwrap();
        assert_eq!(server_port(&pod), 5000);
        assert_eq!(server_port(&Pod::default()), OPENCODE_PORT);
    }
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
    let events = r.client.events().await.map_err(|e| r.talk(e))?;
    r.client
        .prompt_async(&session, text, None)
        .await
        .map_err(|e| r.talk(e))?;
    Ok(Posted {
        remote: r,
        session,
        text: text.to_string(),
        events,
    })
}

impl Remote {
    fn talk(&self, e: opencode::Error) -> Error {
        Error::other(format!("task {}: {e}", self.task))
    }
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
                Ok(Some(Err(e))) => return Err(r.talk(e)),
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
                        .map_err(|e| r.talk(e))?;
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
