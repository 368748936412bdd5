//! Pull/merge requests after the push: open a draft from the task branch to its base, or
//! update the open one, through the forge's REST API (GitHub, GitHub Enterprise, GitLab,
//! self-hosted GitLab). The token is the task's `GIT_TOKEN`; it travels only in a request
//! header, never in argv, a URL, the body or a log line (every message is redacted).

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::http;

/// Which REST API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GitHub,
    GitLab,
}

/// Where and how to open the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forge {
    pub kind: Kind,
    /// e.g. https://api.github.com, https://ghe.example.com/api/v3, https://gitlab.com/api/v4
    pub api_url: String,
    /// `owner/repo` (GitLab: the full `group/subgroup/project` path).
    pub path: String,
}

/// The request's content.
#[derive(Debug, Clone)]
pub struct Request {
    pub branch: String,
    pub base: String,
    pub title: String,
    pub body: String,
}

/// Per call; the agent has minutes left at most when it gets here.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `host` and `owner/repo` of a git URL in any of the forms asdo accepts.
pub fn host_and_path(repo: &str) -> Option<(String, String)> {
    // A local path names no forge (and `file:` would read as an scp-like host).
    if repo.starts_with("file:") {
        return None;
    }
    let rest = repo
        .strip_prefix("https://")
        .or_else(|| repo.strip_prefix("ssh://"))
        .map(|r| r.split_once('/'))
        .unwrap_or_else(|| {
            // scp-like: [user@]host:path
            repo.split_once(':')
        })?;
    let (authority, path) = rest;
    let host = authority.rsplit('@').next()?.split(':').next()?.to_string();
    let path = path.trim_matches('/').trim_end_matches(".git").to_string();
    (!host.is_empty() && path.contains('/')).then_some((host, path))
}

/// The forge for `repo`: the kind, API URL and project given (`ASDO_FORGE`,
/// `ASDO_FORGE_API_URL`, `ASDO_FORGE_PROJECT` — the last for a repository cloned from a
/// mirror), else guessed from the host (github.com, gitlab.com, or a host whose name says which).
pub fn resolve(
    repo: &str,
    kind: Option<&str>,
    api_url: Option<&str>,
    project: Option<&str>,
) -> Result<Forge, String> {
    let (host, path) = match (host_and_path(repo), project) {
        (found, Some(p)) => {
            let p = p.trim_matches('/');
            if !p.contains('/') || p.split('/').any(str::is_empty) {
                return Err(format!("project {p:?} must be owner/repository"));
            }
            let host = found.map(|(h, _)| h).unwrap_or_default();
            (host, p.to_string())
        }
        (Some(found), None) => found,
        (None, None) => {
            return Err(
                "cannot tell the forge's owner/repository from GIT_REPO: set agent.forge.project (ASDO_FORGE_PROJECT)"
                    .into(),
            );
        }
    };
    let kind = match kind.map(str::to_ascii_lowercase).as_deref() {
        Some("github") => Kind::GitHub,
        Some("gitlab") => Kind::GitLab,
        Some(other) => return Err(format!("unknown forge {other:?}: use github or gitlab")),
        None if host.contains("gitlab") => Kind::GitLab,
        None if host.contains("github") => Kind::GitHub,
        None => {
            return Err(format!(
                "cannot tell which forge {host} is: set agent.forge.type (ASDO_FORGE) to github or gitlab"
            ));
        }
    };
    let api_url = match (api_url, kind) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, _) if host.is_empty() => {
            return Err("set agent.forge.apiUrl (ASDO_FORGE_API_URL): the repository URL names no forge host".into());
        }
        (None, Kind::GitHub) if host == "github.com" => "https://api.github.com".into(),
        (None, Kind::GitHub) => format!("https://{host}/api/v3"),
        (None, Kind::GitLab) => format!("https://{host}/api/v4"),
    };
    http::check_url(&api_url).map_err(|e| format!("invalid forge API URL: {e}"))?;
    Ok(Forge {
        kind,
        api_url,
        path,
    })
}

/// Open a draft request, or update the open one for this branch; returns its web URL.
pub async fn open_or_update(forge: &Forge, token: &str, req: &Request) -> Result<String, String> {
    let result = match forge.kind {
        Kind::GitHub => github(forge, token, req).await,
        Kind::GitLab => gitlab(forge, token, req).await,
    };
    result.map_err(|e| redact(&e, token))
}

fn redact(s: &str, token: &str) -> String {
    if token.is_empty() {
        s.to_string()
    } else {
        s.replace(token, "[redacted]")
    }
}

async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let r = http::send(method, url, headers, body.map(|b| b.to_string()), TIMEOUT).await?;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v))
}

/// The forge's own words for a refusal, one line.
fn refusal(what: &str, status: u16, v: &Value) -> String {
    let msg = v
        .get("message")
        .or_else(|| v.get("error"))
        .map(|m| match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let hint = match status {
        401 => " (the token is invalid or expired)",
        403 | 404 => {
            " (the token may lack access: GitHub needs pull-requests:write, GitLab the api scope)"
        }
        _ => "",
    };
    format!("{what}: HTTP {status} {msg}{hint}")
        .trim()
        .to_string()
}

async fn github(f: &Forge, token: &str, r: &Request) -> Result<String, String> {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
        ("content-type", "application/json"),
    ];
    let pulls = format!("{}/repos/{}/pulls", f.api_url, f.path);
    let owner = f.path.split('/').next().unwrap_or_default();
    let body =
        json!({"title": r.title, "head": r.branch, "base": r.base, "body": r.body, "draft": true});
    let (status, v) = call(Method::POST, &pulls, &headers, Some(body)).await?;
    if status == 201 {
        return web_url(&v, "html_url");
    }
    // 422 "A pull request already exists": update that one.
    if status == 422 {
        let q = format!(
            "{pulls}?state=open&head={}",
            encode(&format!("{owner}:{}", r.branch))
        );
        let (s, list) = call(Method::GET, &q, &headers, None).await?;
        let existing = list.as_array().and_then(|a| a.first()).cloned();
        if let (200, Some(pr)) = (s, existing) {
            let number = pr.get("number").and_then(Value::as_u64).unwrap_or_default();
            let patch = json!({"title": r.title, "body": r.body});
            let (s, v) = call(
                Method::PATCH,
                &format!("{pulls}/{number}"),
                &headers,
                Some(patch),
            )
            .await?;
            if s == 200 {
                return web_url(&v, "html_url");
            }
            return Err(refusal("updating the pull request", s, &v));
        }
    }
    Err(refusal("opening the pull request", status, &v))
}

async fn gitlab(f: &Forge, token: &str, r: &Request) -> Result<String, String> {
    let headers = [
        ("private-token", token),
        ("content-type", "application/json"),
    ];
    let mrs = format!("{}/projects/{}/merge_requests", f.api_url, encode(&f.path));
    let title = format!("Draft: {}", r.title);
    let body = json!({"source_branch": r.branch, "target_branch": r.base, "title": title, "description": r.body});
    let (status, v) = call(Method::POST, &mrs, &headers, Some(body)).await?;
    if status == 201 {
        return web_url(&v, "web_url");
    }
    // 409 "Another open merge request already exists for this source branch".
    if status == 409 {
        let q = format!("{mrs}?state=opened&source_branch={}", encode(&r.branch));
        let (s, list) = call(Method::GET, &q, &headers, None).await?;
        let existing = list.as_array().and_then(|a| a.first()).cloned();
        if let (200, Some(mr)) = (s, existing) {
            let iid = mr.get("iid").and_then(Value::as_u64).unwrap_or_default();
            let put = json!({"title": title, "description": r.body});
            let (s, v) = call(Method::PUT, &format!("{mrs}/{iid}"), &headers, Some(put)).await?;
            if s == 200 {
                return web_url(&v, "web_url");
            }
            return Err(refusal("updating the merge request", s, &v));
        }
    }
    Err(refusal("opening the merge request", status, &v))
}

fn web_url(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("the forge answered without a {key}"))
}

/// Percent-encode everything but unreserved characters (GitLab wants `group%2Fproject`).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request text from the task: a title from the prompt's first line, a body that
/// says what ran and what changed. Never holds credentials (the caller passes none).
pub fn describe(
    task_id: &str,
    prompt: &str,
    branch: &str,
    base: &str,
    files: &[String],
    usage: Option<&str>,
) -> (String, String) {
    let first = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("agent task");
    let mut short: String = first.chars().take(72).collect();
    if short.len() < first.len() {
        short.push('…');
    }
    let title = format!("{task_id}: {short}");
    let mut body = format!(
        "Task `{task_id}`, run by the asdo agent on branch `{branch}` (from `{base}`).\n\n"
    );
    let summary: String = prompt.chars().take(1500).collect();
    body.push_str("### Task\n");
    for l in summary.lines() {
        body.push_str(&format!("> {l}\n"));
    }
    if summary.len() < prompt.len() {
        body.push_str("> …\n");
    }
    body.push_str(&format!("\n### Files changed ({})\n", files.len()));
    for f in files.iter().take(50) {
        body.push_str(&format!("- `{f}`\n"));
    }
    if files.len() > 50 {
        body.push_str(&format!("- … and {} more\n", files.len() - 50));
    }
    if let Some(u) = usage {
        body.push_str(&format!("\n### Usage\n{u}\n"));
    }
    body.push_str("\nGenerated-By: asdo agent\n");
    (title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_repo_from_every_url_form() {
        for (url, host, path) in [
            ("git@github.com:org/app.git", "github.com", "org/app"),
            ("https://github.com/org/app.git", "github.com", "org/app"),
            (
                "ssh://git@gitlab.example.com:2222/g/sub/p.git",
                "gitlab.example.com",
                "g/sub/p",
            ),
            ("https://gitlab.com/g/sub/p", "gitlab.com", "g/sub/p"),
        ] {
            assert_eq!(
                host_and_path(url),
                Some((host.into(), path.into())),
                "{url}"
            );
        }
        assert_eq!(host_and_path("file:///srv/r.git"), None);
    }

    #[test]
    fn forge_and_api_url() {
        let f = resolve("git@github.com:org/app.git", None, None, None).unwrap();
        assert_eq!(
            (f.kind, f.api_url.as_str()),
            (Kind::GitHub, "https://api.github.com")
        );
        let f = resolve("https://github.corp.example/org/app", None, None, None).unwrap();
        assert_eq!(f.api_url, "https://github.corp.example/api/v3");
        let f = resolve("git@gitlab.com:g/sub/p.git", None, None, None).unwrap();
        assert_eq!((f.kind, f.path.as_str()), (Kind::GitLab, "g/sub/p"));
        let f = resolve(
            "git@git.corp:g/p.git",
            Some("gitlab"),
            Some("http://127.0.0.1:9/api/v4/"),
            None,
        )
        .unwrap();
        assert_eq!(f.api_url, "http://127.0.0.1:9/api/v4");
        assert!(
            resolve("git@git.corp:g/p.git", None, None, None)
                .unwrap_err()
                .contains("ASDO_FORGE")
        );
        assert!(resolve("git@git.corp:g/p.git", Some("bitbucket"), None, None).is_err());
        // A local or mirrored remote: the project and API URL are given.
        let f = resolve(
            "file:///srv/r.git",
            Some("github"),
            Some("http://127.0.0.1:9"),
            Some("o/r"),
        )
        .unwrap();
        assert_eq!(
            (f.path.as_str(), f.api_url.as_str()),
            ("o/r", "http://127.0.0.1:9")
        );
        assert!(resolve("file:///srv/r.git", Some("github"), None, Some("o/r")).is_err());
        assert!(resolve("file:///srv/r.git", None, None, None).is_err());
    }

    #[test]
    fn title_and_body() {
        let (t, b) = describe(
            "T001",
            "\n  Add the login endpoint\nwith tests",
            "specs/1/T001-async",
            "main",
            &["src/login.rs".into()],
            Some("tokens in 10, out 5"),
        );
        assert_eq!(t, "T001: Add the login endpoint");
        assert!(
            b.contains("- `src/login.rs`")
                && b.contains("tokens in 10")
                && b.contains("> with tests")
        );
        assert_eq!(encode("g/sub p"), "g%2Fsub%20p");
    }
}
