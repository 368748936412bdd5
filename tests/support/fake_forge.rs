//! A fake forge for tests: the slice of GitHub's and GitLab's REST APIs the agent uses to
//! open or update a pull/merge request, on 127.0.0.1, with one accepted token and every
//! request recorded (method, path, whether the auth header was right, body).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorized: bool,
    pub raw_headers: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// branch → (number, title, body)
    open: Vec<(String, u64, Value)>,
}

pub struct FakeForge {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeForge {
    /// Accepts `Authorization: Bearer <token>` (GitHub) and `PRIVATE-TOKEN: <token>` (GitLab).
    pub fn start(token: &str) -> FakeForge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (st, token, base) = (state.clone(), token.to_string(), url.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (st, token, base) = (st.clone(), token.clone(), base.clone());
                std::thread::spawn(move || serve(conn, &st, &token, &base));
            }
        });
        FakeForge { url, state }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(mut conn: std::net::TcpStream, st: &Mutex<State>, token: &str, base: &str) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if r.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (mut len, mut raw_headers, mut authorized) = (0usize, String::new(), false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        raw_headers.push_str(&line);
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        let value = line.split_once(':').map_or("", |(_, v)| v.trim());
        if (lower.starts_with("authorization:") && value == format!("Bearer {token}"))
            || (lower.starts_with("private-token:") && value == token)
        {
            authorized = true;
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut s = st.lock().unwrap();
    s.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        authorized,
        raw_headers,
        body: body.clone(),
    });
    let (code, answer) = if !authorized {
        (401, json!({"message": "Bad credentials"}))
    } else {
        route(&mut s, &method, &path, &body, base)
    };
    drop(s);
    let text = answer.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn route(s: &mut State, method: &str, path: &str, body: &str, base: &str) -> (u16, Value) {
    let req: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let github = path.starts_with("/repos/");
    let branch_key = if github { "head" } else { "source_branch" };
    let base_key = if github { "base" } else { "target_branch" };
    let web = |n: u64| {
        if github {
            json!({"number": n, "html_url": format!("{base}/pull/{n}")})
        } else {
            json!({"iid": n, "web_url": format!("{base}/-/merge_requests/{n}")})
        }
    };
    match method {
        "POST" => {
            let branch = req[branch_key].as_str().unwrap_or("").to_string();
            if req[base_key].as_str() == Some("no-such-base") {
                return (422, json!({"message": "Validation Failed"}));
            }
            if s.open.iter().any(|(b, _, _)| *b == branch) {
                return if github {
                    (422, json!({"message": "A pull request already exists"}))
                } else {
                    (
                        409,
                        json!({"message": ["Another open merge request already exists"]}),
                    )
                };
            }
            let n = s.open.len() as u64 + 1;
            s.open.push((branch, n, req));
            (201, web(n))
        }
        "GET" => {
            let want = query
                .split('&')
                .find_map(|kv| kv.strip_prefix(if github { "head=" } else { "source_branch=" }))
                .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
                .unwrap_or_default();
            let want = want.rsplit(':').next().unwrap_or("").to_string();
            let hits: Vec<Value> = s
                .open
                .iter()
                .filter(|(b, _, _)| *b == want)
                .map(|(_, n, _)| web(*n))
                .collect();
            (200, Value::Array(hits))
        }
        "PATCH" | "PUT" => {
            let n: u64 = path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match s.open.iter_mut().find(|(_, m, _)| *m == n) {
                Some(pr) => {
                    pr.2 = req;
                    (200, web(n))
                }
                None => (404, json!({"message": "Not Found"})),
            }
        }
        _ => (405, json!({"message": "method"})),
    }
}
