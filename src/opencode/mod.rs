//! A small client for OpenCode's server API (`opencode serve`), the part asdo needs:
//! create a session, send a prompt without waiting for the answer, follow `GET /event`
//! (server-sent events), answer a permission request, abort, read the messages back.
//!
//! Routes and payloads are those of opencode-ai 1.18.33 (its OpenAPI document is served
//! at `/doc`). Only loopback HTTP/1 is spoken: the server runs next to asdo in the pod,
//! or behind a `kubectl port-forward`, so there is no TLS, proxy or pooling to care about
//! and every request opens its own connection.
//!
//! Independent of `crate::agent` so the caller side (`asdo send`) can reuse it.

pub mod event;
mod sse;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;

pub use event::Event;
pub use sse::EventStream;

/// The OpenCode release asdo is written against (the task image pins it; `attach` runs its
/// `opencode attach`, `doctor --runtime local` checks the one on PATH).
pub const VERSION: &str = "1.18.33";
/// Its npm package, as a person installs it.
pub const PACKAGE: &str = "opencode-ai@1.18.33";

/// The user name OpenCode's server expects with `OPENCODE_SERVER_PASSWORD` (its default).
pub const DEFAULT_USERNAME: &str = "opencode";
/// Connecting and reading one answer (not the event stream) take at most this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of one JSON answer read (a session's messages with their tool output are the
/// biggest); a server sending more is broken or hostile, and is told so, not buffered.
pub const MAX_ANSWER: usize = 32 * 1024 * 1024;
/// `GET /global/health` answers `{"healthy":true,"version":…}`: a few bytes.
pub const MAX_HEALTH: usize = 64 * 1024;
/// An error answer is only quoted (cut to 300 characters), so little of it is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most one event of `GET /event` may hold (see sse.rs).
pub const MAX_EVENT: usize = sse::MAX_EVENT;

#[derive(Debug)]
pub enum Error {
    /// Nothing answered at the address (not started yet, or gone).
    Connect(std::io::Error),
    /// The server answered with a status that is not success; `body` is its text, cut short.
    Status { status: u16, body: String },
    /// Anything else on the wire: a reset connection, a timeout, a malformed answer.
    Http(String),
    /// An answer over asdo's cap for it (`what` names the request): not buffered, and not
    /// worth retrying: the thing answering is not behaving like OpenCode.
    TooBig { what: String, cap: usize },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "cannot connect to the opencode server: {e}"),
            Error::Status { status: 401, .. } => f.write_str(
                "the opencode server refused the password (HTTP 401); check OPENCODE_SERVER_PASSWORD",
            ),
            Error::Status { status, body } => {
                write!(f, "the opencode server answered HTTP {status}: {body}")
            }
            Error::Http(e) => write!(f, "talking to the opencode server: {e}"),
            Error::TooBig { what, cap } => write!(
                f,
                "the opencode server's answer to {what} is over {} (asdo's cap); it is not behaving like OpenCode",
                size(*cap)
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// How a permission request is answered (`POST /permission/{id}/reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Once,
    Always,
    Reject,
}

/// A created session: its id is what every later call names.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The directory OpenCode took as the project (the server's working directory).
    pub directory: String,
}

#[derive(Debug, Clone)]
pub struct Client {
    /// `host:port`, loopback.
    authority: String,
    /// `Basic …`, when the server has a password.
    auth: Option<String>,
}

impl Client {
    /// `authority` is `127.0.0.1:4096`-style; `password` is OPENCODE_SERVER_PASSWORD.
    pub fn new(authority: impl Into<String>, password: Option<&str>) -> Client {
        Client {
            authority: authority.into(),
            auth: password.map(|p| {
                format!(
                    "Basic {}",
                    base64(format!("{DEFAULT_USERNAME}:{p}").as_bytes())
                )
            }),
        }
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// True once the server answers `GET /global/health`.
    pub async fn healthy(&self) -> Result<bool> {
        let v = self
            .call_capped("GET", "/global/health", None, MAX_HEALTH)
            .await?;
        Ok(v.get("healthy").and_then(Value::as_bool).unwrap_or(false))
    }

    /// `POST /session`. A title skips the extra model call OpenCode makes to invent one.
    pub async fn create_session(&self, title: &str) -> Result<Session> {
        let v = self
            .call("POST", "/session", Some(json!({ "title": title })))
            .await?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Session {
            id: field("id").ok_or_else(|| Error::Http(format!("session without an id: {v}")))?,
            directory: field("directory").unwrap_or_default(),
        })
    }

    /// `POST /session/{id}/prompt_async`: queues the prompt and returns at once (204);
    /// the work is then seen on the event stream. `model` is `provider/model`.
    pub async fn prompt_async(&self, session: &str, text: &str, model: Option<&str>) -> Result<()> {
        let mut body = json!({ "parts": [{ "type": "text", "text": text }] });
        if let Some((provider, model)) = model.and_then(|m| m.split_once('/')) {
            body["model"] = json!({ "providerID": provider, "modelID": model });
        }
        self.call(
            "POST",
            &format!("/session/{}/prompt_async", segment(session)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// `POST /permission/{request}/reply`; `message` is shown to the model with a rejection.
    pub async fn reply_permission(
        &self,
        request: &str,
        reply: Reply,
        message: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({ "reply": reply });
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        self.call(
            "POST",
            &format!("/permission/{}/reply", segment(request)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// `POST /question/{request}/reply`: one list of chosen labels (or free text) per question.
    pub async fn reply_question(&self, request: &str, answers: &[Vec<String>]) -> Result<()> {
        self.call(
            "POST",
            &format!("/question/{request}/reply"),
            Some(json!({ "answers": answers })),
        )
        .await
        .map(drop)
    }

    /// `POST /question/{request}/reject`: the question tool returns without an answer.
    pub async fn reject_question(&self, request: &str) -> Result<()> {
        self.call("POST", &format!("/question/{request}/reject"), None)
            .await
            .map(drop)
    }

    /// `GET /permission`: requests still waiting for an answer.
    pub async fn pending_permissions(&self) -> Result<Vec<Value>> {
        let v = self.call("GET", "/permission", None).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `POST /session/{id}/abort`: stops the running model call and tools.
    pub async fn abort(&self, session: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/session/{}/abort", segment(session)),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /session/{id}/message`: every message with its parts, as OpenCode returns them.
    pub async fn messages(&self, session: &str) -> Result<Vec<Value>> {
        let v = self
            .call(
                "GET",
                &format!("/session/{}/message", segment(session)),
                None,
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `GET /event`: every event of the instance, live, until the server goes away.
    /// The first event is `server.connected`, so a subscriber knows it is in before it
    /// sends the prompt.
    pub async fn events(&self) -> Result<EventStream> {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.send("GET", "/event", None))
            .await
            .map_err(|_| Error::Http("no answer to GET /event".into()))??;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::Status {
                status,
                body: read_text(resp.into_body()).await,
            });
        }
        Ok(EventStream::new(resp.into_body()))
    }

    /// One request, its JSON answer (`null` for an empty body), at most [`MAX_ANSWER`].
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.call_capped(method, path, body, MAX_ANSWER).await
    }

    async fn call_capped(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        cap: usize,
    ) -> Result<Value> {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status().as_u16();
            let cap = if (200..300).contains(&status) {
                cap
            } else {
                MAX_ERROR_BODY
            };
            let bytes = read_capped(resp.into_body(), cap)
                .await
                .map_err(|e| match e {
                    ReadError::TooBig => Error::TooBig {
                        what: format!("{method} {path}"),
                        cap,
                    },
                    ReadError::Wire(e) => Error::Http(e),
                })?;
            Ok::<_, Error>((status, bytes))
        })
        .await
        .map_err(|_| {
            Error::Http(format!(
                "no answer to {method} {path} within {REQUEST_TIMEOUT:?}"
            ))
        })??;
        let (status, bytes) = resp;
        if !(200..300).contains(&status) {
            return Err(Error::Status {
                status,
                body: cut(&String::from_utf8_lossy(&bytes)),
            });
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Http(format!("{method} {path}: not JSON ({e})")))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<hyper::Response<Incoming>> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(Error::Connect)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        // The connection task ends when the response (or the event stream) is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("accept", "application/json, text/event-stream");
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(&v).expect("a JSON value serialises"))
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| Error::Http(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| Error::Http(e.to_string()))
    }
}

async fn read_text(body: Incoming) -> String {
    match read_capped(body, MAX_ERROR_BODY).await {
        Ok(b) => cut(&String::from_utf8_lossy(&b)),
        Err(ReadError::TooBig) => format!("(an error answer over {})", size(MAX_ERROR_BODY)),
        Err(ReadError::Wire(e)) => e,
    }
}

enum ReadError {
    TooBig,
    Wire(String),
}

/// The whole body, unless it passes `cap` bytes (then nothing more is read).
async fn read_capped(body: Incoming, cap: usize) -> std::result::Result<Bytes, ReadError> {
    match http_body_util::Limited::new(body, cap).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooBig),
        Err(e) => Err(ReadError::Wire(e.to_string())),
    }
}

/// `32 MiB`, `64 KiB`: a cap as the messages name it.
pub fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// One URL path segment from data (a session or request id): everything but RFC 3986's
/// unreserved characters but `.` is percent-escaped (so `..` is no parent), and
/// `../x?y` stays one segment, never a path or a query.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error body fits in one message.
fn cut(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Standard base64 with padding, for one basic-auth header (not worth a crate).
pub(crate) fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("opencode:pw", "b3BlbmNvZGU6cHc="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn path_segments_from_data_are_escaped() {
        assert_eq!(segment("ses_abc"), "ses_abc");
        assert_eq!(
            segment("../../permission/perm_1/reply?x="),
            "%2E%2E%2F%2E%2E%2Fpermission%2Fperm_1%2Freply%3Fx%3D"
        );
        assert_eq!(segment("a b#c%"), "a%20b%23c%25");
    }

    #[test]
    fn replies_serialise_as_opencode_names_them() {
        assert_eq!(serde_json::to_value(Reply::Once).unwrap(), json!("once"));
        assert_eq!(
            serde_json::to_value(Reply::Reject).unwrap(),
            json!("reject")
        );
    }
}
