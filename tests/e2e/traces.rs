//! No verbosity prints a secret: `attach`, `send` (here) and `wait --webhook` (hooks.rs)
//! at `-vvv`, and with RUST_LOG=trace, their whole output scanned for the OpenCode
//! password in every form it travels in (plain, Basic header, the Secret's base64, and
//! the hex that WebSocket frame dumps use).

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::common::*;
use crate::visibility::{SERVE, server_pod};

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every form of `secret` (and of `user:secret` as a Basic header) a trace could show.
pub fn secret_forms(user: &str, secret: &str) -> Vec<String> {
    let basic = base64(format!("{user}:{secret}").as_bytes());
    let forms = vec![
        secret.to_string(),
        basic.clone(),
        base64(secret.as_bytes()),
        hex(secret),
        hex(&basic),
    ];
    forms.into_iter().filter(|f| f.len() >= 8).collect()
}

pub fn assert_no_secret(what: &str, out: &str, forms: &[String]) {
    for f in forms {
        if let Some(at) = out.find(f.as_str()) {
            let line = out[..at].rsplit('\n').next().unwrap_or("");
            panic!(
                "{what} printed a secret ({f}) at -vvv, in the line starting {:?}",
                line.chars().take(200).collect::<String>()
            );
        }
    }
}

/// The trace really was on: asdo's dependencies said something below debug.
fn assert_verbose(what: &str, out: &str) {
    assert!(
        out.contains("TRACE") || out.contains("DEBUG"),
        "{what}: no trace output at -vvv:\n{}",
        out.chars().take(2000).collect::<String>()
    );
}

#[test]
fn attach_and_send_at_vvv_print_no_password() {
    let env = Env::new();
    let forms = secret_forms("opencode", PASSWORD);
    let script =
        format!("echo 'asdo: opencode session ses_trace1 on http://127.0.0.1:4096'; {SERVE}");
    env.server.insert_pod(server_pod(&env, "T601", &script));
    assert!(
        env.server
            .wait_for_phase(NS, "agent-t601", "Running", Duration::from_secs(30))
    );

    // attach --print-url: the password crosses the forward in the client's requests.
    let mut child = env.start(&["-vvv", "attach", "T601", "--print-url"]);
    // Drained all along: a full stderr pipe would stop attach mid-trace.
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let authority = url
        .trim()
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not a URL: {url:?}"))
        .trim_end_matches('/')
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = asdo::opencode::Client::new(&authority, Some(PASSWORD));
        assert!(c.healthy().await.unwrap());
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let run = wait_output(child, Duration::from_secs(60));
    let all = format!("{url}{rest}{}{}", run.stderr, stderr.join().unwrap());
    assert_verbose("attach", &all);
    assert_no_secret("attach", &all, &forms);

    // send: asdo itself sends the Basic header (health check, then the prompt), at -vvv
    // and with RUST_LOG=trace, which must not lift the hold either.
    for rust_log in [None, Some("trace")] {
        let mut c = env.cmd(&["-vvv", "send", "T601", "hello", "--timeout", "20s"]);
        if let Some(l) = rust_log {
            c.env("RUST_LOG", l);
        }
        let before = env.count("GET", "/pods/agent-t601/portforward");
        let run = run_with_timeout(c, Duration::from_secs(120));
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            env.count("GET", "/pods/agent-t601/portforward") > before,
            "send never reached the pod: {run:?}"
        );
        assert_verbose("send", &all);
        assert_no_secret(&format!("send (RUST_LOG={rust_log:?})"), &all, &forms);
    }
}
