//! A process told apart from a later one that got the same pid: its start time (clock
//! ticks after boot) from /proc, and the boot id, so a reboot ends every recorded one.

use std::io;

use super::ProcessId;

/// `/proc/sys/kernel/random/boot_id`, changed by every boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 3 (state) and field 22 (starttime) of `/proc/<pid>/stat`. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
fn stat(pid: u32) -> io::Result<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|f| f.chars().next()).unwrap_or('?');
    // After ')': field 3 is index 0, so field 22 is index 19.
    let start = fields
        .get(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected /proc stat"))?;
    Ok((state, start))
}

/// The identity of a running process.
pub fn identify(pid: u32) -> io::Result<ProcessId> {
    let (_, start_ticks) = stat(pid)?;
    Ok(ProcessId {
        pid,
        start_ticks,
        boot_id: boot_id(),
    })
}

/// Whether the recorded process still runs: same boot, same pid and start time, and
/// not a zombie (a dead child its parent has not reaped yet).
pub fn alive_as(p: &ProcessId) -> bool {
    if p.boot_id != boot_id() {
        return false;
    }
    match stat(p.pid) {
        Ok((state, start)) => start == p.start_ticks && state != 'Z' && state != 'X',
        Err(_) => false,
    }
}

/// The direct children of a process (every thread's `children` file).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// The process's command name (`/proc/<pid>/comm`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The agent inside a sandbox started as `pid`: the first process below it that is not
/// bwrap itself (bwrap's monitor and its pid-namespace init come first). bwrap does not
/// pass signals on, so a cancel goes to this process directly.
pub fn below_bwrap(pid: u32) -> Option<u32> {
    let mut cur = pid;
    for _ in 0..4 {
        if comm(cur).as_deref() != Some("bwrap") {
            return Some(cur);
        }
        cur = *children(cur).first()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_is_not() {
        let me = identify(std::process::id()).unwrap();
        assert!(!me.boot_id.is_empty());
        assert!(alive_as(&me));
        let reused = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!alive_as(&reused), "a pid reused by a later process");
        let rebooted = ProcessId {
            boot_id: "another-boot".into(),
            ..me
        };
        assert!(!alive_as(&rebooted));
    }
}
