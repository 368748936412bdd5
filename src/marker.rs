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

/// Log lines read back to find the agent's last marker and to explain a failure: the agent
/// prints its final markers (summary, pr, done/failed) as its very last lines.
pub const TAIL_LINES: i64 = 40;
/// Starts the agent's one-line-per-step progress (`· write src/auth.rs`), printed between
/// the markers; not a marker, so never a verdict.
pub const STEP: &str = "· ";
/// `asdo: summary: …` is printed once, just before the final marker; `asdo: so far: …`
/// (same body) after each model turn, so `asdo status` can show a running task's totals.
const SUMMARY: &str = "summary: ";
const SO_FAR: &str = "so far: ";

/// What the agent's session did, from `asdo: summary: files 2, tokens 240 in / 60 out, cost $0.0123`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub files: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// In US dollars, when the provider reports prices.
    pub cost: Option<f64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "files {}, tokens {} in / {} out",
            self.files, self.tokens_in, self.tokens_out
        )?;
        if let Some(c) = self.cost {
            write!(f, ", cost ${c:.4}")?;
        }
        Ok(())
    }
}

impl Summary {
    /// The marker line that carries it.
    pub fn marker(&self) -> Marker {
        Marker::Progress(format!("{SUMMARY}{self}"))
    }

    /// The running totals, after a model turn.
    pub fn so_far(&self) -> Marker {
        Marker::Progress(format!("{SO_FAR}{self}"))
    }

    /// Reads back what [`Summary::marker`] or [`Summary::so_far`] printed.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim_end().strip_prefix(PREFIX)?;
        let rest = rest
            .strip_prefix(SUMMARY)
            .or_else(|| rest.strip_prefix(SO_FAR))?;
        let mut s = Summary::default();
        let (files, rest) = rest.strip_prefix("files ")?.split_once(", tokens ")?;
        s.files = files.parse().ok()?;
        let (tin, rest) = rest.split_once(" in / ")?;
        s.tokens_in = tin.parse().ok()?;
        let (tout, cost) = match rest.split_once(" out") {
            Some((t, c)) => (t, c),
            None => (rest, ""),
        };
        s.tokens_out = tout.parse().ok()?;
        if let Some(c) = cost.strip_prefix(", cost $") {
            s.cost = Some(c.parse().ok()?);
        }
        Some(s)
    }
}

/// The newest summary line in a log excerpt.
pub fn last_summary(log: &str) -> Option<Summary> {
    log.lines().rev().find_map(Summary::parse)
}

/// The newest step line (`· …`) in a log excerpt, without its bullet.
pub fn last_step(log: &str) -> Option<&str> {
    log.lines().rev().find_map(|l| l.strip_prefix(STEP))
}

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

/// The pull/merge request the agent opened (`asdo: pr <url>`), if its log says so.
pub fn pr_url(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let url = l.trim_end().strip_prefix(PREFIX)?.strip_prefix("pr ")?;
        url.starts_with("http").then(|| url.to_string())
    })
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
/// one, never half, and it survives a crash (see `fsutil::write_atomic`).
pub fn write_atomic(target: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(target, data)
}

/// fsync a directory so a rename or removal in it is durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    crate::fsutil::sync_dir(dir)
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
    fn summaries_and_steps() {
        let s = Summary {
            files: 2,
            tokens_in: 240,
            tokens_out: 60,
            cost: Some(0.0123),
        };
        let line = s.marker().to_string();
        assert_eq!(
            line,
            "asdo: summary: files 2, tokens 240 in / 60 out, cost $0.0123"
        );
        assert_eq!(Summary::parse(&line), Some(s));
        let free = Summary { cost: None, ..s };
        assert_eq!(Summary::parse(&free.marker().to_string()), Some(free));
        let log = format!("· write a.txt\n{line}\n· says: done\nasdo: done abc\n");
        assert_eq!(last_summary(&log), Some(s));
        assert_eq!(last_step(&log), Some("says: done"));
        assert_eq!(Summary::parse("asdo: summary: garbage"), None);
        assert_eq!(Summary::parse(&free.so_far().to_string()), Some(free));
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
