//! Who may talk to `asdo ui`: the holder of its token, through the address it serves.
//!
//! The page can read every task's log and delete pods with the user's credentials, so it
//! is guarded like Jupyter's or `kubectl proxy`'s local servers should be:
//! - a random token, given once in the printed URL, then kept in an HttpOnly,
//!   SameSite=Strict cookie (the URL is redirected to drop it from the address bar);
//! - the Host header must name the served address (an IP literal or `localhost`, with our
//!   port): a DNS-rebinding page reaches us under its own domain name and is refused;
//! - an Origin, when sent, must be the same origin; state-changing requests (POST,
//!   DELETE) must send one (browsers always do for them) and carry the cookie.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, header};

/// What a request is refused for; the status and the one line the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the Host or Origin is not ours.
    ForeignHost,
    ForeignOrigin,
    /// 401: no token, or a wrong one.
    NoToken,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::ForeignHost | Refusal::ForeignOrigin => 403,
            Refusal::NoToken => 401,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::ForeignHost => {
                "403 Forbidden: this server answers only to the address asdo ui printed (Host header refused)\n"
            }
            Refusal::ForeignOrigin => {
                "403 Forbidden: cross-origin request refused; use the page asdo ui printed\n"
            }
            Refusal::NoToken => {
                "401 Unauthorized: open the URL `asdo ui` printed (with its ?token=); the token is kept in a cookie after that\n"
            }
        }
    }
}

/// The access rules of one running server.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    /// The address bound; unspecified (0.0.0.0, ::) accepts any IP literal.
    addr: IpAddr,
    port: u16,
}

/// How a request passed: with the cookie, or with the token in the query (first visit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Cookie,
    Query,
}

impl Guard {
    pub fn new(token: String, addr: IpAddr, port: u16) -> Guard {
        Guard { token, addr, port }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The cookie's name: per port, because cookies are per host, not per port, and two
    /// servers on one machine must not overwrite each other's.
    pub fn cookie_name(&self) -> String {
        format!("asdo-ui-{}", self.port)
    }

    /// The Set-Cookie value for a visitor who showed the token.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name(),
            self.token
        )
    }

    /// Is `host` (a Host header value, or an origin's authority) the served address?
    pub fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.port) {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return self.addr.is_loopback() || self.addr.is_unspecified();
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.addr.is_unspecified() || ip == self.addr,
            Err(_) => false,
        }
    }

    /// Checks one request: Host, Origin, then the token (cookie or `?token=`).
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Pass, Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.host_ok(host) {
            return Err(Refusal::ForeignHost);
        }
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        match origin {
            Some(o) if o.strip_prefix("http://") != Some(host) => {
                return Err(Refusal::ForeignOrigin);
            }
            None if changes_state => return Err(Refusal::ForeignOrigin),
            _ => {}
        }
        if self.cookie_ok(headers) {
            return Ok(Pass::Cookie);
        }
        // The token in the query only opens pages; a state change needs the cookie
        // (SameSite=Strict is what keeps other sites from sending it).
        if !changes_state
            && query
                .and_then(token_param)
                .is_some_and(|t| eq(t, &self.token))
        {
            return Ok(Pass::Query);
        }
        Err(Refusal::NoToken)
    }

    fn cookie_ok(&self, headers: &HeaderMap) -> bool {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == name && eq(v, &self.token))
    }
}

fn token_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
}

/// Constant-time comparison: the time taken says nothing about how much matched.
fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 32 random bytes from the OS, hex: the token. /dev/urandom (Linux, macOS) is the OS's
/// CSPRNG, and reading it needs no crate.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Also strip `token=` from a query, for the redirect after the first visit.
pub fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard() -> Guard {
        Guard::new("t0k".repeat(4), "127.0.0.1".parse().unwrap(), 8123)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_must_be_the_served_address() {
        let g = guard();
        assert!(g.host_ok("127.0.0.1:8123"));
        assert!(g.host_ok("localhost:8123"));
        for bad in [
            "evil.example:8123",
            "127.0.0.1:8124",
            "127.0.0.2:8123",
            "127.0.0.1",
            "",
            "localhost.evil.example:8123",
        ] {
            assert!(!g.host_ok(bad), "{bad}");
        }
        let any = Guard::new("x".into(), "0.0.0.0".parse().unwrap(), 80);
        assert!(any.host_ok("10.1.2.3:80"));
        assert!(!any.host_ok("rebind.example:80"), "never a DNS name");
        let v6 = Guard::new("x".into(), "::1".parse().unwrap(), 80);
        assert!(v6.host_ok("[::1]:80"));
    }

    #[test]
    fn token_from_cookie_or_query_only_for_reads() {
        let g = guard();
        let t = g.token().to_string();
        let host = ("host", "127.0.0.1:8123");
        let get = Method::GET;
        assert_eq!(
            g.check(&get, &headers(&[host]), None),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            g.check(&get, &headers(&[host]), Some(&format!("token={t}"))),
            Ok(Pass::Query)
        );
        assert_eq!(
            g.check(&get, &headers(&[host]), Some("token=wrong")),
            Err(Refusal::NoToken)
        );
        let cookie = format!("other=1; asdo-ui-8123={t}");
        assert_eq!(
            g.check(&get, &headers(&[host, ("cookie", &cookie)]), None),
            Ok(Pass::Cookie)
        );
        let other_port = format!("asdo-ui-9999={t}");
        assert_eq!(
            g.check(&get, &headers(&[host, ("cookie", &other_port)]), None),
            Err(Refusal::NoToken)
        );
        // Even with the token, a foreign Host is refused first.
        assert_eq!(
            g.check(
                &get,
                &headers(&[("host", "evil.example:8123"), ("cookie", &cookie)]),
                None
            ),
            Err(Refusal::ForeignHost)
        );
    }

    #[test]
    fn state_changes_need_cookie_and_same_origin() {
        let g = guard();
        let t = g.token().to_string();
        let cookie = format!("asdo-ui-8123={t}");
        let host = ("host", "127.0.0.1:8123");
        let post = Method::POST;
        let same = ("origin", "http://127.0.0.1:8123");
        assert_eq!(
            g.check(&post, &headers(&[host, same, ("cookie", &cookie)]), None),
            Ok(Pass::Cookie)
        );
        assert_eq!(
            g.check(&post, &headers(&[host, ("cookie", &cookie)]), None),
            Err(Refusal::ForeignOrigin),
            "no Origin"
        );
        assert_eq!(
            g.check(
                &post,
                &headers(&[host, ("origin", "http://evil.example"), ("cookie", &cookie)]),
                None
            ),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            g.check(
                &Method::DELETE,
                &headers(&[host, same]),
                Some(&format!("token={t}"))
            ),
            Err(Refusal::NoToken),
            "a query token never authorises a change"
        );
    }

    #[test]
    fn tokens_are_random_and_stripped_from_redirects() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token().unwrap());
        assert_eq!(without_token("token=abc&x=1"), "x=1");
        assert_eq!(without_token("token=abc"), "");
    }
}
