//! A local task's OpenCode server, reached straight at the 127.0.0.1 port its runner
//! picked (state.json, `ASDO_OPENCODE_PORT`): no port-forward, and the password from the
//! task's own 0600 file. The rest (waiting until the server answers, the session from the
//! log, the `Remote` that attach, send and the web page use) is `crate::remote`'s.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};

use super::{Store, TaskDir};
use crate::error::{Error, Result};
use crate::opencode;
use crate::remote::{self, Endpoint, Remote};
use crate::taskpod::TaskPod;

/// The running local task's server, checked to answer with the password: `password`
/// from `--password-file` / `OPENCODE_SERVER_PASSWORD` when given, else the task's own.
/// `local_port` is a forward's and has no meaning here: a non-zero one is refused.
pub async fn open(
    store: &Store,
    task_or_pod: &str,
    password: Option<String>,
    local_port: u16,
) -> Result<Remote> {
    if local_port != 0 {
        return Err(port_refused(task_or_pod));
    }
    let Some((t, pod)) = store.pod(task_or_pod)? else {
        return Err(super::logs::not_found(store, task_or_pod));
    };
    let name = TaskPod(&pod).name().to_string();
    let task = TaskPod(&pod)
        .task_label()
        .unwrap_or(task_or_pod)
        .to_string();
    let logs = crate::runtime::Runtime::Local(store.clone()).command(&format!("logs {task}"));
    let phase = TaskPod(&pod).phase();
    if phase != crate::taskpod::Phase::Running {
        return Err(remote::not_running(&task, &logs, phase));
    }
    let io =
        |what: &str, e: std::io::Error| Error::other(format!("local task {task}: {what}: {e}"));
    let port = t
        .state()
        .map_err(|e| io("reading its state", e))?
        .and_then(|s| s.port)
        .ok_or_else(|| {
            Error::other(format!(
                "local task {task} is running but its state names no OpenCode port; see `{logs}`"
            ))
        })?;
    let (password, password_from) = match password {
        Some(p) => (
            p,
            format!("--password-file or {}", crate::contract::PASSWORD_ENV),
        ),
        None => {
            let text = std::fs::read_to_string(t.password())
                .map_err(|e| io(&format!("reading {}", t.password().display()), e))?;
            (
                text.trim().to_string(),
                format!("the task's password file {}", t.password().display()),
            )
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let oc = opencode::Client::new(addr.to_string(), Some(&password));
    // A task that ends while its server starts never answers: say so at once.
    let ended = || {
        let (_, p) = store.pod(&name).ok()??;
        let view = TaskPod(&p);
        view.is_finished()
            .then(|| remote::not_running(&task, &logs, view.phase()))
    };
    remote::wait_ready(&oc, &task, &format!("127.0.0.1:{port}"), &logs, ended).await?;
    let session = remote::session_in_log(&log_head(&t), &task, &logs)?;
    Ok(Remote {
        task,
        pod: name,
        port,
        endpoint: Endpoint::Direct(addr),
        logs,
        client: oc,
        session,
        password_from,
        password,
    })
}

/// The one line for `--port` on the local runtime.
pub fn port_refused(task: &str) -> Error {
    Error::usage(format!(
        "--port is for a port-forward, and a local task needs none: its server listens on 127.0.0.1 already (`asdo --runtime local attach {task} --print-url` prints where)"
    ))
}

/// The first MiB of the task's log, its lines without their timestamps (what the API
/// server's log endpoint gives without `timestamps=true`).
fn log_head(t: &TaskDir) -> String {
    let mut raw = Vec::new();
    if let Ok(f) = std::fs::File::open(t.log()) {
        let _ = f
            .take(crate::cluster::LOG_TAIL_MAX as u64)
            .read_to_end(&mut raw);
    }
    let mut out = String::with_capacity(raw.len());
    for l in raw.split_inclusive(|b| *b == b'\n') {
        let body = crate::follow::split_timestamp(l).map_or(l, |(_, rest)| rest);
        out.push_str(&String::from_utf8_lossy(body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_head_loses_its_timestamps_and_keeps_the_session() {
        let d = std::env::temp_dir().join(format!("asdo-localremote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = TaskDir { dir: d.clone() };
        let mut log = Vec::new();
        for l in [
            "asdo: running opencode\n",
            "asdo: opencode session ses_abc123 on http://127.0.0.1:4096\n",
        ] {
            log.extend(super::super::logfile::stamped(l.as_bytes()));
        }
        std::fs::write(t.log(), &log).unwrap();
        let head = log_head(&t);
        assert!(head.starts_with("asdo: running opencode\n"), "{head}");
        assert_eq!(
            remote::session_in_log(&head, "T1", "asdo --runtime local logs T1").unwrap(),
            Some("ses_abc123".to_string())
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn port_is_refused_in_one_line() {
        let e = port_refused("T1");
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains('\n'));
    }
}
