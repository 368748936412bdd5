//! The local tasks' store: the state directory (XDG), one directory per task, and the
//! tasks read back as the Pods they stand for (selected as the API server selects).

use std::io;
use std::path::{Path, PathBuf};

use super::{TaskDir, pod};
use crate::error::{Error, Result};

/// Overrides the state directory (tests; several stores on one machine).
pub const STATE_DIR_ENV: &str = "ASDO_STATE_DIR";

/// The state directory: `$ASDO_STATE_DIR`, else `$XDG_STATE_HOME/asdo`, else
/// `~/.local/state/asdo` (the XDG base directory spec's default).
pub fn state_dir(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(d) = set(STATE_DIR_ENV) {
        return Some(PathBuf::from(d));
    }
    // The spec: a relative XDG_STATE_HOME is invalid and ignored.
    if let Some(d) = set("XDG_STATE_HOME").filter(|d| d.starts_with('/')) {
        return Some(Path::new(&d).join("asdo"));
    }
    set("HOME").map(|h| Path::new(&h).join(".local/state/asdo"))
}

/// The tasks of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    /// The store of this process's environment.
    pub fn from_env() -> Result<Store> {
        let root = state_dir(|k| std::env::var(k).ok()).ok_or_else(|| {
            Error::usage(
                "no state directory for local tasks: set HOME, XDG_STATE_HOME or ASDO_STATE_DIR",
            )
        })?;
        Ok(Store { root })
    }

    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    pub fn slots_dir(&self) -> PathBuf {
        self.root.join("slots")
    }

    /// A task's directory: named as its pod would be (`agent-<id lowercased>`), so two ids
    /// that would collide on a cluster collide here too.
    pub fn task(&self, id: &str) -> TaskDir {
        TaskDir {
            dir: self.tasks_dir().join(crate::task::pod_name(id)),
        }
    }

    /// Every task directory, by name.
    pub fn all(&self) -> io::Result<Vec<TaskDir>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(self.tasks_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Half-made or half-removed directories are not tasks.
            if name.starts_with(crate::task::POD_PREFIX) && e.path().join("spec.json").exists() {
                out.push(TaskDir { dir: e.path() });
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(out)
    }
}

/// Whether a pod's labels match a label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated; set-based `in`/`notin` too): the API server's matching, for the
/// local tasks' pods.
pub fn selector_matches(
    selector: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    split_selector(selector).iter().all(|term| {
        let term = term.trim();
        if term.is_empty() {
            return true;
        }
        if let Some((k, v)) = term.split_once("!=") {
            return labels.get(k.trim()).map(String::as_str) != Some(v.trim());
        }
        if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return labels.get(k.trim()).map(String::as_str) == Some(v.trim());
        }
        if let Some(k) = term.strip_prefix('!') {
            return !labels.contains_key(k.trim());
        }
        for (op, want) in [(" notin ", false), (" in ", true)] {
            if let Some((k, set)) = term.split_once(op) {
                let set = set.trim().trim_start_matches('(').trim_end_matches(')');
                let has = labels
                    .get(k.trim())
                    .is_some_and(|v| set.split(',').any(|s| s.trim() == v));
                return has == want;
            }
        }
        labels.contains_key(term)
    })
}

/// Commas split terms, except inside a set's parentheses.
fn split_selector(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

impl Store {
    /// Every local task as its Pod, those matching `selector`.
    pub fn pods(&self, selector: &str) -> Result<Vec<k8s_openapi::api::core::v1::Pod>> {
        let io =
            |e: io::Error| Error::other(format!("local tasks in {}: {e}", self.root.display()));
        let mut out = Vec::new();
        for t in self.all().map_err(io)? {
            // A task removed while listing is simply not listed.
            let Ok(v) = t.view() else { continue };
            let p = pod::of(&v);
            if selector_matches(
                selector,
                p.metadata.labels.as_ref().unwrap_or(&Default::default()),
            ) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// One task by id or pod name, as its Pod.
    pub fn pod(
        &self,
        task_or_pod: &str,
    ) -> Result<Option<(TaskDir, k8s_openapi::api::core::v1::Pod)>> {
        let name = crate::task::pod_name_for(task_or_pod)?;
        let t = TaskDir {
            dir: self.tasks_dir().join(&name),
        };
        if !t.spec_file().exists() {
            return Ok(None);
        }
        let v = t
            .view()
            .map_err(|e| Error::other(format!("local task {task_or_pod}: {e}")))?;
        Ok(Some((t, pod::of(&v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            state_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/asdo"))
        );
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), ("XDG_STATE_HOME", "/x")])),
            Some(PathBuf::from("/x/asdo"))
        );
        // Relative XDG paths are invalid per the spec.
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), ("XDG_STATE_HOME", "x")])),
            Some(PathBuf::from("/h/.local/state/asdo"))
        );
        assert_eq!(
            state_dir(env(&[("HOME", "/h"), (STATE_DIR_ENV, "/s")])),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(state_dir(env(&[])), None);
    }

    #[test]
    fn selectors_match_as_the_api_server() {
        let labels: std::collections::BTreeMap<String, String> =
            [("app", "agent-orchestrator"), ("task-id", "T1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        for (sel, want) in [
            ("app=agent-orchestrator", true),
            ("app=agent-orchestrator,task-id=T1", true),
            ("app=agent-orchestrator,task-id=T2", false),
            ("task-id!=T2", true),
            ("task-id", true),
            ("!task-id", false),
            ("task-id in (T1,T3)", true),
            ("task-id notin (T1,T3)", false),
            ("app==agent-orchestrator", true),
        ] {
            assert_eq!(selector_matches(sel, &labels), want, "{sel}");
        }
    }
}
