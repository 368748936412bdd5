//! Where followed lines go: stdout for one pod, a prefixing writer for many (in
//! [`super::many`]), and the two sinks `--tail` reads through.

use std::io::Write;

use k8s_openapi::jiff::Timestamp;

/// Where followed lines go: stdout for one pod, a prefixing writer for many.
pub trait LineSink: Send {
    /// `line` includes its newline (except possibly the very last line of a log).
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Plain stdout, optionally with the timestamps kept.
pub struct Stdout {
    out: std::io::BufWriter<std::io::Stdout>,
    timestamps: bool,
}

impl Stdout {
    pub fn new(timestamps: bool) -> Self {
        Stdout {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            timestamps,
        }
    }
}

impl LineSink for Stdout {
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        if let (true, Some(ts)) = (self.timestamps, ts) {
            self.out.write_all(ts)?;
            self.out.write_all(b" ")?;
        }
        self.out.write_all(line)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Where `--tail N` starts: the first timestamp of a `tailLines` read, whose lines are
/// printed nowhere.
#[derive(Default)]
pub(super) struct FirstStamp(pub(super) Option<Timestamp>);

impl LineSink for FirstStamp {
    fn line(&mut self, ts: Option<&[u8]>, _: &[u8]) -> std::io::Result<()> {
        if self.0.is_none() {
            self.0 = ts
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse().ok());
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last `keep` lines of a read, none stamped before `min`, held until the read is
/// complete.
pub(super) struct Ring {
    keep: usize,
    min: Timestamp,
    lines: std::collections::VecDeque<(Option<Vec<u8>>, Vec<u8>)>,
}

impl LineSink for Ring {
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        let stamp: Option<Timestamp> = ts
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse().ok());
        if stamp.is_some_and(|t| t < self.min) || self.keep == 0 {
            return Ok(());
        }
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines
            .push_back((ts.map(<[u8]>::to_vec), line.to_vec()));
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Ring {
    pub(super) fn new(keep: usize, min: Timestamp) -> Self {
        Ring {
            keep,
            min,
            lines: Default::default(),
        }
    }

    pub(super) fn drain_into(&mut self, sink: &mut dyn LineSink) -> std::io::Result<()> {
        for (ts, line) in self.lines.drain(..) {
            sink.line(ts.as_deref(), &line)?;
        }
        sink.flush()
    }
}
