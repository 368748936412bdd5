//! A scripted OpenAI-compatible model server on 127.0.0.1 for tests that run the real
//! OpenCode: `POST /v1/chat/completions` answers with server-sent events, one scripted
//! [`Step`] per model call (a tool call, a final text, an HTTP error, or no answer at
//! all), and every request is recorded for the test to check.
//!
//! OpenCode reaches it through its bundled `@ai-sdk/openai-compatible` provider, set up by
//! [`ModelServer::opencode_config`] (for `OPENCODE_CONFIG_CONTENT`), so nothing leaves
//! loopback. Calls without tools (OpenCode's title generator) get a short title and do
//! not use up the script.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The provider id and model id [`ModelServer::opencode_config`] declares.
pub const PROVIDER: &str = "stub";
pub const MODEL: &str = "stub-model";
/// The API key OpenCode is configured with; any other key gets HTTP 401.
pub const API_KEY: &str = "sk-stub";

/// What one model call answers.
#[derive(Debug, Clone)]
pub enum Step {
    /// Call tool `name` with these arguments (e.g. `write` with `filePath`, `content`).
    Tool { name: String, args: Value },
    /// Say this and stop (finish reason `stop`).
    Text(String),
    /// Answer with this HTTP status and an OpenAI-style error body. Sticky: every later
    /// call gets it too (OpenCode retries a 500), so a script ends with it.
    Fail { status: u16, message: String },
    /// Take the request and never answer (a stalled provider). Sticky too.
    Hang,
    /// Start a streamed answer, then end the stream before its `finish` chunk (a proxy
    /// or a provider cutting the connection). Sticky.
    Cut,
    /// HTTP 200 with an HTML body instead of a stream (a captive portal, a misrouted
    /// gateway). Sticky.
    NotSse,
}

impl Step {
    pub fn tool(name: &str, args: Value) -> Step {
        Step::Tool {
            name: name.into(),
            args,
        }
    }

    pub fn text(s: &str) -> Step {
        Step::Text(s.into())
    }

    /// `write` a file (OpenCode's `write` tool takes an absolute `filePath`).
    pub fn write(path: &std::path::Path, content: &str) -> Step {
        Step::tool(
            "write",
            json!({ "filePath": path.display().to_string(), "content": content }),
        )
    }

    pub fn read(path: &std::path::Path) -> Step {
        Step::tool("read", json!({ "filePath": path.display().to_string() }))
    }

    /// OpenCode's `question` tool: one question with these option labels.
    pub fn question(question: &str, options: &[&str]) -> Step {
        let options: Vec<Value> = options
            .iter()
            .map(|o| json!({ "label": o, "description": format!("choose {o}") }))
            .collect();
        Step::tool(
            "question",
            json!({ "questions": [{ "question": question, "header": "Choice", "options": options }] }),
        )
    }

    pub fn bash(command: &str) -> Step {
        Step::tool(
            "bash",
            json!({ "command": command, "description": "run a command" }),
        )
    }

    /// A bash call that holds its turn until the file `gate` exists (the test creates it
    /// when it is ready), then says `released`. The sandbox must be able to see `gate`.
    pub fn gate(gate: &std::path::Path) -> Step {
        Step::bash(&format!(
            "while [ ! -e '{}' ]; do sleep 0.1; done; echo released",
            gate.display()
        ))
    }
}

/// The script of an agent steered while it works: it writes first.txt in `workspace`,
/// its turn is held on `gate` (so a message sent now lands in a busy session), then it
/// writes second.txt and says "Wrote first.txt and second.txt.".
pub fn steered_script(workspace: &std::path::Path, gate: &std::path::Path) -> Vec<Step> {
    vec![
        Step::write(&workspace.join("first.txt"), "first\n"),
        Step::gate(gate),
        Step::write(&workspace.join("second.txt"), "second\n"),
        Step::text("Wrote first.txt and second.txt."),
    ]
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// `Authorization` was `Bearer sk-stub`.
    pub authorized: bool,
    /// The request body's size in bytes.
    pub bytes: usize,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    /// Tool names offered to the model.
    pub fn tools(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every message's text, joined (what the model was told).
    pub fn text(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| match &m["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(parts) => parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

struct State {
    script: Vec<Step>,
    next: usize,
    requests: Vec<Recorded>,
}

/// The running server; dropping it stops it.
pub struct ModelServer {
    addr: SocketAddr,
    /// The host clients are told to use (`base_url`), when not the bound address.
    advertised: Option<String>,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ModelServer {
    /// Serves `script`, one step per model call; when it runs out, calls get "Done.".
    pub fn start(script: Vec<Step>) -> ModelServer {
        Self::start_on("127.0.0.1", None, script)
    }

    /// The same, bound to `ip` (0.0.0.0 for pods of a real cluster) and advertised to
    /// clients as `advertise` (the address pods reach this machine at).
    pub fn start_on(ip: &str, advertise: Option<&str>, script: Vec<Step>) -> ModelServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind the model server");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script,
            next: 0,
            requests: vec![],
        }));
        let (tx, rx) = oneshot::channel();
        let s = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("model-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for the model server");
                rt.block_on(serve(listener, s, rx));
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn the model server");
        ModelServer {
            addr,
            advertised: advertise.map(str::to_string),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The OpenAI base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        match &self.advertised {
            Some(host) => format!("http://{host}:{}/v1", self.addr.port()),
            None => format!("http://{}/v1", self.addr),
        }
    }

    /// `OPENCODE_CONFIG_CONTENT` declaring provider `stub` with model `stub-model` here.
    pub fn opencode_config(&self) -> String {
        self.opencode_config_with(API_KEY, json!({}))
    }

    /// The same with another API key and extra top-level config (e.g. `permission`).
    pub fn opencode_config_with(&self, api_key: &str, extra: Value) -> String {
        let mut c = json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "provider": { PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Stub",
                "options": { "baseURL": self.base_url(), "apiKey": api_key },
                "models": { MODEL: { "name": "Stub model", "tool_call": true } }
            }}
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        c.to_string()
    }

    /// The config with a price for the model, in US dollars per million tokens: OpenCode
    /// then reports a cost with every step (each scripted answer reports 120 tokens in and
    /// 30 out).
    pub fn opencode_config_priced(&self, input: f64, output: f64) -> String {
        let mut c: Value = serde_json::from_str(&self.opencode_config()).unwrap();
        c["provider"][PROVIDER]["models"][MODEL]["cost"] =
            json!({"input": input, "output": output});
        c.to_string()
    }

    /// Every request so far, in order (title calls included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests that offered tools: the agent's own turns.
    pub fn turns(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.tools().is_empty())
            .collect()
    }

    /// How many script steps were used.
    pub fn steps_used(&self) -> usize {
        self.state.lock().unwrap().next
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register listener");
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Resp = Response<Full<Bytes>>;

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {API_KEY}"));
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let rec = Recorded {
        path: path.clone(),
        authorized,
        bytes: raw.len(),
        body: body.clone(),
        at: std::time::Instant::now(),
    };
    let title_call = rec.tools().is_empty();
    let step = {
        let mut s = state.lock().unwrap();
        s.requests.push(rec);
        if !path.ends_with("/chat/completions") {
            None
        } else if title_call {
            Some(Step::text("Scripted task"))
        } else {
            let step = s.script.get(s.next).cloned();
            match step {
                // Sticky steps stay where they are.
                Some(Step::Fail { .. } | Step::Hang | Step::Cut | Step::NotSse) => step,
                Some(step) => {
                    s.next += 1;
                    Some(step)
                }
                None => Some(Step::text("Done.")),
            }
        }
    };
    if !authorized {
        return Ok(error(401, "Incorrect API key provided", "invalid_api_key"));
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if path.ends_with("/chat/completions") && model != MODEL {
        return Ok(error(
            404,
            &format!("The model `{model}` does not exist"),
            "model_not_found",
        ));
    }
    Ok(match step {
        None => error(404, &format!("no route {path}"), "not_found"),
        Some(Step::Hang) => std::future::pending().await,
        Some(Step::Cut) => {
            let c = json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me"}, "finish_reason": null}]});
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(format!("data: {c}\n\n"))))
                .unwrap()
        }
        Some(Step::NotSse) => Response::builder()
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(
                b"<html><body>Please log in to the network</body></html>",
            )))
            .unwrap(),
        Some(Step::Fail { status, message }) => error(status, &message, "scripted"),
        Some(Step::Text(text)) => stream(
            &model,
            vec![json!({"role": "assistant", "content": text})],
            "stop",
        ),
        Some(Step::Tool { name, args }) => {
            let call = json!({
                "role": "assistant",
                "tool_calls": [{
                    "index": 0,
                    "id": format!("call_{}", state.lock().unwrap().next),
                    "type": "function",
                    "function": { "name": name, "arguments": args.to_string() }
                }]
            });
            stream(&model, vec![call], "tool_calls")
        }
    })
}

/// An OpenAI streaming answer: the deltas, a finish chunk with usage, `[DONE]`.
fn stream(model: &str, deltas: Vec<Value>, finish: &str) -> Resp {
    let mut out = String::new();
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let mut c = json!({
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        });
        if !usage.is_null() {
            c["usage"] = usage;
        }
        format!("data: {c}\n\n")
    };
    for d in deltas {
        out.push_str(&chunk(d, Value::Null, Value::Null));
    }
    out.push_str(&chunk(
        json!({}),
        json!(finish),
        json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}),
    ));
    out.push_str("data: [DONE]\n\n");
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Full::new(Bytes::from(out)))
        .unwrap()
}

fn error(status: u16, message: &str, code: &str) -> Resp {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "code": code}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        // OpenCode waits as long as the provider asks before a retry; keep retried errors quick.
        .header("retry-after-ms", "200")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
