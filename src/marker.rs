//! The agent's progress lines (`asdo: cloning …`, `asdo: done <sha>`, `asdo: failed <step>: <why>`),
//! as `wait` and `status` read them back from a pod's log.

/// What one marker line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Pushed this commit.
    Done(String),
    /// Finished with nothing to commit.
    NoChanges,
    /// Gave up at `step` (config, clone, agent, commit, push).
    Failed { step: String, reason: String },
    /// Any other progress line, e.g. `running opencode`.
    Progress(String),
}

pub const PREFIX: &str = "asdo: ";

pub fn parse(line: &str) -> Option<Marker> {
    let rest = line.trim_end().strip_prefix(PREFIX)?;
    if let Some(what) = rest.strip_prefix("done ") {
        return Some(if what == "no-changes" {
            Marker::NoChanges
        } else {
            Marker::Done(what.to_string())
        });
    }
    if let Some(what) = rest.strip_prefix("failed ") {
        let (step, reason) = what.split_once(": ").unwrap_or((what, ""));
        return Some(Marker::Failed {
            step: step.to_string(),
            reason: reason.to_string(),
        });
    }
    Some(Marker::Progress(rest.to_string()))
}

/// The newest marker in a log excerpt.
pub fn last(log: &str) -> Option<Marker> {
    log.lines().rev().find_map(parse)
}

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Marker::Done(sha) => write!(f, "{PREFIX}done {sha}"),
            Marker::NoChanges => write!(f, "{PREFIX}done no-changes"),
            Marker::Failed { step, reason } => write!(f, "{PREFIX}failed {step}: {reason}"),
            Marker::Progress(p) => write!(f, "{PREFIX}{p}"),
        }
    }
}

/// Write a marker or report file so a reader sees the old content or the whole new
/// one, never half, and it survives a crash: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(target: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so a rename or removal in it is durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for m in [
            Marker::Done("0123abcd".into()),
            Marker::NoChanges,
            Marker::Failed {
                step: "push".into(),
                reason: "rejected: non-fast-forward".into(),
            },
            Marker::Progress("running opencode".into()),
        ] {
            assert_eq!(parse(&m.to_string()), Some(m));
        }
        assert_eq!(parse("opencode says asdo: done x"), None);
    }

    #[test]
    fn last_wins() {
        let log = "asdo: cloning x\nnoise\nasdo: failed agent: opencode exited 1\nmore noise\n";
        assert_eq!(
            last(log),
            Some(Marker::Failed {
                step: "agent".into(),
                reason: "opencode exited 1".into()
            })
        );
        assert_eq!(last("nothing\n"), None);
    }
}
