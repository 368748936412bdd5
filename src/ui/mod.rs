//! `asdo ui`: every task live in a browser, served by asdo itself on a loopback port,
//! reading the cluster with the user's kubeconfig (as `kubectl proxy` does), or the local
//! runtime's state directory (`--runtime local`): the same page for both, everything
//! task-specific going through the [`Runtime`].
//!
//! - `guard`: the token, Host and Origin rules every request passes first;
//! - `board`: the one watch of the task pods (`Runtime::watch`), as rows, broadcast to
//!   open pages;
//! - `routes`: the HTTP surface (page, SSE streams, send, delete, diff --stat);
//! - `assets/`: the page (HTML, CSS, vanilla JS), embedded: `cargo build` builds it all.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::error::{Error, Result, exit};
use crate::runtime::Runtime;
use crate::scope::Scope;

pub mod board;
pub mod guard;
mod routes;

/// What `asdo ui`'s flags ask for.
#[derive(Debug, Clone)]
pub struct Options {
    pub address: IpAddr,
    pub port: u16,
    pub open: bool,
    /// Every namespace (-A) rather than the scope's (a cluster's tasks only).
    pub all_namespaces: bool,
    /// Where the tasks are: the runtime, the cluster and namespace.
    pub scope: Scope,
}

/// What the handlers share.
pub(crate) struct App {
    pub guard: guard::Guard,
    pub board: Arc<board::Board>,
    /// Where the tasks run: every log, send and delete goes through it.
    pub runtime: Runtime,
    /// What is served, in words ([`serving`]), for the page.
    pub serving: String,
    /// Becomes true on Ctrl-C: open streams (events, logs, a send's reply) end then, or
    /// the graceful shutdown would wait for pages that never close them.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// What the server serves, for its start line: "the task pods of namespace X", "… of all
/// namespaces", or "the local tasks in <dir>".
pub fn serving(runtime: &Runtime, all_namespaces: bool) -> String {
    match runtime {
        Runtime::Kubernetes(_) if all_namespaces => "the task pods of all namespaces".into(),
        Runtime::Kubernetes(c) => format!("the task pods of namespace {}", c.namespace),
        Runtime::Local(store) => format!("the local tasks in {}", store.tasks_dir().display()),
    }
}

/// Serves until Ctrl-C. The first stdout line is the URL with the token.
pub async fn serve(opts: Options) -> Result<i32> {
    if !opts.address.is_loopback() {
        eprintln!(
            "warning: --address {} is not a loopback address: anyone who can reach it and learns the token can read task logs and delete task pods with your credentials",
            opts.address
        );
    }
    let runtime = Runtime::connect(&opts.scope).await?;
    // Bad input (a namespace no API path can hold) is refused before listening.
    let changes = runtime.watch(crate::task::SELECTOR, opts.all_namespaces)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(opts.address, opts.port))
        .await
        .map_err(|e| {
            Error::usage(format!(
                "cannot listen on {}:{}: {e}; pick another --port (0 = any free port)",
                opts.address, opts.port
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::other(format!("cannot read the listening address: {e}")))?;
    let token = guard::new_token()
        .map_err(|e| Error::other(format!("cannot read random bytes for the token: {e}")))?;
    let board = board::Board::new();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = Arc::new(App {
        guard: guard::Guard::new(token.clone(), local.ip(), local.port()),
        board: board.clone(),
        runtime: runtime.clone(),
        serving: serving(&runtime, opts.all_namespaces),
        stop: stopping,
    });
    let host = match local.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("http://{host}:{}/?token={token}", local.port());
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
    }
    eprintln!("asdo ui: serving {}; Ctrl-C to stop", app.serving);
    if opts.open {
        open_browser(&url);
    }
    let watch = tokio::spawn(board::watch(board, runtime, changes));
    let router = routes::router(app);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        })
        .await;
    watch.abort();
    served.map_err(|e| Error::other(format!("the web server stopped: {e}")))?;
    Ok(exit::OK)
}

/// Opens the page in the user's browser, when there is one; never fails. The URL (with
/// its token) goes through a private file holding a redirect, as Jupyter does, so the
/// token is not in the opener's argv for other local users to read in `ps`.
fn open_browser(url: &str) {
    let has_display = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let Some(file) = redirect_file(url) else {
        return;
    };
    let spawned = std::process::Command::new(opener)
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::info!("cannot run {opener}: {e}; open the URL by hand");
    }
}

fn redirect_file(url: &str) -> Option<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("asdo-ui-{}.html", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    write!(
        f,
        "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={url}\"><a href=\"{url}\">asdo ui</a>"
    )
    .ok()?;
    Some(path)
}
