//! The HTTP surface of `asdo ui`. Every route passes the guard first.
//!
//! - `GET /`, `GET /task/{ns}/{pod}`: the page (one HTML file; the script picks the view);
//! - `GET /assets/*`: its script, style and icon, embedded in the binary;
//! - `GET /api/events`: the tasks, as Server-Sent Events (a snapshot, then changes);
//! - `GET /api/tasks/{ns}/{pod}/log`: one task's log, through the resumable follower of
//!   `asdo logs`; one line per event, numbered, so a reconnecting page resumes exactly;
//! - `GET /api/tasks/{ns}/{pod}/diff`: `git diff --stat` of its branch, in this clone;
//! - `POST /api/tasks/{ns}/{pod}/send`: a follow-up message, as `asdo send` (the same
//!   size cap and words); the reply streams back as JSON lines;
//! - `DELETE /api/tasks/{ns}/{pod}?uid=…`: deletes exactly that run (`Runtime::delete_task`:
//!   a pod; a local task is cancelled while it runs, removed once it has ended).
//!
//! Local tasks are the namespace `local`; everything task-specific goes through the
//! `Runtime`, so one page serves both runtimes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::App;
use super::board::{Snapshot, Update};
use super::guard::{self, Pass};
use crate::follow::LineSink;
use crate::remote;
use crate::runtime::Runtime;
use crate::runtime::delete::Deletion;
use crate::send::{self, SendOutcome};
use crate::send::{MAX_MESSAGE, message_text};
use crate::taskpod::{TaskPod, TaskState};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// How long a follow-up waits for its answer (as `asdo send`'s default --timeout).
const SEND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The largest send body read: a message of [`MAX_MESSAGE`] bytes (`asdo send`'s cap,
/// checked on the message itself with its words) as the page's JSON, each byte escaped at
/// worst to six (`\u001f`), and the field around it. axum's default (2 MB) refused
/// messages `asdo send` takes.
const SEND_BODY_LIMIT: usize = 6 * MAX_MESSAGE + 1024;

type Shared = State<Arc<App>>;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/task/{ns}/{pod}", get(page))
        .route(
            "/assets/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .route("/api/events", get(events))
        .route("/api/tasks/{ns}/{pod}/log", get(log))
        .route("/api/tasks/{ns}/{pod}/diff", get(diff))
        .route(
            "/api/tasks/{ns}/{pod}/send",
            axum::routing::post(send).layer(DefaultBodyLimit::max(SEND_BODY_LIMIT)),
        )
        .route("/api/tasks/{ns}/{pod}", axum::routing::delete(delete))
        .layer(middleware::from_fn_with_state(app.clone(), check))
        .with_state(app)
}

/// The guard, then headers that keep the page to itself: no framing, no inline script
/// from anywhere else, no referrer (the URL may once have held the token), no caching.
async fn check(State(app): Shared, req: Request, next: Next) -> Response {
    let pass = app
        .guard
        .check(req.method(), req.headers(), req.uri().query());
    let mut resp = match pass {
        Err(refusal) => (
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            refusal.message(),
        )
            .into_response(),
        Ok(Pass::Query) => {
            // First visit: keep the token in a cookie, and drop it from the address bar.
            let rest = guard::without_token(req.uri().query().unwrap_or(""));
            let to = if rest.is_empty() {
                req.uri().path().to_string()
            } else {
                format!("{}?{rest}", req.uri().path())
            };
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            if let Ok(v) = HeaderValue::from_str(&app.guard.set_cookie()) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Pass::Cookie) => next.run(req).await,
    };
    let h = resp.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

async fn page() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn json_event(kind: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(kind)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

/// A snapshot as the page gets it: with what is served, so the page words its texts and
/// commands for the runtime (`asdo attach T -n ns`, `asdo --runtime local attach T`).
#[derive(Serialize)]
struct PageSnapshot {
    /// `kubernetes` or `local`.
    runtime: &'static str,
    /// What `asdo ui` said it serves ("the local tasks in …").
    serving: String,
    #[serde(flatten)]
    snapshot: Snapshot,
}

fn snapshot_event(app: &App, snapshot: Snapshot) -> Event {
    json_event(
        "snapshot",
        &PageSnapshot {
            runtime: app.runtime.kind().as_str(),
            serving: app.serving.clone(),
            snapshot,
        },
    )
}

/// The tasks: a snapshot first, then every change; a page that fell behind gets a new
/// snapshot rather than a gap.
async fn events(State(app): Shared) -> impl IntoResponse {
    let (rx, snapshot) = app.board.subscribe();
    let first = snapshot_event(&app, snapshot);
    let stop = stopped(&app);
    let rest = futures::stream::unfold((rx, app), |(mut rx, app)| async move {
        let ev = match rx.recv().await {
            Ok(Update::Row { row }) => json_event("row", &row),
            Ok(Update::Remove { key }) => json_event("remove", &key),
            Ok(Update::Error { message }) => json_event("failure", &message),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                snapshot_event(&app, app.board.snapshot())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), (rx, app)))
    });
    let stream = futures::stream::once(async { Ok::<_, Infallible>(first) })
        .chain(rest)
        .take_until(stop);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Resolves when the server is stopping (Ctrl-C): every open stream ends with it.
fn stopped(app: &App) -> impl std::future::Future<Output = ()> + Send + use<> {
    let mut stop = app.stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

fn not_a_task(app: &App, ns: &str, pod: &str) -> Response {
    let what = match app.runtime {
        Runtime::Local(_) if ns == crate::runtime::local::pod::NAMESPACE => {
            format!("no local task {pod}")
        }
        _ => format!("no task pod {pod} in namespace {ns}"),
    };
    (
        StatusCode::NOT_FOUND,
        format!("{what} (the watch does not know it)\n"),
    )
        .into_response()
}

/// Lines of the log to the page; numbered so a reconnect (`Last-Event-ID: n`) skips the
/// `n` lines the page has, whatever the follower replays.
struct PageSink {
    tx: mpsc::UnboundedSender<Event>,
    n: u64,
    skip: u64,
    board: Arc<super::board::Board>,
    key: String,
    uid: Option<String>,
}

impl LineSink for PageSink {
    fn line(&mut self, _ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        self.n += 1;
        if self.n <= self.skip {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        self.board.saw_line(&self.key, self.uid.as_deref(), text);
        let ev = Event::default()
            .event("line")
            .id(self.n.to_string())
            .data(serde_json::to_string(text).unwrap_or_default());
        self.tx
            .send(ev)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "page closed"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn receiver_stream(
    rx: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// One follower per open task page, ended when the page goes away.
async fn log(
    State(app): Shared,
    Path((ns, pod)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{ns}/{pod}");
    let Some(known) = app.board.pod(&key) else {
        return not_a_task(&app, &ns, &pod);
    };
    let skip = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel();
    let (board, runtime) = (app.board.clone(), app.runtime.clone());
    tokio::spawn(async move {
        let mut sink = PageSink {
            tx: tx.clone(),
            n: 0,
            skip,
            board,
            key,
            uid: known.metadata.uid.clone(),
        };
        let ended = tokio::select! {
            r = runtime.follow_log(&known, &mut sink) => r,
            _ = tx.closed() => return,
        };
        let ev = match ended {
            Ok(p) => {
                let t = TaskState::new(&p, None, k8s_openapi::jiff::Timestamp::now());
                let code = TaskPod(&p).outcome().1;
                json_event("end", &format!("{}, exit code {code}", t.status))
            }
            Err(e) => json_event("failure", &e.to_string()),
        };
        let _ = tx.send(ev);
    });
    Sse::new(receiver_stream(rx).take_until(stopped(&app)))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `git diff --stat` of the task's branch against its base, when this server runs in a
/// clone of the task's repository (as `asdo diff --stat`).
async fn diff(State(app): Shared, Path((ns, pod)): Path<(String, String)>) -> Response {
    let Some(row) = app.board.row(&format!("{ns}/{pod}")).map(|r| r.task) else {
        return not_a_task(&app, &ns, &pod);
    };
    let (Some(repo), Some(branch)) = (row.repo.clone(), row.branch.clone()) else {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"error": "the pod records no repository or branch"}),
        );
    };
    let task = crate::results::TaskResult {
        id: row.id.clone(),
        repo,
        branch,
        base: row.base.clone(),
        state: Some(row),
    };
    let result = tokio::task::spawn_blocking(move || -> crate::error::Result<String> {
        crate::localgit::toplevel()?;
        // The commit the agent reported is the task's result (as `asdo diff`).
        let range = task.diff_range(None)?;
        crate::localgit::diff_stat(&range.base, &range.tip)
    })
    .await;
    match result {
        Ok(Ok(stat)) => json_response(StatusCode::OK, serde_json::json!({"stat": stat})),
        Ok(Err(e)) => json_response(StatusCode::OK, serde_json::json!({"error": e.to_string()})),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// A follow-up into the task's session, as `asdo send` (the same cap on its size, refused
/// in the same words): the reply streams back as JSON lines (`{"sent": …}`, `{"text": …}`,
/// then `{"done": …}` or `{"error": …}`).
async fn send(
    State(app): Shared,
    Path((ns, pod)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if app.board.pod(&format!("{ns}/{pod}")).is_none() {
        return not_a_task(&app, &ns, &pod);
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let error = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                // Bigger than any message of the cap can make, however escaped.
                format!(
                    "the message is over the {} a message may have (asdo's cap); put the details in a file in the repository and point the message at it",
                    crate::opencode::size(MAX_MESSAGE)
                )
            } else {
                e.body_text()
            };
            return json_response(e.status(), serde_json::json!({ "error": error }));
        }
    };
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    // `asdo send`'s own check: empty, or over its cap, in its words.
    let message = match message_text(Some(&message), None) {
        Ok(m) => m,
        Err(e) => {
            let status = if message.len() > MAX_MESSAGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return json_response(status, serde_json::json!({"error": e.to_string()}));
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<serde_json::Value>();
    let runtime = app.runtime.clone();
    tokio::spawn(async move {
        let line = |v: serde_json::Value| {
            let _ = tx.send(v);
        };
        let work = async {
            let password = remote::password_override(None)?;
            let r = runtime.remote(&pod, password, 0).await?;
            let posted = send::post(&r, &message).await?;
            line(serde_json::json!({"sent": posted.session()}));
            posted
                .wait(SEND_TIMEOUT, |s| line(serde_json::json!({"text": s})))
                .await
        };
        let outcome = tokio::select! {
            o = work => o,
            _ = tx.closed() => return,
        };
        line(match outcome {
            Ok(SendOutcome::Answered) => serde_json::json!({"done": "the session is idle again"}),
            Ok(SendOutcome::Failed(m)) => {
                serde_json::json!({"error": format!("the session failed: {m}")})
            }
            Ok(SendOutcome::TimedOut) => {
                serde_json::json!({"error": "no answer within 30m; the message stays queued in the session"})
            }
            Err(e) => serde_json::json!({"error": e.to_string()}),
        });
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        Some((Ok::<_, Infallible>(Bytes::from(format!("{v}\n"))), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream.take_until(stopped(&app))),
    )
        .into_response()
}

/// Deletes exactly the run the page showed (its uid as a precondition).
async fn delete(
    State(app): Shared,
    Path((ns, pod)): Path<(String, String)>,
    method: Method,
    req: Request,
) -> Response {
    debug_assert_eq!(method, Method::DELETE);
    let Some(known) = app.board.pod(&format!("{ns}/{pod}")) else {
        return not_a_task(&app, &ns, &pod);
    };
    let uid = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("uid="))
        .map(str::to_string)
        .or_else(|| known.metadata.uid.clone())
        .unwrap_or_default();
    let mut run = known;
    run.metadata.uid = Some(uid);
    let id = TaskPod(&run).task_label().unwrap_or(&pod).to_string();
    let local = matches!(app.runtime, Runtime::Local(_));
    match app.runtime.delete_task(&run).await {
        Ok(done) => {
            let message = match (done, local) {
                (Deletion::Deleted, false) => format!("Pod {pod} deleted."),
                (Deletion::Deleted, true) => {
                    format!("Task {id} removed (its clone, HOME and log).")
                }
                (Deletion::Cancelled, _) => format!(
                    "Task {id} asked to stop: a running agent pushes its work in progress and ends. Delete it again once it has ended to remove it."
                ),
                (Deletion::AlreadyGone, _) => format!("Task {id} was already gone."),
            };
            json_response(
                StatusCode::OK,
                serde_json::json!({
                    "deleted": done == Deletion::Deleted,
                    "cancelled": done == Deletion::Cancelled,
                    "message": message,
                }),
            )
        }
        Err(e) => json_response(
            StatusCode::CONFLICT,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use axum::http::Request;
    use tower::Service;

    use super::*;
    use crate::runtime::local::{RunState, Store, TaskDir};

    const PORT: u16 = 41999;

    /// A page server over a local store holding one ended task, T1 (as its runner leaves
    /// it), fed by the runtime's watch; returns once the board has listed it.
    async fn app(tag: &str) -> (Router, std::path::PathBuf, tokio::sync::watch::Sender<bool>) {
        let root = std::env::temp_dir().join(format!("asdo-ui-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store { root: root.clone() };
        let t = TaskDir {
            dir: store.tasks_dir().join("agent-t1"),
        };
        std::fs::create_dir_all(&t.dir).unwrap();
        std::fs::write(
            t.spec_file(),
            r#"{"id":"T1","uid":"u-1","branch":"b","repo":"file:///r.git","createdAt":"2026-12-04T10:00:00.000000000Z","env":[],"sandbox":true,"maxParallel":1,"asdo":"/a"}"#,
        )
        .unwrap();
        t.write_state(&RunState {
            exit_code: Some(0),
            ..Default::default()
        })
        .unwrap();
        let runtime = Runtime::Local(store);
        let board = super::super::board::Board::new();
        let changes = runtime.watch(crate::task::SELECTOR, false).unwrap();
        tokio::spawn(super::super::board::watch(
            board.clone(),
            runtime.clone(),
            changes,
        ));
        for _ in 0..600 {
            if board.snapshot().synced {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(board.snapshot().rows.len(), 1, "the board lists T1");
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let app = Arc::new(App {
            guard: guard::Guard::new("tok".into(), IpAddr::V4(Ipv4Addr::LOCALHOST), PORT),
            board,
            serving: super::super::serving(&runtime, false),
            runtime,
            stop: stopping,
        });
        (router(app), root, stop)
    }

    async fn post_message(r: &mut Router, message: &str) -> (StatusCode, String) {
        let body = serde_json::json!({ "message": message }).to_string();
        post(r, body.into_bytes()).await
    }

    async fn post(r: &mut Router, body: Vec<u8>) -> (StatusCode, String) {
        let req = Request::post("/api/tasks/local/agent-t1/send")
            .header(header::HOST, format!("127.0.0.1:{PORT}"))
            .header(header::ORIGIN, format!("http://127.0.0.1:{PORT}"))
            .header(header::COOKIE, format!("asdo-ui-{PORT}=tok"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = r.call(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The page takes what `asdo send` takes (axum's default 2 MB refused a 3 MiB
    /// message), and refuses what it refuses, in its words.
    #[tokio::test]
    async fn send_takes_what_asdo_send_takes_and_refuses_in_its_words() {
        let (mut r, root, _stop) = app("send-cap").await;

        // 3 MiB: past the cap check, on to the task's server (an ended task's is gone: an
        // error line, never the cap's words).
        let (status, body) = post_message(&mut r, &"a".repeat(3 * 1024 * 1024)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let last: serde_json::Value =
            serde_json::from_str(body.lines().last().expect("a reply line")).unwrap();
        assert!(last["error"].is_string(), "{body}");
        assert!(!body.contains("asdo's cap"), "{body}");

        // One byte over 4 MiB: refused before any call, with asdo send's words.
        let big = "a".repeat(MAX_MESSAGE + 1);
        let (status, body) = post_message(&mut r, &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let cli = message_text(Some(&big), None).unwrap_err().to_string();
        assert!(cli.contains("over the 4 MiB"), "{cli}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(got["error"], cli.as_str());

        // 4 MiB of characters JSON escapes six-fold is still a message asdo send takes.
        let escaped = "\u{1f}".repeat(MAX_MESSAGE);
        let (status, body) = post_message(&mut r, &escaped).await;
        assert_eq!(status, StatusCode::OK, "{}", &body[..body.len().min(300)]);

        // A body no message of the cap can make: refused, naming the cap.
        let (status, body) = post(&mut r, vec![b' '; SEND_BODY_LIMIT + 1]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(
            body.contains("over the 4 MiB a message may have (asdo's cap)"),
            "{body}"
        );

        // Empty: as asdo send says.
        let (status, body) = post_message(&mut r, "  ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("the message is empty"), "{body}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
