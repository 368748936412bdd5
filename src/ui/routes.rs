//! The HTTP surface of `asdo ui`. Every route passes the guard first.
//!
//! - `GET /`, `GET /task/{ns}/{pod}`: the page (one HTML file; the script picks the view);
//! - `GET /assets/*`: its script, style and icon, embedded in the binary;
//! - `GET /api/events`: the tasks, as Server-Sent Events (a snapshot, then changes);
//! - `GET /api/tasks/{ns}/{pod}/log`: one task's log, through the resumable follower of
//!   `asdo logs`; one line per event, numbered, so a reconnecting page resumes exactly;
//! - `GET /api/tasks/{ns}/{pod}/diff`: `git diff --stat` of its branch, in this clone;
//! - `POST /api/tasks/{ns}/{pod}/send`: a follow-up message, as `asdo send`; the reply
//!   streams back as JSON lines;
//! - `DELETE /api/tasks/{ns}/{pod}?uid=…`: deletes exactly that run's pod.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{broadcast, mpsc};

use super::App;
use super::board::Update;
use super::guard::{self, Pass};
use crate::follow::{self, LineSink, LogOptions};
use crate::marker::Marker;
use crate::remote;
use crate::send::{self, SendOutcome};
use crate::taskview;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// How long a follow-up waits for its answer (as `asdo send`'s default --timeout).
const SEND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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
        .route("/api/tasks/{ns}/{pod}/send", axum::routing::post(send))
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

/// The tasks: a snapshot first, then every change; a page that fell behind gets a new
/// snapshot rather than a gap.
async fn events(State(app): Shared) -> impl IntoResponse {
    let (rx, snapshot) = app.board.subscribe();
    let first = json_event("snapshot", &snapshot);
    let board = app.board.clone();
    let rest = futures::stream::unfold((rx, board), |(mut rx, board)| async move {
        let ev = match rx.recv().await {
            Ok(Update::Row { row }) => json_event("row", &row),
            Ok(Update::Remove { key }) => json_event("remove", &key),
            Ok(Update::Error { message }) => json_event("failure", &message),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                json_event("snapshot", &board.snapshot())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), (rx, board)))
    });
    let stream = futures::stream::once(async { Ok::<_, Infallible>(first) }).chain(rest);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn not_a_task(ns: &str, pod: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no task pod {pod} in namespace {ns} (the watch does not know it)\n"),
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
        return not_a_task(&ns, &pod);
    };
    let skip = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel();
    let uid = known.metadata.uid.clone();
    let api: kube::Api<Pod> = kube::Api::namespaced(app.client.clone(), &ns);
    let board = app.board.clone();
    tokio::spawn(async move {
        let mut sink = PageSink {
            tx: tx.clone(),
            n: 0,
            skip,
            board,
            key,
            uid: uid.clone(),
        };
        let opts = LogOptions {
            follow: true,
            retry_for: Duration::ZERO,
            ..Default::default()
        };
        let ended = tokio::select! {
            r = follow::stream_logs(&api, &pod, uid.as_deref(), &opts, &mut sink) => r,
            _ = tx.closed() => return,
        };
        let ev = match ended {
            Ok(p) => {
                let row = taskview::row(&p, None, k8s_openapi::jiff::Timestamp::now());
                let code = follow::outcome(&p).1;
                json_event("end", &format!("{}, exit code {code}", row.status))
            }
            Err(e) => json_event("failure", &e.to_string()),
        };
        let _ = tx.send(ev);
    });
    Sse::new(receiver_stream(rx))
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
    let Some(row) = app.board.row(&format!("{ns}/{pod}")) else {
        return not_a_task(&ns, &pod);
    };
    let (Some(repo), Some(branch)) = (row.repo.clone(), row.branch.clone()) else {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"error": "the pod records no repository or branch"}),
        );
    };
    let result = tokio::task::spawn_blocking(move || -> crate::error::Result<String> {
        crate::localgit::toplevel()?;
        let fetched = crate::localgit::fetch_task(&repo, &branch, &row.task)?;
        let base = crate::localgit::fetch_base(&repo, row.base.as_deref(), &row.task)?;
        // The commit the agent reported is the task's result (as `asdo diff`).
        let tip = match row.last_marker.as_deref().and_then(crate::marker::parse) {
            Some(Marker::Done(sha)) if crate::localgit::has_commit(&sha)? => sha,
            _ => fetched,
        };
        crate::localgit::diff_stat(&base, &tip)
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

/// A follow-up into the task's session, as `asdo send`: the reply streams back as JSON
/// lines (`{"text": …}`, then `{"done": …}` or `{"error": …}`).
async fn send(
    State(app): Shared,
    Path((ns, pod)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if app.board.pod(&format!("{ns}/{pod}")).is_none() {
        return not_a_task(&ns, &pod);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .filter(|m| !m.trim().is_empty());
    let Some(message) = message else {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "the message is empty"}),
        );
    };
    let (tx, rx) = mpsc::unbounded_channel::<serde_json::Value>();
    let client = app.client.clone();
    tokio::spawn(async move {
        let line = |v: serde_json::Value| {
            let _ = tx.send(v);
        };
        let work = async {
            let password = remote::password_override(None)?;
            let r = remote::open(&client, &ns, &pod, password, 0).await?;
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
        Body::from_stream(stream),
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
        return not_a_task(&ns, &pod);
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
    let api: kube::Api<Pod> = kube::Api::namespaced(app.client.clone(), &ns);
    match crate::cluster::delete_pod_uid(&api, &pod, &uid, &ns).await {
        Ok(deleted) => json_response(StatusCode::OK, serde_json::json!({"deleted": deleted})),
        Err(e) => json_response(
            StatusCode::CONFLICT,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}
