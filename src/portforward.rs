//! A local port forwarded to a pod's port, as `kubectl port-forward` does, through
//! the `pods/portforward` subresource (kube-rs over WebSocket). Every connection
//! accepted on 127.0.0.1 gets its own forward, so an HTTP client that opens several
//! connections (the OpenCode TUI, a browser) works.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A listening forward; dropping it stops accepting (open connections run to their end).
pub struct Forward {
    pub local: SocketAddr,
    accept: JoinHandle<()>,
    refused: Arc<OnceLock<String>>,
}

impl Forward {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local)
    }

    /// `127.0.0.1:<port>`, what the OpenCode client takes.
    pub fn authority(&self) -> String {
        self.local.to_string()
    }

    /// Set once the API server refused the forward itself (401/403): every later
    /// connection would be refused the same way, so callers stop retrying and say this.
    pub fn refused(&self) -> Option<&str> {
        self.refused.get().map(String::as_str)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// After a failed accept (out of file descriptors, most often), wait this long before
/// the next, doubling up to [`ACCEPT_BACKOFF_MAX`]: retrying at once only spins a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The same warning is printed once per this long; the repeats are counted in the next.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Listens on 127.0.0.1:`local_port` (0: any free port) and forwards to `pod`:`remote_port`.
pub async fn start(api: Api<Pod>, pod: &str, remote_port: u16, local_port: u16) -> Result<Forward> {
    let listener = TcpListener::bind(("127.0.0.1", local_port))
        .await
        .map_err(|e| {
            Error::other(format!(
                "cannot listen on 127.0.0.1:{local_port}: {e}; pick another --port (0 for any free one)"
            ))
        })?;
    let local = listener.local_addr()?;
    let pod = pod.to_string();
    let refused: Arc<OnceLock<String>> = Arc::default();
    let warnings = Arc::new(Mutex::new(Warnings::default()));
    let (r, w) = (refused.clone(), warnings.clone());
    let accept = tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut last_error: Option<Instant> = None;
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => {
                    // One accept between failures (a descriptor freed for a moment) is
                    // not recovery: the pause only shrinks after a calm second.
                    if last_error.is_none_or(|t| t.elapsed() > ACCEPT_BACKOFF_MAX) {
                        backoff = ACCEPT_BACKOFF_MIN;
                    }
                    tcp
                }
                Err(e) => {
                    last_error = Some(Instant::now());
                    w.lock().unwrap().warn(&format!(
                        "port-forward on {local}: cannot accept a connection: {e}; retrying in a moment"
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let (api, pod, r, w) = (api.clone(), pod.clone(), r.clone(), w.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(api, &pod, remote_port, tcp, &r).await {
                    // Like kubectl: a failed connection is said, the forward stays up; but
                    // a burst of the same failure is one line, not one per connection.
                    w.lock().unwrap().warn(&e.to_string());
                }
            });
        }
    });
    Ok(Forward {
        local,
        accept,
        refused,
    })
}

/// Each distinct warning once per [`WARN_EVERY`], with how many were held back. Kept per
/// message: under descriptor exhaustion two failures alternate (accept, then the forward
/// of what was accepted), and only-the-last would let both through every time.
#[derive(Default)]
struct Warnings {
    seen: std::collections::HashMap<String, (Instant, usize)>,
}

impl Warnings {
    fn warn(&mut self, msg: &str) {
        let now = Instant::now();
        if let Some((at, held)) = self.seen.get_mut(msg)
            && now.duration_since(*at) < WARN_EVERY
        {
            *held += 1;
            return;
        }
        // A handful of distinct failures at most; forget old ones rather than grow.
        if self.seen.len() >= 32 {
            self.seen
                .retain(|_, (at, _)| now.duration_since(*at) < WARN_EVERY);
        }
        match self.seen.insert(msg.to_string(), (now, 0)) {
            // asdo's own `warning:` lines, as every verb prints them at the default verbosity.
            Some((_, n)) if n > 0 => eprintln!("warning: {msg} ({n} more like it not shown)"),
            _ => eprintln!("warning: {msg}"),
        }
    }
}

async fn connection(
    api: Api<Pod>,
    pod: &str,
    port: u16,
    mut tcp: TcpStream,
    refused: &OnceLock<String>,
) -> Result<()> {
    let what = format!("forward port {port} of pod {pod}");
    let mut pf = match api.portforward(pod, &[port]).await {
        Ok(pf) => pf,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let ns = api.namespace().unwrap_or("<namespace>").to_string();
            let msg = format!(
                "cannot {what}: forbidden ({}); the Role you use in namespace {ns} needs the rule {{apiGroups: [\"\"], resources: [\"pods/portforward\"], verbs: [\"create\", \"get\"]}} (the chart's Role has it: bind yourself with values rbac.subjects)",
                s.message
            );
            let _ = refused.set(msg.clone());
            return Err(Error::Api(msg));
        }
        Err(e) => {
            let e = Error::from_kube(&what, e);
            if matches!(e, Error::Cluster(ref m) if m.contains("unauthorized")) {
                let _ = refused.set(e.to_string());
            }
            return Err(e);
        }
    };
    let mut upstream = pf
        .take_stream(port)
        .ok_or_else(|| Error::other(format!("cannot {what}: no stream")))?;
    let error = pf.take_error(port);
    let copied = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
    drop(upstream);
    if let Some(error) = error
        && let Some(msg) = error.await
    {
        return Err(Error::other(format!("cannot {what}: {msg}")));
    }
    copied
        .map(drop)
        .map_err(|e| Error::other(format!("{what}: {e}")))
}
