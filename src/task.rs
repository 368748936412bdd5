//! What a task is, the names derived from it, and the checks every input passes
//! before asdo talks to a cluster. Pure: no I/O.

use crate::error::{Error, Result};

/// `app=agent-orchestrator` marks every task pod; `list`, `logs --all` and `cleanup` select on it.
pub const LABEL_APP: &str = "app";
pub const APP: &str = "agent-orchestrator";
/// `task-id=<id as given>`: spec-kit ids like `T001` keep their case here.
pub const LABEL_TASK_ID: &str = "task-id";
/// Kueue's plain-pod integration: the LocalQueue a pod waits in (`spawn --queue`,
/// chart value `pod.queueName`). Kueue's webhook then gates the pod until it is admitted.
pub const LABEL_QUEUE_NAME: &str = "kueue.x-k8s.io/queue-name";
/// The one container of a task pod.
pub const CONTAINER: &str = "agent";
/// Prefix of every task pod name.
pub const POD_PREFIX: &str = "agent-";
/// The selector that finds all task pods.
pub const SELECTOR: &str = "app=agent-orchestrator";

/// `app=agent-orchestrator` plus the user's `-l`, checked: a selector goes into the
/// query of a list, watch or deletecollection, and a typo must be a local usage error.
pub fn selector(extra: Option<&str>) -> Result<String> {
    match extra.map(str::trim) {
        Some(s) if !s.is_empty() => {
            crate::validate::selector(s)?;
            Ok(format!("{SELECTOR},{s}"))
        }
        _ => Ok(SELECTOR.to_string()),
    }
}

/// Annotations stamped on each task pod so `list` can show them without parsing env.
pub const ANN_BRANCH: &str = "agentic-sdlc/branch";
pub const ANN_REPO: &str = "agentic-sdlc/repo";
pub const ANN_ENVIRONMENT: &str = "agentic-sdlc/environment";
pub const ANN_SPEC_DIR: &str = "agentic-sdlc/spec-dir";
/// The ref a task branch is created from when it does not exist yet (read by diff/apply).
pub const ANN_BASE: &str = "agentic-sdlc/base";
pub const ANN_ASDO_VERSION: &str = "agentic-sdlc/asdo-version";
/// A per-call id stamped by `spawn`, so a create whose answer was lost (and that the
/// client retried into AlreadyExists) is recognised as this call's own pod.
pub const ANN_SPAWN_ID: &str = "agentic-sdlc/spawn-id";
/// A person's answer to a permission request or question of the running agent:
/// `agentic-sdlc/answer.<request id>` = JSON `{"reply"|"answers", "by"}`, patched on the pod
/// by `asdo answer` and read by the agent from its downwardAPI file (`contract::ANSWERS_FILE`).
pub const ANN_ANSWER_PREFIX: &str = "agentic-sdlc/answer.";

/// A pod name is at most 63 characters; `agent-` takes 6 of them.
pub const MAX_TASK_ID: usize = 63 - POD_PREFIX.len();

/// One unit of agent work: everything spawn needs to know about the task itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub branch: String,
    pub repo: String,
    /// Where the agent works inside the pod (TASK_CONTEXT_PATH).
    pub context_dir: String,
    /// Repository-relative directory holding the spec (TASK_SPEC_DIR), when known.
    pub spec_dir: Option<String>,
    /// Branch, tag or commit a new task branch starts from (GIT_BASE); None: the remote's default branch.
    pub base: Option<String>,
    pub prompt: Option<String>,
    pub model: Option<String>,
}

/// `T001` → `agent-t001`. Callers validate the id first.
pub fn pod_name(task_id: &str) -> String {
    format!("{POD_PREFIX}{}", task_id.to_ascii_lowercase())
}

/// `logs`, `wait` and friends accept either a task id or a pod name.
pub fn pod_name_for(task_or_pod: &str) -> Result<String> {
    let lower = task_or_pod.to_ascii_lowercase();
    if lower.starts_with(POD_PREFIX) && lower.len() > POD_PREFIX.len() {
        validate_dns_label(&lower, "pod name")?;
        Ok(lower)
    } else {
        validate_task_id(task_or_pod)?;
        Ok(pod_name(task_or_pod))
    }
}

use crate::validate::is_dns_label;

fn validate_dns_label(s: &str, what: &str) -> Result<()> {
    if !is_dns_label(s) {
        return Err(Error::usage(format!(
            "invalid {what} {s:?}: use letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        )));
    }
    Ok(())
}

/// A task id must give a valid pod name (DNS-1123 label) once lowercased, and be a valid label value as given.
pub fn validate_task_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::usage(
            "--task-id is required (e.g. --task-id T001; `id:` in a task list)",
        ));
    }
    if !is_dns_label(&id.to_ascii_lowercase()) || id.len() > MAX_TASK_ID {
        return Err(Error::usage(format!(
            "invalid task id {id:?}: use letters, digits and '-', starting and ending with a letter or digit, at most {MAX_TASK_ID} characters (it becomes pod name agent-<id>)"
        )));
    }
    Ok(())
}

/// The rules of `git check-ref-format --branch`, so a branch git would refuse never reaches a pod.
pub fn validate_branch(branch: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::usage(format!(
            "invalid branch {branch:?}: {why} (git check-ref-format rules)"
        )))
    };
    if branch.is_empty() {
        return Err(Error::usage(
            "--branch is required (e.g. --branch specs/001-auth/T001-async; `branch:` in a task list)",
        ));
    }
    if branch.starts_with('-') {
        return bad("must not start with '-'");
    }
    if branch == "@" {
        return bad("'@' alone is not a branch");
    }
    // git refuses `HEAD` as a branch name, and the *_HEAD names are git's own refs: a
    // branch called FETCH_HEAD would make every later `git checkout` ambiguous.
    if matches!(
        branch,
        "HEAD"
            | "FETCH_HEAD"
            | "ORIG_HEAD"
            | "MERGE_HEAD"
            | "CHERRY_PICK_HEAD"
            | "REVERT_HEAD"
            | "BISECT_HEAD"
            | "AUTO_MERGE"
    ) || branch.starts_with("refs/")
    {
        return bad("a reserved git name (HEAD, FETCH_HEAD, refs/…) is not a branch");
    }
    if branch.contains("..") {
        return bad("must not contain '..'");
    }
    if branch.contains("@{") {
        return bad("must not contain '@{'");
    }
    if branch.contains("//") || branch.starts_with('/') || branch.ends_with('/') {
        return bad("must not start or end with '/' or contain '//'");
    }
    if branch.ends_with('.') {
        return bad("must not end with '.'");
    }
    if let Some(c) = branch
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return bad(&format!(
            "must not contain {c:?} (no spaces, control characters or any of ~^:?*[\\)"
        ));
    }
    for part in branch.split('/') {
        if part.starts_with('.') {
            return bad("no path component may start with '.'");
        }
        if part.ends_with(".lock") {
            return bad("no path component may end with '.lock'");
        }
    }
    Ok(())
}

/// Only transports that work from a pod without a shell in between, and never a URL
/// with a password in it (it would land in the pod spec, annotations and logs).
pub fn validate_repo(repo: &str) -> Result<()> {
    if repo.is_empty() {
        return Err(Error::usage(
            "--repo is required (e.g. --repo git@github.com:org/repo.git; `repo:` in a task list)",
        ));
    }
    if repo.starts_with('-') || repo.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::usage(format!(
            "invalid repo {repo:?}: must not start with '-' or contain spaces or control characters"
        )));
    }
    let credential = || {
        Err(Error::usage(
            "repo URL contains a password or token: pass the credential as a Secret (--set pod.gitTokenSecret.name=…) instead, it would otherwise be visible in the pod spec",
        ))
    };
    // Tokens also travel as query parameters (`?access_token=…`, `?private_token=…`);
    // git remotes never need a query or fragment, so any is refused.
    if repo.contains(['?', '#']) {
        return credential();
    }
    let scheme_rest = ["https://", "ssh://", "file://"]
        .iter()
        .find_map(|s| repo.strip_prefix(s));
    match scheme_rest {
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or("");
            // A password, or for https any user name at all (GitHub tokens are often passed as
            // `https://<token>@github.com/…`), would sit in the pod spec for anyone to read.
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && (userinfo.contains(':') || repo.starts_with("https://"))
            {
                return credential();
            }
            if rest.is_empty() || (!repo.starts_with("file://") && authority.is_empty()) {
                return Err(Error::usage(format!(
                    "invalid repo {repo:?}: no host or path"
                )));
            }
            option_like_host(repo, authority)
        }
        None => {
            // scp-like syntax: [user@]host:path, as git understands it. A ':' before the
            // '@' is `user:TOKEN@host:path`: git would take the token as part of the user.
            if let Some((user, _)) = repo.split_once('@')
                && user.contains(':')
            {
                return credential();
            }
            let valid_scp = repo.split_once(':').is_some_and(|(host, path)| {
                !host.is_empty() && !host.contains('/') && !path.is_empty()
            });
            if valid_scp && repo.contains('@') {
                option_like_host(repo, repo.split_once(':').map_or("", |(h, _)| h))
            } else {
                Err(Error::usage(format!(
                    "invalid repo {repo:?}: use https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path"
                )))
            }
        }
    }
}

/// ssh takes a host (or user) that starts with `-` as one of its options
/// (`ssh://-oProxyCommand=…/x` runs a command): refused, whatever git version runs it.
fn option_like_host(repo: &str, authority: &str) -> Result<()> {
    let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    if host.starts_with('-') || user.starts_with('-') {
        return Err(Error::usage(format!(
            "invalid repo {repo:?}: a host or user name must not start with '-' (ssh would take it as an option)"
        )));
    }
    Ok(())
}

/// The longest `--model` taken (OpenCode's ids are well under 100 characters).
pub const MODEL_MAX: usize = 200;

/// `--model` as OpenCode takes it: `provider/model`, the provider of letters, digits,
/// `-`, `_` and `.`, the model any printable text without spaces (it may hold `/`, `:`,
/// `@`), at most [`MODEL_MAX`] characters. It reaches the pod's env and opencode's argv.
pub fn validate_model(model: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::usage(format!(
            "invalid --model {:?}: {why}; use provider/model, e.g. anthropic/claude-sonnet-4-5",
            model.chars().take(80).collect::<String>()
        )))
    };
    if model.chars().count() > MODEL_MAX {
        return bad(&format!("longer than {MODEL_MAX} characters"));
    }
    if model.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it has spaces or control characters");
    }
    let Some((provider, name)) = model.split_once('/') else {
        return bad("no provider/ before the model");
    };
    if provider.is_empty()
        || name.is_empty()
        || provider.starts_with('-')
        || !provider
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("the provider is letters, digits, '-', '_' or '.', and the model is not empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_lowercase() {
        assert_eq!(pod_name("T001"), "agent-t001");
        assert_eq!(pod_name_for("T001").unwrap(), "agent-t001");
        assert_eq!(pod_name_for("agent-task-001").unwrap(), "agent-task-001");
        assert_eq!(pod_name_for("task-001").unwrap(), "agent-task-001");
    }

    #[test]
    fn task_ids() {
        for ok in ["T001", "task-001", "a", &"x".repeat(57)] {
            validate_task_id(ok).unwrap();
        }
        for bad in ["", "-t", "t-", "T_001", "t.1", "tâche", &"x".repeat(58)] {
            let e = validate_task_id(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn branches() {
        for ok in ["main", "specs/001-auth/T001-async", "feature/a.b", "x@y"] {
            validate_branch(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a//b",
            "a.",
            "a/.b",
            "a.lock",
            "a@{1}",
            "@",
            "a\tb",
            "HEAD",
            "FETCH_HEAD",
            "refs/heads/x",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn models() {
        for ok in [
            "anthropic/claude-sonnet-4-5",
            "openrouter/anthropic/claude-3.5-sonnet",
            "amazon-bedrock/anthropic.claude-v2:1",
            "stub/stub-model",
        ] {
            validate_model(ok).unwrap();
        }
        for bad in [
            "claude",
            "/m",
            "p/",
            "-p/m",
            "p q/m",
            "p/m x",
            "p/m\n",
            "p/m\u{7}",
            "pr$/m",
            &format!("p/{}", "m".repeat(MODEL_MAX)),
        ] {
            let e = validate_model(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn repos() {
        for ok in [
            "https://github.com/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "file:///srv/git/repo.git",
        ] {
            validate_repo(ok).unwrap();
        }
        for bad in [
            "",
            "http://github.com/org/repo",
            "github.com/org/repo",
            "/local/path",
            "ftp://x/y",
            "--upload-pack=evil",
            "https://",
            "git@host:",
            "https://u:secret@github.com/org/repo",
            // A bare token as the user name is just as secret.
            "https://ghp_abc123@github.com/org/repo",
            "git:ghp_abc123@github.com:org/repo.git",
            "ssh://git:tok@github.com/org/repo.git",
            "https://github.com/org/repo.git?access_token=ghp_abc",
            "https://github.com/org/repo.git#tok",
            "ssh://-oProxyCommand=touch${IFS}/tmp/x/x",
            "ssh://git@-oProxyCommand=x/y",
            "ssh://-l@host/x",
            "git@-oProxyCommand=x:y",
            "-oProxyCommand=x:y",
        ] {
            assert!(validate_repo(bad).is_err(), "{bad:?} should be refused");
        }
        let e = validate_repo("https://u:s3cr3t@github.com/x").unwrap_err();
        assert!(
            !e.to_string().contains("s3cr3t"),
            "the secret is not echoed"
        );
    }
}
