//! spec-kit's delegation protocol, asdo's side of it.
//!
//! spec-kit (tikalk/agentic-sdlc-spec-kit) learns how a delegated [ASYNC] task went
//! from three files per task, read by its `check_delegation_status <id>`:
//!
//! - `delegation_prompts/<id>.md`: the task was delegated; without it the answer is
//!   `no_job`, whatever else exists;
//! - `delegation_completed/<id>.txt`: `completed`;
//! - `delegation_errors/<id>.txt`: `failed` (only looked at when there is no completed
//!   file); neither: `running`.
//!
//! Where those directories live depends on the spec-kit version ([`Layout`]). `asdo
//! spawn` writes the prompt file when its `--context-dir` is a spec-kit feature
//! directory on this machine; `asdo wait --report-dir` writes the other two (and the
//! prompt file when it is missing).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::marker::Marker;
use crate::verdict::Verdict;

/// Where a spec-kit version keeps its delegation directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `delegation_*` relative to the working directory `implement.sh` runs in, the
    /// repository root: spec-kit from d653db62 (2025-10-18) up to d50d5635, which
    /// includes every commit with the orchestrator hook (36e998ab, 4dac8320 .. baea750e,
    /// 2026-02-15 .. 2026-03-25) that runs `scripts/spawn-pod.sh`.
    RepoRoot,
    /// `$FEATURE_DIR/.async_state/delegation_*`: spec-kit from d50d5635 (2026-06-08) on,
    /// which has no orchestrator hook any more.
    AsyncState,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::RepoRoot => "repo-root",
            Layout::AsyncState => "async-state",
        }
    }
}

/// A spec-kit feature directory (`<repo>/specs/<feature>`) found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub dir: PathBuf,
    /// The repository root: where spec-kit runs its scripts.
    pub root: PathBuf,
    pub layout: Layout,
    /// What the layout was decided from, for `-v` and the docs.
    pub evidence: String,
}

impl Feature {
    /// The directory holding `delegation_prompts/`, `delegation_completed/` and
    /// `delegation_errors/` for this spec-kit version.
    pub fn report_dir(&self) -> PathBuf {
        match self.layout {
            Layout::RepoRoot => self.root.clone(),
            Layout::AsyncState => self.dir.join(".async_state"),
        }
    }
}

/// The scripts spec-kit copies into a project (`specify init`) or keeps in its own tree.
const META_UTILS: &[&str] = &[
    ".specify/scripts/bash/tasks-meta-utils.sh",
    "scripts/bash/tasks-meta-utils.sh",
];

/// `dir` as a spec-kit feature directory: an existing directory with a `tasks.md`
/// (what `/tasks` writes and `implement.sh` reads). `None` for anything else, e.g. a
/// pod path such as `/workspace`.
pub fn feature(dir: &Path) -> Option<Feature> {
    if !dir.join("tasks.md").is_file() {
        return None;
    }
    let dir = dir.canonicalize().ok()?;
    let root = dir
        .ancestors()
        .skip(1)
        .find(|a| a.join(".specify").is_dir() || a.join(".git").exists())
        .or_else(|| {
            // No checkout marker: spec-kit's own convention, <root>/specs/<feature>.
            let parent = dir.parent()?;
            (parent.file_name()? == "specs").then(|| parent.parent())?
        })?
        .to_path_buf();
    let (layout, evidence) = detect_layout(&dir, &root);
    Some(Feature {
        dir,
        root,
        layout,
        evidence,
    })
}

/// Which layout this project's spec-kit reads: its own `check_delegation_status` says
/// best; then an `.async_state` directory it already made; else the layout of the
/// versions that call `spawn-pod.sh` at all.
fn detect_layout(dir: &Path, root: &Path) -> (Layout, String) {
    for rel in META_UTILS {
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            continue;
        };
        if !text.contains("check_delegation_status") {
            continue;
        }
        let layout = if text.contains(".async_state") {
            Layout::AsyncState
        } else {
            Layout::RepoRoot
        };
        return (layout, format!("{rel} reads {} markers", layout.name()));
    }
    if dir.join(".async_state").is_dir() {
        return (
            Layout::AsyncState,
            "the feature directory has .async_state/".into(),
        );
    }
    (
        Layout::RepoRoot,
        "default: the spec-kit versions with the spawn-pod.sh hook read repo-root markers".into(),
    )
}

/// What spawn sent, recorded in `delegation_prompts/<id>.md`.
#[derive(Debug, Clone)]
pub struct Delegation<'a> {
    pub task: &'a str,
    pub pod: &'a str,
    pub namespace: Option<&'a str>,
    pub branch: &'a str,
    pub repo: Option<&'a str>,
    pub spec_dir: Option<&'a str>,
    /// The instructions given to the agent; `None`: its default (implement the task as
    /// listed in the spec's tasks.md).
    pub prompt: Option<&'a str>,
    /// Who wrote the record: `asdo spawn` or `asdo wait`.
    pub by: &'a str,
}

pub fn prompt_path(report_dir: &Path, task: &str) -> PathBuf {
    report_dir
        .join("delegation_prompts")
        .join(format!("{task}.md"))
}

/// The result markers of one task, as `check_delegation_status` reads them.
pub fn marker_paths(report_dir: &Path, task: &str) -> [PathBuf; 2] {
    [
        report_dir
            .join("delegation_completed")
            .join(format!("{task}.txt")),
        report_dir
            .join("delegation_errors")
            .join(format!("{task}.txt")),
    ]
}

pub fn prompt_text(d: &Delegation, report_dir: &Path, now: &str) -> String {
    let ns = d.namespace.unwrap_or("-");
    let mut s = format!(
        "# Task {task}: delegated to asdo\n\n\
         - task: {task}\n- pod: {pod}\n- namespace: {ns}\n- branch: {branch}\n- repo: {repo}\n",
        task = d.task,
        pod = d.pod,
        branch = d.branch,
        repo = d.repo.unwrap_or("-"),
    );
    if let Some(dir) = d.spec_dir {
        s.push_str(&format!("- spec_dir: {dir}\n"));
    }
    s.push_str(&format!(
        "- recorded_by: {by}\n- recorded_at: {now}\n\n\
         Follow it with `asdo logs {task} -n {ns}`. `asdo wait {task} -n {ns} --report-dir {dir}` \
         writes delegation_completed/{task}.txt or delegation_errors/{task}.txt when it ends.\n\n## Prompt\n\n",
        by = d.by,
        task = d.task,
        dir = report_dir.display(),
    ));
    match d.prompt {
        None if d.by != "asdo spawn" => s.push_str(&format!(
            "(not recorded: the task was spawned without this file; `asdo status {}` shows the pod)\n",
            d.task
        )),
        Some(p) => {
            s.push_str(p.trim_end());
            s.push('\n');
        }
        None => s.push_str(&match d.spec_dir {
            Some(dir) => format!(
                "(asdo's default) Implement task {} as listed in {dir}/tasks.md and mark it done there.\n",
                d.task
            ),
            None => format!(
                "(asdo's default) Implement task {} as described in the repository.\n",
                d.task
            ),
        }),
    }
    s
}

/// Fail before any cluster call when `dir` cannot take spec-kit's files.
pub fn check_writable(dir: &Path) -> Result<()> {
    let sub = dir.join("delegation_prompts");
    let probe = sub.join(format!(".asdo-write-check-{}", std::process::id()));
    std::fs::create_dir_all(&sub)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::usage(format!(
                "cannot write spec-kit's delegation files in {}: {e}; pass a writable --report-dir",
                dir.display()
            ))
        })
}

/// Write `delegation_prompts/<id>.md` atomically. `fresh`: a new pod was just created,
/// so the record is rewritten and result markers of an earlier run are retired (spec-kit
/// would otherwise read the old outcome at once). Otherwise an existing record is kept.
/// Returns the path when it wrote one.
pub fn record(report_dir: &Path, d: &Delegation, fresh: bool) -> Result<Option<PathBuf>> {
    let path = prompt_path(report_dir, d.task);
    let io = |what: &Path, e: std::io::Error| {
        Error::other(format!(
            "cannot write spec-kit's delegation record {}: {e}; pass a writable --report-dir",
            what.display()
        ))
    };
    if fresh {
        for old in marker_paths(report_dir, d.task) {
            match std::fs::remove_file(&old) {
                Ok(()) => tracing::info!("retired {} from an earlier run", old.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&old, e)),
            }
        }
    } else if path.exists() {
        return Ok(None);
    }
    let parent = path.parent().unwrap_or(report_dir);
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{}.md.tmp-{}", d.task, std::process::id()));
    std::fs::write(&tmp, prompt_text(d, report_dir, &now)).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(Some(path))
}

/// `asdo wait --report-dir`: fail before waiting (hours, maybe) if the directory cannot
/// take a file. Kept apart from `check_writable` (spawn's) because its words and exit
/// code (1, not 2) are wait's documented behaviour; joining them is an output change.
pub fn check_reports_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".asdo-write-check-{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::other(format!(
                "cannot write reports in {}: {e}; pick a writable --report-dir",
                dir.display()
            ))
        })
}

/// Write `<dir>/delegation_completed/<id>.txt` or `<dir>/delegation_errors/<id>.txt`
/// atomically (temp file + rename). A marker of either kind newer than this verdict
/// wins; an older marker of the other kind is retired so spec-kit sees one answer.
pub fn complete(dir: &Path, v: &Verdict) -> Result<()> {
    // spec-kit answers `no_job` without the prompt file, whatever else exists.
    let d = Delegation {
        task: &v.task,
        pod: &v.pod,
        namespace: v.origin.namespace.as_deref(),
        branch: v.branch.as_deref().unwrap_or("-"),
        repo: v.origin.repo.as_deref(),
        spec_dir: v.origin.spec_dir.as_deref(),
        prompt: None,
        by: "asdo wait",
    };
    record(dir, &d, false)?;
    let [completed, errors] = marker_paths(dir, &v.task);
    let (target, stale) = if v.succeeded() {
        (completed, errors)
    } else {
        (errors, completed)
    };
    let finished = SystemTime::from(v.finished);
    let newer = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > finished)
    };
    if let Some(newer_marker) = [&target, &stale].into_iter().find(|p| newer(p)) {
        eprintln!(
            "{} is newer than this result; left as it is",
            newer_marker.display()
        );
        return Ok(());
    }
    let io =
        |e: std::io::Error| Error::other(format!("cannot write report in {}: {e}", dir.display()));
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::other(format!("cannot write report in {}: {e}", parent.display())))?;
    crate::fsutil::write_atomic(&target, report_text(v).as_bytes())
        .map_err(|e| Error::other(format!("cannot write report {}: {e}", target.display())))?;
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(io)?;
        if let Some(p) = stale.parent() {
            crate::fsutil::sync_dir(p).map_err(io)?;
        }
    }
    Ok(())
}

pub(crate) fn report_text(v: &Verdict) -> String {
    let mut s = format!(
        "task: {}\npod: {}\nphase: {}\nexit_code: {}\nbranch: {}\nfinished: {}\n",
        v.task,
        v.pod,
        v.phase,
        v.code.map_or("-".into(), |c| c.to_string()),
        v.branch.as_deref().unwrap_or("-"),
        v.finished,
    );
    if let Some(r) = &v.reason {
        s.push_str(&format!("reason_terminated: {r}\n"));
    }
    match &v.marker {
        Some(Marker::Done(sha)) => s.push_str(&format!("commit: {sha}\n")),
        Some(Marker::NoChanges) => s.push_str("commit: none (no changes)\n"),
        Some(Marker::Failed { step, reason }) => {
            s.push_str(&format!("failed_step: {step}\nreason: {reason}\n"))
        }
        _ => {}
    }
    if !v.succeeded() {
        s.push_str("last_log_lines: |\n");
        for l in v.log_tail.lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::tests::v;
    use k8s_openapi::jiff::Timestamp;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("asdo-speckit-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p.canonicalize().unwrap())
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn project(tmp: &Tmp, utils: Option<&str>) -> PathBuf {
        let feature = tmp.0.join("specs/001-auth");
        std::fs::create_dir_all(&feature).unwrap();
        std::fs::write(feature.join("tasks.md"), "- [ ] T001 [ASYNC] login\n").unwrap();
        std::fs::create_dir_all(tmp.0.join(".git")).unwrap();
        if let Some(text) = utils {
            let p = tmp.0.join(".specify/scripts/bash/tasks-meta-utils.sh");
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        feature
    }

    #[test]
    fn only_a_directory_with_tasks_md_is_a_feature() {
        let tmp = Tmp::new("notfeature");
        assert_eq!(feature(&tmp.0), None);
        assert_eq!(feature(Path::new("/workspace")), None);
        assert_eq!(feature(&tmp.0.join("missing")), None);
    }

    #[test]
    fn layout_follows_the_projects_own_check_delegation_status() {
        let old = "check_delegation_status() {\n  local prompt_file=\"delegation_prompts/${task_id}.md\"\n";
        let new = "_feature_async_dirs() { echo \"${feature_dir}/.async_state\"; }\ncheck_delegation_status() {\n";

        let tmp = Tmp::new("old");
        let f = feature(&project(&tmp, Some(old))).unwrap();
        assert_eq!(
            (f.layout, f.report_dir()),
            (Layout::RepoRoot, tmp.0.clone())
        );
        assert_eq!(f.root, tmp.0);

        let tmp = Tmp::new("new");
        let dir = project(&tmp, Some(new));
        let f = feature(&dir).unwrap();
        assert_eq!(f.layout, Layout::AsyncState);
        assert_eq!(f.report_dir(), dir.join(".async_state"));

        // No scripts: an existing .async_state decides, else the hook versions' layout.
        let tmp = Tmp::new("none");
        let dir = project(&tmp, None);
        assert_eq!(feature(&dir).unwrap().layout, Layout::RepoRoot);
        std::fs::create_dir_all(dir.join(".async_state")).unwrap();
        assert_eq!(feature(&dir).unwrap().layout, Layout::AsyncState);
    }

    #[test]
    fn record_is_kept_on_reruns_and_a_fresh_one_retires_old_results() {
        let tmp = Tmp::new("record");
        let d = Delegation {
            task: "T001",
            pod: "agent-t001",
            namespace: Some("ns"),
            branch: "specs/001-auth/T001-async",
            repo: Some("git@github.com:o/r.git"),
            spec_dir: Some("specs/001-auth"),
            prompt: None,
            by: "asdo spawn",
        };
        let p = record(&tmp.0, &d, true).unwrap().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        for want in [
            "- pod: agent-t001",
            "- branch: specs/001-auth/T001-async",
            "specs/001-auth/tasks.md",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        // A re-run that leaves the pod alone keeps the record.
        let other = Delegation {
            prompt: Some("changed"),
            ..d.clone()
        };
        assert_eq!(record(&tmp.0, &other, false).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // A new pod: old outcome markers go, the record is rewritten.
        let [done, err] = marker_paths(&tmp.0, "T001");
        std::fs::create_dir_all(done.parent().unwrap()).unwrap();
        std::fs::write(&done, "old").unwrap();
        record(&tmp.0, &other, true).unwrap().unwrap();
        assert!(!done.exists() && !err.exists());
        assert!(std::fs::read_to_string(&p).unwrap().contains("\nchanged\n"));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("T001.md")],
            "no temp files"
        );
    }

    #[test]
    fn reports_are_atomic_exclusive_and_not_overwritten_by_older_results() {
        let dir = std::env::temp_dir().join(format!("asdo-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut failed = v(
            "Failed",
            Some(Marker::Failed {
                step: "agent".into(),
                reason: "x".into(),
            }),
        );
        failed.finished = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
        complete(&dir, &failed).unwrap();
        let err = dir.join("delegation_errors/T001.txt");
        let text = std::fs::read_to_string(&err).unwrap();
        assert!(
            text.contains("failed_step: agent") && text.contains("  asdo: running opencode"),
            "{text}"
        );

        // A newer success replaces the older failure.
        complete(&dir, &v("Succeeded", Some(Marker::Done("abc".into())))).unwrap();
        let ok = dir.join("delegation_completed/T001.txt");
        assert!(
            std::fs::read_to_string(&ok)
                .unwrap()
                .contains("commit: abc")
        );
        assert!(!err.exists(), "the stale error marker is retired");

        // An older failure does not overwrite or retire the newer success.
        complete(&dir, &failed).unwrap();
        assert!(ok.exists());
        assert!(!err.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("delegation_completed"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
