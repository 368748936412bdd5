//! The secrets the agent was given must never leave the pod in a commit: before every
//! commit (the final one and a work-in-progress one) the change is scanned for their
//! values, as written and base64-encoded, and a hit refuses the commit and the push
//! (`asdo: failed commit: <file> contains the value of <NAME>`, exit 13). The log names
//! the file and the variable, never the value.
//!
//! Which variables are secrets is one contract (`crate::contract::SECRET_ENV_LIST`): the
//! render lists every env var it takes from a `secretKeyRef`; the agent adds the two it
//! knows (`OPENCODE_SERVER_PASSWORD`, `GIT_TOKEN`).

/// Values shorter than this are not looked for: they would match ordinary text and
/// protect nothing (a real token or password is longer).
pub const MIN_LEN: usize = 8;

/// One secret's value in the forms looked for.
pub struct Secret {
    pub name: String,
    needles: Vec<(Vec<u8>, &'static str)>,
}

impl Secret {
    /// None when the value is too short to look for.
    pub fn new(name: &str, value: &str) -> Option<Secret> {
        let v = value.trim().as_bytes();
        if v.len() < MIN_LEN {
            return None;
        }
        let mut needles = vec![(v.to_vec(), "")];
        for (table, form) in [(STD, " (base64)"), (URL, " (base64url)")] {
            for shift in 0..3 {
                let n = base64_inner(v, shift, table);
                if n.len() >= MIN_LEN && !needles.iter().any(|(x, _)| *x == n) {
                    needles.push((n, form));
                }
            }
        }
        Some(Secret {
            name: name.to_string(),
            needles,
        })
    }

    /// The form (`""`, `" (base64)"`) in which `hay` holds this secret, if it does.
    fn found_in(&self, hay: &[u8]) -> Option<&'static str> {
        self.needles
            .iter()
            .find(|(n, _)| contains(hay, n))
            .map(|(_, form)| *form)
    }
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that depend only on `v` when it starts `shift` bytes into a
/// 3-byte group: whatever comes before or after it in the encoded file, these appear.
fn base64_inner(v: &[u8], shift: usize, table: &[u8; 64]) -> Vec<u8> {
    let mut data = vec![0u8; shift];
    data.extend_from_slice(v);
    let mut chars = vec![];
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            chars.push(table[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    // Character i covers bits [6i, 6i+6); keep those inside v's bits.
    let first = (8 * shift).div_ceil(6);
    let end = (8 * (shift + v.len())) / 6;
    chars
        .get(first..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Where a secret was found.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// The file as git names it, or `the message of commit <sha>`.
    pub place: String,
    pub name: String,
    pub form: &'static str,
}

impl Found {
    /// The reason on the `failed commit:` marker.
    pub fn reason(&self) -> String {
        format!(
            "{} contains the value of {}{}",
            self.place, self.name, self.form
        )
    }
}

/// Scans `git diff`/`git log -p` output (`-U0`, `--text`): added lines, file names and,
/// in `git log --format=%x01%H%n%B` output, commit messages.
pub fn scan_patch(patch: &[u8], secrets: &[Secret]) -> Option<Found> {
    if secrets.is_empty() {
        return None;
    }
    let mut file = String::from("a file");
    let mut commit: Option<String> = None;
    let mut in_message = false;
    for line in patch.split(|b| *b == b'\n') {
        if let Some(sha) = line.strip_prefix(b"\x01") {
            commit = Some(String::from_utf8_lossy(sha).chars().take(12).collect());
            in_message = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"diff --git ") {
            in_message = false;
            file = path_of(rest);
        } else if let Some(p) = line.strip_prefix(b"+++ ")
            && p != b"/dev/null"
        {
            let p = String::from_utf8_lossy(p);
            file = shown(p.strip_prefix("b/").unwrap_or(&p));
        }
        let checked = if in_message {
            true
        } else {
            (line.starts_with(b"+") && !line.starts_with(b"+++ "))
                || line.starts_with(b"diff --git ")
                || line.starts_with(b"rename to ")
                || line.starts_with(b"copy to ")
        };
        if !checked {
            continue;
        }
        for s in secrets {
            if let Some(form) = s.found_in(line) {
                let place = if in_message {
                    format!(
                        "the message of commit {}",
                        commit.clone().unwrap_or_default()
                    )
                } else if line.starts_with(b"+") {
                    file.clone()
                } else {
                    "a file name".into()
                };
                return Some(Found {
                    place,
                    name: s.name.clone(),
                    form,
                });
            }
        }
    }
    None
}

/// `a/x b/x` → `x` (the b side); quoted names stay quoted, as git shows them.
fn path_of(rest: &[u8]) -> String {
    let text = String::from_utf8_lossy(rest);
    match text.rfind(" b/") {
        Some(i) => shown(&text[i + 3..]),
        None => shown(&text),
    }
}

fn shown(p: &str) -> String {
    let p = crate::marker::sanitize(p).replace(['\n', '\t'], " ");
    p.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &[u8]) -> String {
        // Through the shell's base64, which is what a model would use.
        let mut c = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(v).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    }

    #[test]
    fn finds_the_value_and_its_base64_at_any_offset_naming_the_file() {
        let s = vec![Secret::new("GIT_TOKEN", "tok-0123456789abcdef").unwrap()];
        assert!(Secret::new("SHORT", "abc").is_none());
        let patch = b"diff --git a/src/conf.rs b/src/conf.rs\n--- a/src/conf.rs\n+++ b/src/conf.rs\n@@ -0,0 +1 @@\n+let t = \"tok-0123456789abcdef\";\n";
        assert_eq!(
            scan_patch(patch, &s).unwrap().reason(),
            "src/conf.rs contains the value of GIT_TOKEN"
        );
        for prefix in ["", "x", "xy", "key: "] {
            let enc = b64(format!("{prefix}tok-0123456789abcdef\n").as_bytes());
            let patch = format!("diff --git a/n.txt b/n.txt\n+++ b/n.txt\n@@ -0,0 +1 @@\n+{enc}\n");
            let f = scan_patch(patch.as_bytes(), &s).unwrap_or_else(|| panic!("{prefix:?} {enc}"));
            assert_eq!((f.place.as_str(), f.form), ("n.txt", " (base64)"));
        }
        // Removed lines and unrelated text are not hits.
        let removed = b"diff --git a/a b/a\n+++ b/a\n-tok-0123456789abcdef\n+fine\n";
        assert_eq!(scan_patch(removed, &s), None);
    }

    #[test]
    fn commit_messages_and_file_names_are_scanned() {
        let s = vec![Secret::new("OPENCODE_SERVER_PASSWORD", "pw-0123456789").unwrap()];
        let log =
            b"\x01abcdef0123456789\nfeat: pw-0123456789\n\ndiff --git a/x b/x\n+++ b/x\n+ok\n";
        assert_eq!(
            scan_patch(log, &s).unwrap().place,
            "the message of commit abcdef012345"
        );
        let name = b"diff --git a/pw-0123456789.txt b/pw-0123456789.txt\nnew file mode 100644\n";
        assert_eq!(scan_patch(name, &s).unwrap().place, "a file name");
    }
}
