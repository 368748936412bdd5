//! A local port forwarded to a pod's port, as `kubectl port-forward` does, through
//! the `pods/portforward` subresource (kube-rs over WebSocket). Every connection
//! accepted on 127.0.0.1 gets its own forward, so an HTTP client that opens several
//! connections (the OpenCode TUI, a browser) works.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A listening forward; dropping it stops accepting (open connections run to their end).
pub struct Forward {
    pub local: SocketAddr,
    accept: JoinHandle<()>,
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
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

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
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (api, pod) = (api.clone(), pod.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(api, &pod, remote_port, tcp).await {
                    // Like kubectl: one line per failed connection; the forward stays up.
                    eprintln!("warning: {e}");
                }
            });
        }
    });
    Ok(Forward { local, accept })
}

async fn connection(api: Api<Pod>, pod: &str, port: u16, mut tcp: TcpStream) -> Result<()> {
    let what = format!("forward port {port} of pod {pod}");
    let mut pf = api
        .portforward(pod, &[port])
        .await
        .map_err(|e| Error::from_kube(&what, e))?;
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
