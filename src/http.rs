//! One small HTTP(S) client for the few calls asdo makes outside the Kubernetes API —
//! a forge's pull-request API and completion webhooks — built on the hyper stack kube
//! already brings (hyper-util's client, hyper-rustls with the system's trust roots), so
//! no second HTTP/TLS stack enters the binary.
//!
//! Errors are plain strings naming only scheme, host and port: a webhook URL's path is
//! itself a secret (Slack, Teams), and callers put these messages in logs.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `scheme://host[:port]` of a URL, for messages; never the path or query.
pub fn origin(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}",
            u.scheme_str().unwrap_or("?"),
            u.authority()
                .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
        ),
        Err(_) => "<invalid URL>".into(),
    }
}

/// Only http(s) URLs with a host; checked before any request so a typo is a usage error.
pub fn check_url(url: &str) -> Result<(), String> {
    let u: hyper::Uri = url
        .parse()
        .map_err(|_| "not a valid URL (expected https://host/…)".to_string())?;
    match u.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("only http:// and https:// URLs are supported".into()),
    }
    if u.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// One request with a whole-call timeout; the body is read whole (these APIs answer small).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
    timeout: Duration,
) -> Result<Response, String> {
    check_url(url)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("no TLS trust roots on this system: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("user-agent", concat!("asdo/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{}: {}", origin(url), connection_error(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", origin(url)))?
            .to_bytes();
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: no answer within {}",
            origin(url),
            crate::humantime::short(timeout)
        )),
    }
}

/// The innermost cause (hyper-util wraps "connection refused" in two layers).
fn connection_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_the_path() {
        assert_eq!(
            origin("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            origin("http://u:pw@127.0.0.1:8080/x?token=1"),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("ftp://x/y").is_err());
        assert!(check_url("hooks.slack.com/x").is_err());
        check_url("https://example.com/hook").unwrap();
    }
}
