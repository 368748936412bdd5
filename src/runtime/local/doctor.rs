//! `asdo --runtime local doctor`: what a local task needs on this machine, checked the
//! way a task would use it (bwrap makes a real sandbox, the programs run), each with what
//! to do next. The cluster's doctor asks the API server instead; `cli/doctor.rs` chooses
//! and prints.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Phase, Store, sandbox};

pub use crate::doctor::{Check, Level};

fn check(level: Level, message: impl Into<String>) -> Check {
    Check::new(level, message)
}

/// Longest any probe (`bwrap … true`, `opencode --version`) may take: a node start on a
/// loaded machine takes seconds, never this long.
const PROBE_LIMIT: Duration = Duration::from_secs(60);

/// What the checks read from the environment, so tests can give their own.
pub struct Host<'a> {
    /// The state directory (`Store::from_env`), None when there is none.
    pub store: Option<Store>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Every variable's name (values are never read for secrets: only that they are set).
    pub names: Vec<String>,
    /// `spawn --max-parallel`'s default.
    pub max_parallel: usize,
}

impl Host<'static> {
    /// This process's environment.
    pub fn from_env() -> Host<'static> {
        Host {
            store: Store::from_env().ok(),
            env: &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            names: std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect(),
            max_parallel: super::default_max_parallel(),
        }
    }
}

/// Every check, in the order a task needs them.
pub fn run(h: &Host) -> Vec<Check> {
    let path = (h.env)("PATH");
    vec![
        state_dir(h.store.as_ref()),
        bubblewrap(path.as_deref(), (h.env)("HOME").as_deref()),
        opencode(path.as_deref()),
        git(path.as_deref()),
        slots(h.store.as_ref(), h.max_parallel),
        provider(h),
    ]
}

fn state_dir(store: Option<&Store>) -> Check {
    let Some(store) = store else {
        return check(
            Level::Fail,
            "no state directory for local tasks: set HOME, XDG_STATE_HOME or ASDO_STATE_DIR",
        );
    };
    let root = &store.root;
    let probe = root.join(format!(".doctor-{}", std::process::id()));
    let made =
        std::fs::create_dir_all(store.tasks_dir()).and_then(|()| std::fs::write(&probe, b""));
    let _ = std::fs::remove_file(&probe);
    match made {
        Ok(()) => check(
            Level::Ok,
            format!("state directory {} is writable", root.display()),
        ),
        Err(e) => check(
            Level::Fail,
            format!(
                "state directory {} is not writable ({e}): fix its permissions, or point ASDO_STATE_DIR elsewhere",
                root.display()
            ),
        ),
    }
}

fn bubblewrap(path: Option<&str>, home: Option<&str>) -> Check {
    let bwrap = match sandbox::bwrap(path) {
        Ok(b) => b,
        Err(e) => return check(Level::Fail, e),
    };
    // The flags a task's sandbox gets (the home hidden, its own /tmp, /proc and pid
    // namespace), running `true`: a kernel without unprivileged user namespaces, or a
    // container without the rights bwrap needs, fails here rather than at the first spawn.
    let layout = sandbox::Layout {
        hide: home.map(PathBuf::from).into_iter().collect(),
        chdir: PathBuf::from("/"),
        ..Default::default()
    };
    let mut cmd = Command::new(&bwrap);
    cmd.args(sandbox::args(&layout)).arg("true");
    match probe(cmd) {
        Ok((true, _)) => check(
            Level::Ok,
            format!("bubblewrap makes a sandbox ({} … true)", bwrap.display()),
        ),
        Ok((false, err)) => check(
            Level::Fail,
            format!(
                "bubblewrap ({}) cannot make a sandbox here: {}; allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or the AppArmor profile for bwrap), or spawn with --no-sandbox to run agents with your own rights",
                bwrap.display(),
                first_line(&err)
            ),
        ),
        Err(e) => check(Level::Fail, format!("cannot run {}: {e}", bwrap.display())),
    }
}

fn opencode(path: Option<&str>) -> Check {
    let install = format!("npm install -g {}", crate::opencode::PACKAGE);
    let Some(bin) = sandbox::find_on_path("opencode", path.map(AsRef::as_ref)) else {
        return check(
            Level::Fail,
            format!("opencode is not on PATH (the agent runs it): {install}"),
        );
    };
    let mut cmd = Command::new(&bin);
    cmd.arg("--version");
    match probe(cmd) {
        Ok((true, out)) => {
            let version = first_line(&out);
            if version == crate::opencode::VERSION {
                check(
                    Level::Ok,
                    format!("opencode {version} on PATH ({})", bin.display()),
                )
            } else {
                check(
                    Level::Warn,
                    format!(
                        "opencode {version} on PATH ({}), asdo is built and tested against {}: {install}",
                        bin.display(),
                        crate::opencode::VERSION
                    ),
                )
            }
        }
        Ok((false, err)) => check(
            Level::Fail,
            format!(
                "{} --version failed: {}; reinstall it: {install}",
                bin.display(),
                first_line(&err)
            ),
        ),
        Err(e) => check(
            Level::Fail,
            format!("cannot run {}: {e}; {install}", bin.display()),
        ),
    }
}

fn git(path: Option<&str>) -> Check {
    let Some(bin) = sandbox::find_on_path("git", path.map(AsRef::as_ref)) else {
        return check(
            Level::Fail,
            "git is not on PATH (each task clones and pushes with it): install git",
        );
    };
    let mut cmd = Command::new(&bin);
    cmd.arg("--version");
    match probe(cmd) {
        Ok((true, out)) => check(
            Level::Ok,
            format!("{} ({})", first_line(&out), bin.display()),
        ),
        Ok((false, err)) => check(
            Level::Fail,
            format!("{} --version failed: {}", bin.display(), first_line(&err)),
        ),
        Err(e) => check(Level::Fail, format!("cannot run {}: {e}", bin.display())),
    }
}

fn slots(store: Option<&Store>, max: usize) -> Check {
    let Some(store) = store else {
        return check(Level::Fail, "no state directory, so no parallel slots");
    };
    let (mut running, mut queued) = (0, 0);
    for t in store.all().unwrap_or_default() {
        match t.view().map(|v| v.phase) {
            Ok(Phase::Running) => running += 1,
            Ok(Phase::Queued) => queued += 1,
            _ => {}
        }
    }
    let queued_text = if queued > 0 {
        format!(", {queued} queued")
    } else {
        String::new()
    };
    if running < max {
        check(
            Level::Ok,
            format!(
                "{} of {max} parallel slots free ({running} running{queued_text}; spawn --max-parallel, default {max}: the cores)",
                max - running
            ),
        )
    } else {
        check(
            Level::Warn,
            format!(
                "no parallel slot free ({running} running{queued_text}, --max-parallel default {max}): a new task is Queued until one ends (`asdo --runtime local list`), or spawn with a higher --max-parallel"
            ),
        )
    }
}

/// Where a task's OpenCode gets its provider: the user's config/auth files (copied into
/// the task's HOME), OPENCODE_CONFIG_CONTENT, or a provider key in the environment.
fn provider(h: &Host) -> Check {
    let mut found: Vec<String> = super::opencode_config_files(h.env)
        .into_iter()
        .filter(|(from, _)| from.is_file())
        .map(|(from, _)| from.display().to_string())
        .collect();
    if (h.env)("OPENCODE_CONFIG_CONTENT").is_some() {
        found.push("OPENCODE_CONFIG_CONTENT".into());
    }
    let mut keys: Vec<&str> = h
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| super::runner::is_secret(n) && *n != "GIT_TOKEN")
        .filter(|n| (h.env)(n).is_some())
        .collect();
    keys.sort_unstable();
    found.extend(keys.iter().map(|k| k.to_string()));
    if found.is_empty() {
        check(
            Level::Warn,
            "no OpenCode provider set up: no opencode.json or auth.json in your config, no OPENCODE_CONFIG_CONTENT, no *_API_KEY; run `opencode auth login` (or export your provider's API key) before spawning",
        )
    } else {
        check(
            Level::Ok,
            format!("OpenCode provider set-up a task gets: {}", found.join(", ")),
        )
    }
}

/// Runs `cmd` (no stdin) to its end within [`PROBE_LIMIT`]: whether it succeeded, and its
/// stdout when it did, else its stderr.
fn probe(mut cmd: Command) -> std::io::Result<(bool, String)> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(PROBE_LIMIT) {
        Ok(out) => out?,
        Err(_) => {
            // SAFETY: kill(2) on the child this function started and has not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return Err(std::io::Error::other(format!(
                "no answer within {}s",
                PROBE_LIMIT.as_secs()
            )));
        }
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(if out.status.success() {
        (true, text(&out.stdout))
    } else if out.stderr.iter().all(u8::is_ascii_whitespace) {
        (false, text(&out.stdout))
    } else {
        (false, text(&out.stderr))
    })
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<'a>(env: &'a dyn Fn(&str) -> Option<String>, names: &[&str]) -> Host<'a> {
        Host {
            store: None,
            env,
            names: names.iter().map(|s| s.to_string()).collect(),
            max_parallel: 2,
        }
    }

    #[test]
    fn a_provider_is_found_by_name_never_by_value() {
        let none = |_: &str| None;
        let c = provider(&host(&none, &[]));
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(c.message.contains("opencode auth login"), "{c:?}");
        let keyed = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-secret-value".to_string());
        let c = provider(&host(&keyed, &["ANTHROPIC_API_KEY", "GIT_TOKEN"]));
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.message.contains("ANTHROPIC_API_KEY"), "{c:?}");
        assert!(!c.message.contains("sk-secret-value"), "{c:?}");
        assert!(!c.message.contains("GIT_TOKEN"), "not a provider: {c:?}");
    }

    #[test]
    fn missing_programs_say_what_to_install() {
        let c = opencode(Some("/nonexistent"));
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.message.contains("npm install -g opencode-ai@1.18.33"),
            "{c:?}"
        );
        let c = git(Some("/nonexistent"));
        assert_eq!(c.level, Level::Fail);
        let c = bubblewrap(Some("/nonexistent"), None);
        assert_eq!(c.level, Level::Fail);
        assert!(c.message.contains("`bubblewrap`"), "{c:?}");
    }
}
