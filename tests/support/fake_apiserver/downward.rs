//! downwardAPI volumes, as far as asdo uses them: files with `metadata.annotations` or
//! `metadata.labels`, written the way the kubelet writes them (one `key="value"` line per
//! entry, sorted, the value Go-quoted) and rewritten while the container runs when the
//! pod's metadata changes (the real kubelet does so on its periodic sync, within about a
//! minute; here within a fraction of a second).
//!
//! Pods are host processes, so mount paths are not honoured: each volume is a directory
//! beside the pod's working directory, named to the container in
//! `FAKE_KUBELET_VOLUME_<NAME>` (upper case, `-` as `_`), set before the pod's own env so
//! `$(FAKE_KUBELET_VOLUME_ANSWERS)/annotations` expands in env values. The files are made
//! read-only (0444), which is all a same-user process here can be given.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

struct Volume {
    env: String,
    dir: PathBuf,
    /// (file path inside the volume, fieldPath)
    files: Vec<(String, String)>,
}

fn volumes(pod: &Pod, root: &Path) -> Vec<Volume> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let d = v.downward_api.as_ref()?;
            let files = d
                .items
                .iter()
                .flatten()
                .filter_map(|i| Some((i.path.clone(), i.field_ref.as_ref()?.field_path.clone())))
                .collect();
            Some(Volume {
                env: format!(
                    "FAKE_KUBELET_VOLUME_{}",
                    v.name.to_ascii_uppercase().replace('-', "_")
                ),
                dir: root.join(&v.name),
                files,
            })
        })
        .collect()
}

/// Where each downwardAPI volume lives, for the container's environment.
pub(crate) fn env(pod: &Pod, root: &Path) -> Vec<(String, String)> {
    volumes(pod, root)
        .into_iter()
        .map(|v| (v.env, v.dir.display().to_string()))
        .collect()
}

/// Writes (or rewrites, when changed) every downwardAPI file of the pod.
pub(crate) fn write(pod: &Pod, root: &Path) -> std::io::Result<()> {
    for v in volumes(pod, root) {
        std::fs::create_dir_all(&v.dir)?;
        for (path, field) in &v.files {
            let map = match field.as_str() {
                "metadata.annotations" => pod.metadata.annotations.clone(),
                "metadata.labels" => pod.metadata.labels.clone(),
                _ => continue,
            }
            .unwrap_or_default();
            let text = format_map(&map);
            let file = v.dir.join(path);
            if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            // As the kubelet does: the new content appears whole (a rename), never half.
            let tmp = v.dir.join(format!(".{path}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            std::fs::write(&tmp, &text)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))?;
            std::fs::rename(&tmp, &file)?;
        }
    }
    Ok(())
}

/// `key="value"\n` per entry, sorted by key (the kubelet's fieldpath.FormatMap).
fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}\n", go_quote(v)))
        .collect()
}

/// Go's strconv.Quote, as `%q` prints a string.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
