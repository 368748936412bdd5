//! Git in the user's own clone, for `asdo diff` and `asdo apply`: fetch one task's branch
//! into `refs/asdo/tasks/<id>` (so nothing the user owns — branches, FETCH_HEAD habits,
//! remotes — is touched), resolve the base the task started from, diff, merge.
//!
//! Every git call gets its arguments as separate argv elements and every ref or URL is
//! validated first, so a branch name from a pod annotation can never become an option.
//! Also where a host path (`spawn --context-dir`, spec-kit's FEATURE_DIR) becomes a
//! repository-relative one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::task;

/// Where a task's branch is fetched to, per task id.
pub fn task_ref(task_id: &str) -> String {
    format!("refs/asdo/tasks/{task_id}")
}

fn base_ref(task_id: &str) -> String {
    format!("refs/asdo/bases/{task_id}")
}

/// One git invocation's result; stderr is kept for the one-line error.
struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn git(args: &[&str]) -> Result<Out> {
    let out = Command::new("git")
        .args(args)
        // A merge message editor or a credential prompt would hang a main session's tool call.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::other(format!(
                "cannot run git: {e}; install git and run asdo inside a clone of the task's repository"
            ))
        })?;
    Ok(Out {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// git's own last word on a failure, for one line.
fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The top of the clone we are in, or an error that says where to run.
pub fn toplevel() -> Result<PathBuf> {
    let out = git(&["rev-parse", "--show-toplevel"])?;
    if !out.ok {
        return Err(Error::usage(
            "not inside a git clone: run asdo diff/apply in a clone of the task's repository",
        ));
    }
    Ok(PathBuf::from(out.stdout.trim()))
}

/// Refuse to merge into a tree with tracked changes or a merge already in progress:
/// a conflict must leave only the task's merge for the user to resolve.
pub fn ensure_clean() -> Result<()> {
    if git(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])?.ok {
        return Err(Error::other(
            "a merge is already in progress here: finish it with `git commit` or `git merge --abort` first",
        ));
    }
    let st = git(&["status", "--porcelain", "--untracked-files=no"])?;
    if !st.ok {
        return Err(Error::other(format!(
            "git status failed: {}",
            last_line(&st.stderr)
        )));
    }
    if !st.stdout.trim().is_empty() {
        return Err(Error::other(
            "the working tree has uncommitted changes: commit or stash them before asdo apply",
        ));
    }
    Ok(())
}

/// Fetch `branch` of `repo` into the task's private ref; returns that ref.
pub fn fetch_task(repo: &str, branch: &str, task_id: &str) -> Result<String> {
    task::validate_repo(repo)?;
    task::validate_branch(branch)?;
    let dst = task_ref(task_id);
    let spec = format!("+refs/heads/{branch}:{dst}");
    let out = git(&["fetch", "--no-tags", "--quiet", "--", repo, &spec])?;
    if !out.ok {
        let why = last_line(&out.stderr);
        if why.contains("couldn't find remote ref") {
            return Err(Error::NotFound(format!(
                "branch {branch} is not on {repo} (yet): a task pushes when it finishes; see `asdo status {task_id}`"
            )));
        }
        return Err(Error::other(format!(
            "cannot fetch branch {branch} from {repo}: {why}; check this clone's access to that repository"
        )));
    }
    Ok(dst)
}

/// The base a task's diff is taken against: the ref given (a branch or tag of the remote,
/// or any revision this clone already has), else the remote's default branch, as the
/// agent uses when it creates a task branch.
pub fn fetch_base(repo: &str, base: Option<&str>, task_id: &str) -> Result<String> {
    let dst = base_ref(task_id);
    let name = match base {
        Some(b) => b.to_string(),
        None => default_branch(repo)?,
    };
    if name.starts_with('-') {
        return Err(Error::usage(format!("invalid base {name:?}")));
    }
    for src in [format!("refs/heads/{name}"), format!("refs/tags/{name}")] {
        let spec = format!("+{src}:{dst}");
        if git(&["fetch", "--no-tags", "--quiet", "--", repo, &spec])?.ok {
            return Ok(dst);
        }
    }
    // A commit or a local ref: fine if this clone has it.
    let local = format!("{name}^{{commit}}");
    if git(&["rev-parse", "-q", "--verify", &local])?.ok {
        return Ok(name);
    }
    Err(Error::NotFound(format!(
        "base {name:?} is neither a branch or tag of {repo} nor a commit in this clone; pass --base"
    )))
}

/// `HEAD` of the remote, as `git ls-remote --symref` reports it.
fn default_branch(repo: &str) -> Result<String> {
    let out = git(&["ls-remote", "--symref", "--", repo, "HEAD"])?;
    if !out.ok {
        return Err(Error::other(format!(
            "cannot read {repo}: {}; check this clone's access to that repository",
            last_line(&out.stderr)
        )));
    }
    out.stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("ref: refs/heads/")?
                .split_once('\t')
                .map(|(b, _)| b.to_string())
        })
        .ok_or_else(|| {
            Error::other(format!(
                "{repo} does not name a default branch; pass --base"
            ))
        })
}

/// Is `rev` a commit this clone has?
pub fn has_commit(rev: &str) -> Result<bool> {
    Ok(git(&["cat-file", "-e", &format!("{rev}^{{commit}}")])?.ok)
}

pub fn rev_parse(rev: &str) -> Result<String> {
    let out = git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])?;
    if !out.ok {
        return Err(Error::other(format!(
            "cannot resolve {rev}: {}",
            last_line(&out.stderr)
        )));
    }
    Ok(out.stdout.trim().to_string())
}

/// `git diff base...tip` (what the task changed since it branched off), straight to our
/// stdout so git's pager and colour rules apply as the user configured them.
pub fn diff(base: &str, tip: &str, stat: bool) -> Result<()> {
    let range = format!("{base}...{tip}");
    let mut args = vec!["diff"];
    if stat {
        args.push("--stat");
    }
    args.extend([range.as_str(), "--"]);
    let status = Command::new("git")
        .args(&args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::other(format!("cannot run git: {e}")))?;
    if !status.success() {
        return Err(Error::other(format!("git diff {range} failed")));
    }
    Ok(())
}

/// `git diff --stat base...tip` as text, for a caller that shows it somewhere other than
/// this process's stdout (`asdo ui`'s task page).
pub fn diff_stat(base: &str, tip: &str) -> Result<String> {
    let range = format!("{base}...{tip}");
    let out = git(&["diff", "--stat", "--no-color", &range, "--"])?;
    if !out.ok {
        return Err(Error::other(format!(
            "git diff --stat {range} failed: {}",
            last_line(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// How one merge went.
pub enum Merge {
    /// Merged; the number of files the merge changed.
    Merged { files: usize },
    /// Nothing to merge: the current branch already contains the commit.
    UpToDate,
    /// Stopped with conflicts in these files; the merge is left in progress.
    Conflict(Vec<String>),
}

/// Merge `rev` into the current branch with a merge commit that names the task.
pub fn merge(rev: &str, message: &str) -> Result<Merge> {
    let before = rev_parse("HEAD")?;
    let out = git(&["merge", "--no-ff", "--no-edit", "-m", message, rev])?;
    if out.ok {
        let after = rev_parse("HEAD")?;
        if after == before {
            return Ok(Merge::UpToDate);
        }
        let files = git(&["diff", "--name-only", &before, &after])?
            .stdout
            .lines()
            .count();
        return Ok(Merge::Merged { files });
    }
    let unmerged = git(&["diff", "--name-only", "--diff-filter=U"])?;
    let files: Vec<String> = unmerged.stdout.lines().map(str::to_string).collect();
    if out.code == Some(1) && !files.is_empty() {
        return Ok(Merge::Conflict(files));
    }
    Err(Error::other(format!(
        "git merge {rev} failed: {}",
        last_line(&format!("{}\n{}", out.stdout, out.stderr))
    )))
}

/// `--context-dir` carries two meanings in the wild: a pod path (`/workspace/...`) or
/// spec-kit's FEATURE_DIR, a path on the caller's machine that means nothing in the pod.
/// Returns (pod context dir, repository-relative spec dir).
pub fn split_context_dir(dir: Option<&str>) -> Result<(Option<String>, Option<String>)> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Ok((None, None));
    };
    if dir == "/workspace" || dir.starts_with("/workspace/") {
        return Ok((Some(dir.trim_end_matches('/').to_string()), None));
    }
    let path = Path::new(dir);
    if path.is_relative() {
        return clean_relative(dir).map(|d| (None, Some(d)));
    }
    match repo_relative(path) {
        Some(rel) if !rel.is_empty() => Ok((None, Some(rel))),
        Some(_) => Ok((None, None)),
        None => {
            eprintln!(
                "warning: --context-dir {dir} is not inside a git checkout here; the agent works in the pod's default directory"
            );
            Ok((None, None))
        }
    }
}

pub fn clean_relative(dir: &str) -> Result<String> {
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Error::usage(format!(
            "invalid --context-dir {dir:?}: a repository-relative path must not contain '..'"
        )));
    }
    Ok(parts.join("/"))
}

/// The path relative to the root of the git checkout that contains it.
pub fn repo_relative(path: &Path) -> Option<String> {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let root = abs.ancestors().find(|a| a.join(".git").exists())?;
    let rel = abs.strip_prefix(root).ok()?;
    Some(rel.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_dir_meanings() {
        assert_eq!(split_context_dir(None).unwrap(), (None, None));
        assert_eq!(
            split_context_dir(Some("/workspace/sub/")).unwrap(),
            (Some("/workspace/sub".into()), None)
        );
        assert_eq!(
            split_context_dir(Some("./specs/001-auth")).unwrap(),
            (None, Some("specs/001-auth".into()))
        );
        assert!(split_context_dir(Some("../x")).is_err());
        // This crate is a git checkout: a host path inside it becomes repo-relative.
        let here = env!("CARGO_MANIFEST_DIR");
        if Path::new(here).join(".git").exists() {
            assert_eq!(
                split_context_dir(Some(&format!("{here}/src/cli"))).unwrap(),
                (None, Some("src/cli".into()))
            );
        }
        assert_eq!(
            split_context_dir(Some("/nonexistent-host-dir/specs/1")).unwrap(),
            (None, None),
            "a host path outside any checkout must not leak into the pod"
        );
    }
}
