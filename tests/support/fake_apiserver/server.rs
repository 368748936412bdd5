//! HTTP/1.1 plumbing: accept loop, the per-request pipeline (record, delay,
//! injected failures, routing) and response builders, including streamed
//! bodies that can be cut without the terminating chunk.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::portforward;
use super::routes;
use super::status::ApiError;
use super::util;

pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;
pub(crate) type Resp = Response<Body>;
/// One chunk of a streamed body; an Err makes hyper drop the connection mid-body.
pub(crate) type Chunk = Result<Bytes, io::Error>;

/// A request with its body read and its query decoded.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

impl Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's strconv.ParseBool, which the apiserver uses for boolean parameters.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.param(key),
            Some("true" | "1" | "t" | "T" | "TRUE" | "True")
        )
    }

    pub fn int_param(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.param(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for {key}: must be an integer"))
            }),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }
}

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register listener");
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            use std::os::fd::AsRawFd;
            use std::sync::atomic::Ordering::SeqCst;
            let (open, max) = &shared.connections;
            let now = open.fetch_add(1, SeqCst) + 1;
            max.fetch_max(now, SeqCst);
            shared.counters.accepted.fetch_add(1, SeqCst);
            // `reset_next_matching`: a handler asks for this connection to be cut.
            let cut = Arc::new(tokio::sync::Notify::new());
            let fd = stream.as_raw_fd();
            let s = shared.clone();
            let c = cut.clone();
            let svc = service_fn(move |req| handle(s.clone(), c.clone(), req));
            let serving = async {
                match &shared.tls {
                    None => {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades()
                            .await;
                    }
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                shared.counters.h2_connections.fetch_add(1, SeqCst);
                            }
                            // HTTP/1.1 or HTTP/2, by what the client sends first (its ALPN pick).
                            let mut server = auto::Builder::new(TokioExecutor::new());
                            server.http2().max_concurrent_streams(shared.max_streams);
                            let _ = server
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = serving => {}
                _ = cut.notified() => {
                    // The socket is still open here (`serving` owns it until this arm
                    // ends): linger 0 makes its close an RST instead of a FIN.
                    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                    // SAFETY: setsockopt on a descriptor that is open, with a valid struct.
                    unsafe {
                        libc::setsockopt(
                            fd,
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&linger as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                }
            }
            shared.connections.0.fetch_sub(1, SeqCst);
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    cut: Arc<tokio::sync::Notify>,
    req: hyper::Request<Incoming>,
) -> Result<Resp, Infallible> {
    if req.version() == hyper::Version::HTTP_2 {
        let streams = &shared.counters.h2_streams;
        streams.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let id = shared.requests.start(&method, &path, &raw_query);
    if shared.faults.take_reset(&method, &path) {
        // The head is read, the body is not: the connection goes with an RST.
        cut.notify_one();
        std::future::pending::<()>().await;
    }
    let delay = shared.faults.response_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((ns, name)) = portforward::target(&path) {
        // The fault knobs reach the pods/portforward subresource too (an RBAC 403 on it,
        // a proxy that never answers the upgrade), matched on its path like any request.
        if shared.faults.take_hang(&method, &path) {
            std::future::pending::<()>().await;
        }
        if let Some(failure) = shared.faults.take_failure(&method, &path) {
            let resp = match failure {
                (code, None) => error(&ApiError::injected(code)),
                (code, Some(body)) => full(code, "text/plain; charset=utf-8", body),
            };
            shared.requests.finish(id, resp.status().as_u16());
            return Ok(resp);
        }
        let resp = portforward::serve(&shared, req, ns, name)
            .await
            .unwrap_or_else(|e| error(&e));
        shared.requests.finish(id, resp.status().as_u16());
        return Ok(resp);
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (accept, content_type) = (header("accept"), header("content-type"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if shared.faults.take_hang(&method, &path) {
        // An overloaded API server or a black-holed load balancer: the connection is
        // accepted, the request read, and nothing ever comes back.
        std::future::pending::<()>().await;
    }
    let after = shared.faults.take_failure_after(&method, &path);
    let hang_after = shared.faults.take_hang_after(&method, &path);
    let resp = match shared.faults.take_failure(&method, &path) {
        Some((code, None)) => error(&ApiError::injected(code)),
        Some((code, Some(body))) => full(code, "text/plain; charset=utf-8", body),
        None => {
            let request = Request {
                query: util::parse_query(&raw_query),
                method,
                path,
                accept,
                content_type,
                body,
            };
            routes::route(&shared, request)
                .await
                .unwrap_or_else(|e| error(&e))
        }
    };
    if hang_after {
        // The work is done (a create stored), the answer never comes.
        std::future::pending::<()>().await;
    }
    let resp = match after {
        Some(code) => error(&ApiError::injected(code)),
        None => resp,
    };
    shared.requests.finish(id, resp.status().as_u16());
    Ok(resp)
}

fn base(code: u16, content_type: &str, body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    h.insert("audit-id", HeaderValue::from_str(&util::uid()).unwrap());
    r
}

pub(crate) fn full(code: u16, content_type: &str, bytes: impl Into<Bytes>) -> Resp {
    base(
        code,
        content_type,
        Full::new(bytes.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

pub(crate) fn json<T: Serialize + ?Sized>(code: u16, value: &T) -> Resp {
    full(
        code,
        "application/json",
        serde_json::to_vec(value).expect("serializable response"),
    )
}

pub(crate) fn with_warning(mut r: Resp, warning: Option<String>) -> Resp {
    if let Some(w) = warning.and_then(|w| HeaderValue::from_str(&w).ok()) {
        r.headers_mut().insert("warning", w);
    }
    r
}

pub(crate) fn error(e: &ApiError) -> Resp {
    let mut r = json(e.code, &e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

/// A chunked response fed through the returned sender; dropping the sender ends
/// the body cleanly, sending an Err cuts the connection.
pub(crate) fn streamed(code: u16, content_type: &str) -> (mpsc::Sender<Chunk>, Resp) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(4);
    let frames =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data))));
    (
        tx,
        base(code, content_type, StreamBody::new(frames).boxed_unsync()),
    )
}

/// Drops the connection mid-body. Waits first until hyper has taken (and, finding
/// nothing more, flushed) every chunk already sent, or the cut would swallow them.
pub(crate) async fn cut(tx: &mpsc::Sender<Chunk>) {
    while tx.capacity() < tx.max_capacity() && !tx.is_closed() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let _ = tx
        .send(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "stream cut by the fake API server",
        )))
        .await;
}
