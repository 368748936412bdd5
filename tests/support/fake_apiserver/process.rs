//! A container as a local process: its own process group (so signals reach
//! everything it started), stdout and stderr on one pipe read into the log,
//! and the exit code a container runtime would report.

use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;

use super::logs::LogBuf;
use super::util;

pub(crate) fn signal(pgid: i32, sig: i32) {
    // SAFETY: kill(2) on our own child's process group; a stale group just gives ESRCH.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Starts the process in its own process group with stdout and stderr on one
/// pipe, so the log keeps the order in which the two were written.
pub(crate) fn spawn(
    argv: &[String],
    env: &[(String, String)],
    dir: &std::path::Path,
    hostname: &str,
) -> std::io::Result<(std::process::Child, std::io::PipeReader)> {
    use std::os::unix::process::CommandExt;
    let (reader, writer) = std::io::pipe()?;
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("HOSTNAME", hostname)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let child = cmd.spawn()?;
    // The Command holds the pipe's write ends; they must close for the reader to see EOF.
    drop(cmd);
    Ok((child, reader))
}

/// Splits output into lines stamped when read, as the container runtime does;
/// a last line without a newline is still a line.
pub(crate) fn pump(mut reader: std::io::PipeReader, log: &LogBuf) {
    let mut pending: Vec<u8> = vec![];
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut chunk) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        if let Some(last) = pending.iter().rposition(|b| *b == b'\n') {
            let complete: Vec<u8> = pending.drain(..=last).collect();
            log.append(&complete, util::now().as_nanosecond());
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        log.append(&pending, util::now().as_nanosecond());
    }
}

/// SIGTERM, then SIGKILL once `grace` is over (at once for a zero grace period).
pub(crate) async fn terminate(
    pgid: i32,
    grace: Duration,
    exit: &mut oneshot::Receiver<Option<ExitStatus>>,
) -> Option<ExitStatus> {
    if !grace.is_zero() {
        signal(pgid, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, &mut *exit).await {
            return status.ok().flatten();
        }
    }
    signal(pgid, libc::SIGKILL);
    exit.await.ok().flatten()
}

/// 128 + signal for a killed process, as container runtimes report it.
pub(crate) fn exit_code(status: Option<ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        None => 137,
    }
}
