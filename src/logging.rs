//! The process's diagnostics: the tracing subscriber behind -v/RUST_LOG (with the
//! secret-dumping dependencies held back), and a quiet end when stdout's reader goes away.
//! Set up once by `cli::main`; kept out of the clap layer because neither is about flags.

use std::io::IsTerminal;

/// Dependencies whose debug/trace lines dump what passes through them: WebSocket frames
/// (the port-forward carries OpenCode's `authorization: Basic …` header), HTTP heads,
/// hyper-util's pool keys (`user:password@host` of a webhook URL), TLS records. They are
/// held at `info` whatever -v or RUST_LOG asks, so no verbosity prints a secret; asdo's
/// own targets keep full verbosity.
const SECRET_DUMPING_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "rustls",
];

pub fn init_tracing(verbose: u8) {
    // Quiet by default: asdo reports its own failure as one line and its warnings as its own
    // `warning:` lines; kube-rs logs the same connection error at ERROR level, which would
    // print it twice, and a timestamped tracing line is noise next to them. -v shows
    // asdo's diagnostics, -vv the libraries too.
    let directives = match verbose {
        0 => "off",
        1 => "asdo=info,warn",
        2 => "asdo=debug,info",
        _ => "trace",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    for target in SECRET_DUMPING_TARGETS {
        if let Ok(d) = format!("{target}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(verbose >= 2)
        .init();
}

/// `asdo list | head -1`: when the reader of stdout goes away, end quietly as Unix tools do
/// (killed by SIGPIPE, status 141 in a shell) instead of panicking in `println!` on EPIPE.
/// Rust ignores SIGPIPE so that a write to a dead socket is an error, not death; sockets
/// are unaffected here (std and mio send with MSG_NOSIGNAL), and children get the default
/// disposition anyway. Not for `agent`, which writes to its children's pipes and must
/// outlive a child that died.
pub fn quiet_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to the default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
