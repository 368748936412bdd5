//! The connections under kube's `Client` for an https API server: HTTP/2 negotiated by
//! ALPN, many requests and log streams multiplexed over a small pool of connections.
//!
//! kube-rs 5 builds its client on HTTP/1.1 only, so every open stream (a followed log, a
//! watch) costs one TCP connection and one TLS handshake: 500 followed pods were 500
//! connections. kubectl, stern and client-go speak HTTP/2 to the API server; so does asdo
//! now, through this service, with kube's own layers (base URL, auth — token, exec,
//! client certificate —, extra headers) put on top of it in src/cluster.rs.
//!
//! How a request picks its connection: the open HTTP/2 connections are kept in the order
//! they were opened, and a request takes the first one with a free stream slot (streams in
//! flight below the server's SETTINGS_MAX_CONCURRENT_STREAMS, read from hyper). Filling
//! the oldest first keeps the number of connections as small as the load allows. When
//! every connection is full, a new one is opened (one at a time), up to
//! [`MAX_CONNECTIONS`]; past that the least loaded connection takes the request and it
//! waits in h2 for a slot. A new connection takes one request only until the server's
//! first answer on it, because its SETTINGS (the stream limit) arrive no later than that.
//!
//! What stays HTTP/1.1: upgrades (the port-forward WebSocket of `attach` and `send`), on
//! connections of their own from a second, HTTP/1.1-only client; and everything, if the
//! server does not offer h2 in ALPN. Plain `http://` servers and proxies never get here
//! (kube's own stack, HTTP/1.1).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::Body;
use tower::{BoxError, Service};

/// At most this many HTTP/2 connections to one API server: at kube-apiserver's stream
/// limit per connection (100 since the 2023 HTTP/2 rapid-reset fixes; 250 before) they
/// carry the 1,000 streams of `logs --all`'s default cap; past that, requests wait in h2.
pub const MAX_CONNECTIONS: usize = 10;

/// How long further requests wait for a new connection's first answer (and with it the
/// server's stream limit) before they use the connection anyway.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Pings on an idle-looking connection, as client-go does (ReadIdleTimeout 30 s, ping
/// timeout 15 s): a read timeout cannot tell a dead connection from quiet log streams.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// What the API server was found to speak (for the `--max-log-requests` default).
static PROTOCOL: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// True once a request went over HTTP/2 (so streams are cheap).
pub fn multiplexed() -> bool {
    PROTOCOL.load(Ordering::Relaxed) == HTTP2
}

/// `logs --all`'s default cap on concurrent log streams over HTTP/2: no practical cap
/// (500 streams share 6 connections at kube-apiserver's limit of 100 per connection).
pub const LOG_STREAMS_HTTP2: usize = 1000;
/// ... and over HTTP/1.1, where each stream is a TCP connection (stern's default too).
pub const LOG_STREAMS_HTTP1: usize = 50;

/// The default `--max-log-requests`, once a request has shown what the server speaks.
pub fn default_log_streams() -> usize {
    if multiplexed() {
        LOG_STREAMS_HTTP2
    } else {
        LOG_STREAMS_HTTP1
    }
}

/// The service kube's layers sit on for an https server.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Offers h2 and http/1.1 in ALPN.
    alpn: HttpsConnector<Tcp>,
    /// HTTP/1.1 only: upgrades, and every request if the server has no h2.
    h1: hyper_util::client::legacy::Client<HttpsConnector<Tcp>, Body>,
    server: Uri,
    connect_timeout: Option<Duration>,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while one connection is being opened, so a burst of requests opens one.
    opening: tokio::sync::Mutex<()>,
    /// The server answered ALPN without h2: HTTP/1.1 from now on.
    h1_only: AtomicBool,
}

struct Conn {
    tx: http2::SendRequest<Body>,
    in_flight: AtomicUsize,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS as h2 knows it now (see [`Driver`]).
    max_streams: Arc<AtomicUsize>,
    /// false until the server's first answer on this connection.
    answered: tokio::sync::watch::Sender<bool>,
}

impl Conn {
    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < self.max_streams.load(Ordering::Acquire)
    }

    fn lease(self: &Arc<Self>) -> Lease {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Lease(self.clone())
    }
}

/// One stream slot of a connection, given back when dropped (with the response body, or
/// with the request if it failed).
struct Lease(Arc<Conn>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Pick {
    Got(Lease),
    /// A new connection has not answered yet: wait for it.
    Wait(Arc<Conn>),
    Open,
}

impl Pool {
    /// `alpn` must offer h2 (and http/1.1), `h1` only http/1.1; both already carry the
    /// kubeconfig's TLS (CA, client certificate, server name).
    pub fn new(
        alpn: HttpsConnector<Tcp>,
        h1: HttpsConnector<Tcp>,
        server: Uri,
        connect_timeout: Option<Duration>,
    ) -> Pool {
        let h1 = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(h1);
        Pool {
            inner: Arc::new(Inner {
                alpn,
                h1,
                server,
                connect_timeout,
                conns: Mutex::new(Vec::new()),
                opening: tokio::sync::Mutex::new(()),
                h1_only: AtomicBool::new(false),
            }),
        }
    }
}

impl Inner {
    fn conns(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pick(&self) -> Pick {
        let mut conns = self.conns();
        conns.retain(|c| !c.tx.is_closed());
        let mut waiting = None;
        for c in conns.iter() {
            if !*c.answered.borrow() {
                waiting.get_or_insert_with(|| c.clone());
            } else if c.has_room() {
                return Pick::Got(c.lease());
            }
        }
        if let Some(c) = waiting {
            return Pick::Wait(c);
        }
        if conns.len() < MAX_CONNECTIONS {
            return Pick::Open;
        }
        // Every connection is full and no more may be opened: the least loaded one takes
        // it, and h2 holds the request until one of its streams ends.
        let c = conns
            .iter()
            .min_by_key(|c| c.in_flight.load(Ordering::Acquire))
            .expect("MAX_CONNECTIONS > 0");
        Pick::Got(c.lease())
    }

    /// A stream slot, or None when the server speaks HTTP/1.1 only.
    async fn acquire(&self) -> Result<Option<Lease>, BoxError> {
        loop {
            if self.h1_only.load(Ordering::Acquire) {
                return Ok(None);
            }
            match self.pick() {
                Pick::Got(lease) => return Ok(Some(lease)),
                Pick::Wait(c) => {
                    let mut rx = c.answered.subscribe();
                    let _ = tokio::time::timeout(FIRST_ANSWER_WAIT, rx.wait_for(|a| *a)).await;
                    // Not answered in time: use what is known of the connection so far.
                    c.answered.send_replace(true);
                }
                Pick::Open => {
                    let _one = self.opening.lock().await;
                    // Someone else may have opened one while this request waited.
                    match self.pick() {
                        Pick::Open => {}
                        Pick::Got(lease) => return Ok(Some(lease)),
                        Pick::Wait(_) => continue,
                    }
                    let Some(conn) = self.connect().await? else {
                        return Ok(None);
                    };
                    let lease = conn.lease();
                    self.conns().push(conn);
                    return Ok(Some(lease));
                }
            }
        }
    }

    /// One more TLS connection; HTTP/2 if the server picked it in ALPN.
    async fn connect(&self) -> Result<Option<Arc<Conn>>, BoxError> {
        let mut alpn = self.alpn.clone();
        let connecting = alpn.call(self.server.clone());
        let io = match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| format!("connecting to {} timed out", self.server))??,
            None => connecting.await?,
        };
        if !io.connected().is_negotiated_h2() {
            // This connection is dropped; the HTTP/1.1 client opens its own.
            self.h1_only.store(true, Ordering::Release);
            PROTOCOL.store(HTTP1, Ordering::Relaxed);
            tracing::debug!("API server {} has no HTTP/2: HTTP/1.1", self.server);
            return Ok(None);
        }
        let (tx, driver) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .handshake(io)
            .await?;
        let max_streams = Arc::new(AtomicUsize::new(driver.current_max_send_streams()));
        let driver = Driver {
            conn: Box::pin(driver),
            max_streams: max_streams.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!("HTTP/2 connection to the API server ended: {e}");
            }
        });
        PROTOCOL.store(HTTP2, Ordering::Relaxed);
        tracing::debug!(
            "HTTP/2 connection {} to the API server {}",
            self.conns().len() + 1,
            self.server
        );
        Ok(Some(Arc::new(Conn {
            tx,
            in_flight: AtomicUsize::new(0),
            max_streams,
            answered: tokio::sync::watch::channel(false).0,
        })))
    }

    async fn send(self: Arc<Self>, mut req: Request<Body>) -> Result<Response<ApiBody>, BoxError> {
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        let lease = if upgrade { None } else { self.acquire().await? };
        let Some(lease) = lease else {
            if !upgrade {
                PROTOCOL.store(HTTP1, Ordering::Relaxed);
            }
            let resp = self.h1.request(req).await?;
            return Ok(resp.map(|body| ApiBody { body, _lease: None }));
        };
        *req.version_mut() = http::Version::HTTP_2;
        let mut tx = lease.0.tx.clone();
        let answer = tx.send_request(req).await;
        // Answered or not, the server's SETTINGS have been read by now (or never will be).
        lease.0.answered.send_replace(true);
        Ok(answer?.map(|body| ApiBody {
            body,
            _lease: Some(lease),
        }))
    }
}

/// Drives one HTTP/2 connection, and after each step copies the server's current stream
/// limit where the pool can read it (hyper has it on the connection, which this owns).
struct Driver<C> {
    conn: Pin<Box<C>>,
    max_streams: Arc<AtomicUsize>,
}

type H2Conn = http2::Connection<hyper_rustls::MaybeHttpsStream<NoSigpipe>, Body, TokioExecutor>;

impl Future for Driver<H2Conn> {
    type Output = hyper::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let step = self.conn.as_mut().poll(cx);
        let max = self.conn.current_max_send_streams();
        self.max_streams.store(max, Ordering::Release);
        step
    }
}

impl Service<Request<Body>> for Pool {
    type Response = Response<ApiBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.inner.clone().send(req))
    }
}

/// A response body that holds its HTTP/2 stream slot until it is dropped.
pub struct ApiBody {
    body: Incoming,
    _lease: Option<Lease>,
}

impl http_body::Body for ApiBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP connector under both clients: hyper-util's, with every stream wrapped in
/// [`NoSigpipe`].
#[derive(Clone)]
pub struct Tcp(pub HttpConnector);

impl Service<Uri> for Tcp {
    type Response = NoSigpipe;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<NoSigpipe, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { Ok(NoSigpipe(connecting.await?)) })
    }
}

/// A TCP stream written without writev(2). asdo restores SIGPIPE's default action so that
/// `asdo logs | head` ends quietly (src/cli/mod.rs); std sends with MSG_NOSIGNAL, but its
/// vectored write is a plain writev, and rustls writes TLS records vectored: an API server
/// that closed the connection (a GOAWAY, a load balancer) then killed asdo with SIGPIPE in
/// the middle of `logs --all`. One buffer at a time goes through send(2) with MSG_NOSIGNAL.
pub struct NoSigpipe(hyper_util::rt::TokioIo<tokio::net::TcpStream>);

impl Connection for NoSigpipe {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.0.connected()
    }
}

impl hyper::rt::Read for NoSigpipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for NoSigpipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
