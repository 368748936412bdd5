//! One small HTTP(S) client for the few calls asdo makes outside the Kubernetes API —
//! a forge's pull-request API and completion webhooks — built on the hyper stack kube
//! already brings (hyper-util's client, hyper-rustls with the system's trust roots), so
//! no second HTTP/TLS stack enters the binary.
//!
//! Errors are plain strings naming only scheme, host and port: a webhook URL's path is
//! itself a secret (Slack, Teams), and callers put these messages in logs.
//!
//! Hostile servers: an answer is read only up to a cap the caller names (a webhook that
//! answers gigabytes must not take the memory with it). A URL's `user:password@` is sent
//! as a Basic `authorization` header and removed from the URL the client sees, so it is
//! never in the connection pool's key (which hyper-util prints in its trace lines).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The most `send` reads of an answer (forge APIs answer a pull request in tens of KiB).
pub const MAX_ANSWER: usize = 1024 * 1024;

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The answer's first bytes, at most the cap the call named.
    pub body: String,
    /// The answer was longer than the cap; the rest was not read.
    pub cut: bool,
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

/// One request with a whole-call timeout; an answer longer than `MAX_ANSWER` is an error
/// naming the cap (the callers parse it whole).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
    timeout: Duration,
) -> Result<Response, String> {
    let r = send_capped(method, url, headers, body, timeout, MAX_ANSWER).await?;
    if r.cut {
        return Err(format!(
            "{}: answered {} with more than {}, the most asdo reads",
            origin(url),
            r.status,
            size(MAX_ANSWER)
        ));
    }
    Ok(r)
}

/// `1 MiB`, `8 KiB`: a cap as messages name it.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// The URL without `user:password@`, and that user info as a Basic `authorization`
/// value (percent-decoded, as browsers and curl send it).
fn split_credentials(url: &str) -> Result<(hyper::Uri, Option<String>), String> {
    let u: hyper::Uri = url
        .parse()
        .map_err(|_| "not a valid URL (expected https://host/…)".to_string())?;
    let Some((userinfo, host)) = u
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(i, h)| (i.to_string(), h.to_string()))
    else {
        return Ok((u, None));
    };
    let auth = format!(
        "Basic {}",
        crate::opencode::base64(&percent_decode(&userinfo))
    );
    let mut parts = u.into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|_| "the URL has no valid host".to_string())?,
    );
    let bare = hyper::Uri::from_parts(parts).map_err(|_| "not a valid URL".to_string())?;
    Ok((bare, Some(auth)))
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// One request with a whole-call timeout, reading at most `max_body` bytes of the answer
/// (`cut` says there was more; the connection is then dropped, not drained).
pub async fn send_capped(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
    timeout: Duration,
    max_body: usize,
) -> Result<Response, String> {
    check_url(url)?;
    let (uri, basic) = split_credentials(url)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("no TLS trust roots on this system: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", concat!("asdo/", env!("CARGO_PKG_VERSION")));
    if let Some(auth) = &basic {
        req = req.header("authorization", auth.as_str());
    }
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
        let mut answer = resp.into_body();
        let mut bytes = Vec::new();
        let mut cut = false;
        while let Some(frame) = answer.frame().await {
            let frame = frame.map_err(|e| format!("{}: reading the answer: {e}", origin(url)))?;
            if let Some(data) = frame.data_ref() {
                let room = max_body - bytes.len();
                if data.len() > room {
                    bytes.extend_from_slice(&data[..room]);
                    cut = true;
                    break;
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            cut,
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
        let (bare, auth) = split_credentials("http://us%65r:p%40ss@127.0.0.1:8080/x?q=1").unwrap();
        assert_eq!(bare.to_string(), "http://127.0.0.1:8080/x?q=1");
        // base64("user:p@ss")
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwQHNz"));
        let (bare, auth) = split_credentials("https://example.com/hook").unwrap();
        assert_eq!(
            (bare.to_string().as_str(), auth),
            ("https://example.com/hook", None)
        );
        assert_eq!(size(8 * 1024), "8 KiB");
        assert_eq!(size(MAX_ANSWER), "1 MiB");
        assert!(check_url("hooks.slack.com/x").is_err());
        check_url("https://example.com/hook").unwrap();
    }
}
