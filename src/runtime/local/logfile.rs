//! A local task's log: the agent's stdout and stderr, one line at a time, each stamped
//! `<RFC 3339, nine fractional digits, UTC> <line>` as the kubelet stamps `timestamps=true`
//! lines, so a reader resumes from a timestamp and tails exactly as against the API server
//! (`follow::Cursor`). The file is opened O_APPEND and each stamped line is one write(2),
//! so lines of the two streams never interleave mid-line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Longest line kept whole; a longer one is split (the kubelet splits at 16 KiB too).
const MAX_LINE: usize = 16 * 1024;

/// Opens (creating, 0600) the log for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// One stamped line (a newline added when the stream ended without one).
pub fn stamped(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 32);
    out.extend_from_slice(super::now().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// Copies `from` into the shared log line by line, stamping each, until EOF.
pub fn pump(from: impl Read, log: Arc<Mutex<File>>) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, from);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let out = stamped(&line);
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&out)?;
    }
}

/// Appends one stamped line (the runner's own words, e.g. why the agent did not start).
pub fn append_line(log: &Mutex<File>, text: &str) -> io::Result<()> {
    let out = stamped(text.as_bytes());
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_stamped_and_parses_back() {
        let p = std::env::temp_dir().join(format!("asdo-logfile-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let log = Arc::new(Mutex::new(open_append(&p).unwrap()));
        pump(&b"one\ntwo\nno newline"[..], log.clone()).unwrap();
        let text = std::fs::read(&p).unwrap();
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        let mut last = None;
        for (l, want) in lines.iter().zip(["one\n", "two\n", "no newline\n"]) {
            let (ts, rest) = crate::follow::split_timestamp(l).unwrap();
            assert_eq!(rest, want.as_bytes());
            assert!(last.is_none_or(|t| t <= ts), "in order");
            last = Some(ts);
            // Nine fractional digits, as the kubelet writes them.
            assert_eq!(l.iter().position(|b| *b == b' '), Some(30));
        }
        std::fs::remove_file(&p).unwrap();
    }
}
