//! `pods/portforward` over WebSocket, in the channel protocol kube-rs
//! (`Api::<Pod>::portforward`) speaks, and how the fake maps a pod's port to
//! this machine.
//!
//! Port mapping: every pod's process runs on this one machine, so two pods
//! cannot both listen on their containerPort (say 4096). When the fake
//! kubelet starts a pod's first container, each `containerPort` P it declares
//! gets a free port L on 127.0.0.1, and the process sees
//! `FAKE_KUBELET_PORT_<P>=<L>` in its environment (set before the pod's own
//! env, so `$(FAKE_KUBELET_PORT_4096)` expands in env values, command and
//! args). The process is expected to listen on 127.0.0.1:L; a forward of pod
//! port P connects there. A port the container does not declare is refused on
//! the port's error channel, as a real kubelet refuses a port nothing listens on.
//!
//! Protocol (`v4.channel.k8s.io`, or the older `portforward.k8s.io`): the
//! request is a GET with `Upgrade: websocket` and `ports=P[,Q]`. Port i uses
//! channel 2i for data and 2i+1 for errors; every binary message starts with
//! its channel byte. The server opens each channel with a 3-byte frame
//! (channel, port little-endian). One WebSocket carries one TCP connection per
//! port. When the pod side closes, the WebSocket is closed; a client's Close
//! closes the pod side.
//!
//! Not served: SPDY (`Upgrade: SPDY/3.1`) and SPDY tunnelled over WebSocket
//! (`SPDY/3.1+portforward.k8s.io`), which is what kubectl speaks: both get a
//! 400 Status, so `kubectl port-forward` cannot use the fake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Shared;
use super::server::{self, Resp};
use super::status::ApiError;
use super::util::{parse_query, percent_decode};

/// containerPort → local port, per pod uid, while its container runs.
#[derive(Default)]
pub(crate) struct Ports {
    by_uid: Mutex<HashMap<String, HashMap<u16, u16>>>,
}

impl Ports {
    /// Picks a free local port for every port the container declares; returns the env to set.
    pub fn allocate(&self, uid: &str, c: &Container) -> Vec<(String, String)> {
        let mut map = HashMap::new();
        for p in c.ports.iter().flatten() {
            let Ok(pod_port) = u16::try_from(p.container_port) else {
                continue;
            };
            // Bind to 0 and let go: the kernel hands out ports in sequence, so
            // the number stays free for the process to bind moments later.
            let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", 0)) else {
                continue;
            };
            let local = l.local_addr().map(|a| a.port()).unwrap_or(0);
            map.insert(pod_port, local);
        }
        let env = map
            .iter()
            .map(|(p, l)| (format!("FAKE_KUBELET_PORT_{p}"), l.to_string()))
            .collect();
        self.by_uid.lock().unwrap().insert(uid.to_string(), map);
        env
    }

    pub fn local(&self, uid: &str, pod_port: u16) -> Option<u16> {
        self.by_uid
            .lock()
            .unwrap()
            .get(uid)?
            .get(&pod_port)
            .copied()
    }

    pub fn forget(&self, uid: &str) {
        self.by_uid.lock().unwrap().remove(uid);
    }
}

/// `/api/v1/namespaces/<ns>/pods/<name>/portforward`: (namespace, pod name).
pub(crate) fn target(path: &str) -> Option<(String, String)> {
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    match s.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            Some((percent_decode(ns), percent_decode(name)))
        }
        _ => None,
    }
}

const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "portforward.k8s.io"];

/// Answers the upgrade request, then serves the forward on the upgraded connection.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    req: hyper::Request<Incoming>,
    ns: String,
    name: String,
) -> Result<Resp, ApiError> {
    if shared.faults.is_forbidden(&ns) {
        return Err(ApiError::forbidden(
            "pods/portforward",
            Some(&name),
            "create",
            &ns,
        ));
    }
    if !matches!(req.method().as_str(), "GET" | "POST") {
        return Err(ApiError::method_not_allowed());
    }
    let header = |n| {
        req.headers()
            .get(n)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if !header(UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err(ApiError::bad_request(
            "the fake API server serves pods/portforward over WebSocket only (no SPDY upgrade)",
        ));
    }
    let offered = header(SEC_WEBSOCKET_PROTOCOL);
    let protocol = offered
        .split(',')
        .map(str::trim)
        .find(|p| PROTOCOLS.contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unsupported WebSocket subprotocol {offered:?}: the fake API server speaks {}",
                PROTOCOLS.join(", ")
            ))
        })?;
    let key = header(hyper::header::SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let mut ports = vec![];
    for (_, v) in query.iter().filter(|(k, _)| k == "ports") {
        for p in v.split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid port {p:?}: ports must be integers in 1-65535"
                    )));
                }
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"ports\" is required",
        ));
    }
    let pod = shared
        .store()
        .get::<Pod>(&ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("pods", &name))?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {phase})"
        )));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let targets: Vec<(u16, Option<u16>)> = ports
        .iter()
        .map(|p| (*p, shared.ports.local(&uid, *p)))
        .collect();

    let accept = derive_accept_key(key.as_bytes());
    let protocol = protocol.to_string();
    let pod_name = name.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        forward(ws, &pod_name, targets).await;
    });

    let mut resp = server::full(101, "text/plain", "");
    let h = resp.headers_mut();
    h.remove(hyper::header::CONTENT_TYPE);
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).unwrap(),
    );
    h.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&protocol).unwrap(),
    );
    Ok(resp)
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Pumps bytes between the WebSocket's channels and one TCP connection per port.
async fn forward(ws: Ws, pod: &str, targets: Vec<(u16, Option<u16>)>) {
    let (mut sink, mut stream) = ws.split();
    // Every channel opens with its port number.
    for (i, (port, _)) in targets.iter().enumerate() {
        let [lo, hi] = port.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
                return;
            }
        }
    }
    let (to_ws, mut from_pods) = tokio::sync::mpsc::channel::<Message>(16);
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = vec![];
    let mut open = 0;
    for (i, (port, local)) in targets.iter().enumerate() {
        let connected = match local {
            Some(l) => TcpStream::connect(("127.0.0.1", *l))
                .await
                .map_err(|e| format!("dial tcp4 127.0.0.1:{port}: {e}")),
            None => Err(format!(
                "port {port} is not a containerPort of the pod (the fake kubelet maps only declared ports)"
            )),
        };
        match connected {
            Ok(tcp) => {
                let (mut r, w) = tcp.into_split();
                writers.push(Some(w));
                open += 1;
                let tx = to_ws.clone();
                let ch = 2 * i as u8;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut msg = Vec::with_capacity(n + 1);
                                msg.push(ch);
                                msg.extend_from_slice(&buf[..n]);
                                if tx.send(Message::binary(msg)).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    // An empty message (the channel byte alone) says this port is done.
                    let _ = tx.send(Message::binary(vec![ch])).await;
                });
            }
            Err(why) => {
                writers.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod: {why}"
                );
                let mut frame = vec![2 * i as u8 + 1];
                frame.extend_from_slice(msg.as_bytes());
                let _ = sink.send(Message::binary(frame)).await;
            }
        }
    }
    drop(to_ws);
    while open > 0 {
        tokio::select! {
            out = from_pods.recv() => match out {
                Some(m) if m.len() == 1 => {
                    open -= 1;
                }
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            inc = stream.next() => match inc {
                Some(Ok(Message::Binary(b))) if b.len() > 1 => {
                    let i = (b[0] / 2) as usize;
                    if b[0] % 2 == 0
                        && let Some(Some(w)) = writers.get_mut(i)
                        && w.write_all(&b[1..]).await.is_err()
                    {
                        writers[i] = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client is gone: so is every pod-side connection.
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}
