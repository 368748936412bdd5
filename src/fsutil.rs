//! Replacing a user's file safely: the one atomic-write helper (markers, `wait
//! --report-dir` files, `asdo init opencode`'s config).
//!
//! Why more than write-then-rename: `opencode.json` holds provider keys and is often
//! mode 600; a plain rename would put a fresh 644 file in its place, a symlinked one
//! would become a plain file, and a predictable temp name in a shared directory could
//! be planted as a symlink. So: the temp file is created exclusively (`O_EXCL`, which
//! never follows a symlink) under an unguessable name beside the real target, gets the
//! existing file's mode and owner before the rename, and a symlink is written through
//! to the file it points at.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `target` so a reader sees the old content or the whole new one,
/// and it survives a crash: exclusive temp file, fsync, rename, fsync the directory.
/// An existing file keeps its mode and owner (when the owner cannot be kept, because
/// only root may give a file away, the file is rewritten in place instead, which keeps
/// both); a symlink is followed to its target, which is the file replaced. A new file
/// gets the usual 0666 minus the umask.
pub fn write_atomic(target: &Path, data: &[u8]) -> io::Result<()> {
    let target = resolve_symlinks(target)?;
    let existing = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut f) = create_temp(&dir, &name, existing.is_some())?;
    let result = (|| {
        if let Some(m) = &existing {
            if (m.uid(), m.gid()) != (f.metadata()?.uid(), f.metadata()?.gid())
                && std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).is_err()
            {
                return Ok(false);
            }
            // fchmod is not masked by the umask: exactly the old mode.
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(&dir)?;
        Ok(true)
    })();
    match result {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = std::fs::remove_file(&tmp);
            rewrite_in_place(&target, data)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// fsync a directory so a rename or removal in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file a chain of symlinks ends at (the path itself when it is not a link). A
/// dangling link resolves to where it points, so the write creates that file.
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// `.<name>.asdo-<pid>-<nanos>-<n>` in `dir`, created exclusively: mode 0600 while it
/// replaces an existing file (the mode is set before any data), else 0666 minus umask.
fn create_temp(dir: &Path, name: &str, private: bool) -> io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(
            ".{name}.asdo-{}-{nanos:x}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if private { 0o600 } else { 0o666 })
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Truncate and rewrite: not atomic, but the file keeps its inode, owner and mode.
fn rewrite_in_place(target: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asdo-fsutil-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keeps_mode_and_writes_through_symlinks() {
        let d = dir("mode");
        let f = d.join("secret.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");

        let real = d.join("real.json");
        std::fs::write(&real, "old").unwrap();
        let link = d.join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomic(&link, b"through").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "through");

        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".asdo-")), "{names:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
