//! The local task's isolation, bubblewrap (`bwrap`, Debian package `bubblewrap`):
//!
//! - the whole system read-only (`--ro-bind / /`), a fresh /dev and /proc, its own /tmp
//!   and /var/tmp (tmpfs), its own pid namespace (`--unshare-pid`), a new session, and it
//!   dies with its runner (`--die-with-parent`);
//! - the user's home and asdo's state directory hidden (tmpfs over them), then only what
//!   the task was given bound back: its clone and HOME writable, its input read-only, a
//!   local git remote (`file://` or a path) writable (the agent pushes to it), and the
//!   directories of the programs it runs (asdo, opencode, PATH entries) read-only;
//! - the network kept: the model server and git remotes are the agent's job.
//!
//! What it does not hide: other directories outside the home (read-only). Stated in the
//! README.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The bwrap on PATH, or the one line that says which package to install.
pub fn bwrap(path_var: Option<&str>) -> Result<PathBuf, String> {
    find_on_path("bwrap", path_var.map(AsRef::as_ref)).ok_or_else(|| {
        "bubblewrap (bwrap) is not installed: install the `bubblewrap` package (apt-get install bubblewrap), or pass --no-sandbox to run the agent with your own rights".to_string()
    })
}

/// What `--no-sandbox` says on every spawn.
pub const NO_SANDBOX_WARNING: &str = "warning: --no-sandbox: the agent runs with your own rights (your files, your credentials); only for code and prompts you trust";

pub fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The mounts of one task's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// tmpfs over each (the user's home, the state directory).
    pub hide: Vec<PathBuf>,
    /// Bound back read-only (when they exist).
    pub read_only: Vec<PathBuf>,
    /// Bound back writable.
    pub writable: Vec<PathBuf>,
    /// The working directory inside.
    pub chdir: PathBuf,
}

/// bwrap's arguments for a layout, ending with `--` (the command follows).
pub fn args(l: &Layout) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
    push(&["--ro-bind".as_ref(), "/".as_ref(), "/".as_ref()]);
    push(&["--dev".as_ref(), "/dev".as_ref()]);
    push(&["--proc".as_ref(), "/proc".as_ref()]);
    push(&["--tmpfs".as_ref(), "/tmp".as_ref()]);
    push(&["--tmpfs".as_ref(), "/var/tmp".as_ref()]);
    // Parents before children, so a later tmpfs is not covered by an earlier one; a
    // path under /tmp is already hidden by /tmp's tmpfs.
    let mut hide: Vec<&PathBuf> = l
        .hide
        .iter()
        .filter(|p| p.is_absolute() && p.as_os_str() != "/")
        .filter(|p| !under(p, Path::new("/tmp")) && !under(p, Path::new("/var/tmp")))
        .collect();
    hide.sort_by_key(|p| p.components().count());
    hide.dedup();
    for h in hide {
        push(&["--tmpfs".as_ref(), h.as_os_str()]);
    }
    for r in &l.read_only {
        push(&["--ro-bind-try".as_ref(), r.as_os_str(), r.as_os_str()]);
    }
    for w in &l.writable {
        push(&["--bind".as_ref(), w.as_os_str(), w.as_os_str()]);
    }
    push(&[
        "--unshare-pid".as_ref(),
        "--die-with-parent".as_ref(),
        "--new-session".as_ref(),
    ]);
    push(&["--chdir".as_ref(), l.chdir.as_os_str()]);
    push(&["--".as_ref()]);
    a
}

/// `p` is `root` or inside it.
pub fn under(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

/// The directories a program needs read-only, given where it is: its own directory, and
/// for an npm install (opencode-ai) the whole `node_modules` it lives in, whose sibling
/// package holds the real binary.
pub fn program_dirs(program: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in [
        program.to_path_buf(),
        std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf()),
    ] {
        if let Some(d) = p.parent() {
            out.push(d.to_path_buf());
        }
        let mut cur = p.as_path();
        while let Some(parent) = cur.parent() {
            if parent.file_name().is_some_and(|n| n == "node_modules") {
                out.push(parent.to_path_buf());
                break;
            }
            cur = parent;
        }
    }
    out.dedup();
    out
}

/// A git remote on this machine (`file://…` or an absolute path), which the agent must
/// read and push to.
pub fn local_remote(repo: &str) -> Option<PathBuf> {
    let p = repo.strip_prefix("file://").unwrap_or(repo);
    p.starts_with('/').then(|| PathBuf::from(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[OsString]) -> String {
        a.iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn hides_then_binds_back() {
        let l = Layout {
            hide: vec![
                "/home/u/.local/state/asdo".into(),
                "/home/u".into(),
                "/tmp/x".into(),
            ],
            read_only: vec!["/home/u/.cargo/bin".into()],
            writable: vec!["/home/u/.local/state/asdo/tasks/agent-t1/workspace".into()],
            chdir: "/home/u/.local/state/asdo/tasks/agent-t1/workspace".into(),
        };
        assert_eq!(
            s(&args(&l)),
            "--ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /var/tmp \
             --tmpfs /home/u --tmpfs /home/u/.local/state/asdo \
             --ro-bind-try /home/u/.cargo/bin /home/u/.cargo/bin \
             --bind /home/u/.local/state/asdo/tasks/agent-t1/workspace /home/u/.local/state/asdo/tasks/agent-t1/workspace \
             --unshare-pid --die-with-parent --new-session \
             --chdir /home/u/.local/state/asdo/tasks/agent-t1/workspace --"
        );
    }

    #[test]
    fn npm_installs_keep_their_node_modules() {
        let d = program_dirs(Path::new("/h/oc/node_modules/.bin/opencode"));
        assert!(d.contains(&PathBuf::from("/h/oc/node_modules")), "{d:?}");
        assert_eq!(
            local_remote("file:///srv/r.git"),
            Some(PathBuf::from("/srv/r.git"))
        );
        assert_eq!(
            local_remote("/srv/r.git"),
            Some(PathBuf::from("/srv/r.git"))
        );
        assert_eq!(local_remote("https://x/r.git"), None);
    }
}
