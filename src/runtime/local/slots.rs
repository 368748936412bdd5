//! `--max-parallel`: slot files `slots/<n>` locked with flock(2). A lock lives exactly as
//! long as the runner's open file, so a runner that dies (even by SIGKILL) frees its slot
//! and nothing has to be cleaned up. The descriptor is close-on-exec: the agent does not
//! inherit it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// How often a queued runner looks for a free slot again.
const POLL: Duration = Duration::from_millis(500);

/// Tries slots 0..max once; the held slot's file, or None when all are taken.
pub fn try_acquire(dir: &Path, max: usize) -> io::Result<Option<(usize, File)>> {
    std::fs::create_dir_all(dir)?;
    for n in 0..max {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(n.to_string()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some((n, f)));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
    }
    Ok(None)
}

/// Waits for a free slot; the lock is held until the file is dropped. `None` once
/// `stop()` says so (the queued task was cancelled): it is asked before every try.
pub fn acquire(
    dir: &Path,
    max: usize,
    stop: impl Fn() -> bool,
) -> io::Result<Option<(usize, File)>> {
    loop {
        if stop() {
            return Ok(None);
        }
        if let Some(held) = try_acquire(dir, max)? {
            return Ok(Some(held));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_held_until_dropped() {
        let d = std::env::temp_dir().join(format!("asdo-slots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (n0, a) = try_acquire(&d, 2).unwrap().unwrap();
        let (n1, b) = try_acquire(&d, 2).unwrap().unwrap();
        assert_eq!((n0, n1), (0, 1));
        assert!(try_acquire(&d, 2).unwrap().is_none(), "both taken");
        drop(a);
        let (n, _c) = try_acquire(&d, 2).unwrap().unwrap();
        assert_eq!(n, 0, "the freed slot");
        drop(b);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
