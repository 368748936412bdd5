//! git invocations and how they authenticate. Credentials reach git only through
//! the environment: never in a URL, never in any process's argv, never in a log line.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::config::Config;

/// Answers git's `get` with the token from a private file ([`TOKEN_FILE_ENV`]) that the
/// agent writes just before a git command that talks to the remote (clone, fetch, push)
/// and removes right after, while no OpenCode process runs. The token is in no
/// environment, argv or config: git and everything git starts (hooks, ssh, the remote
/// helper) cannot pass it on. GitHub wants `x-access-token` as the user for app and
/// fine-grained tokens; other forges take GIT_TOKEN_USER (e.g. `oauth2` for GitLab,
/// `x-token-auth` for Bitbucket).
pub const TOKEN_HELPER: &str = r#"!f() { test "$1" = get || return 0; echo "username=${GIT_TOKEN_USER:-x-access-token}"; printf 'password=%s\n' "$(cat "$ASDO_GIT_TOKEN_FILE")"; }; f"#;

/// Names the token file for the helper (a path, not a secret).
pub const TOKEN_FILE_ENV: &str = "ASDO_GIT_TOKEN_FILE";

/// The git commands that talk to the remote and may need the token.
pub const NETWORK: [&str; 4] = ["clone", "fetch", "push", "remote"];

/// What git children keep of the agent's environment: locale, paths, proxies and CA
/// settings, git's own non-secret switches. Everything else (the server password, the
/// token, provider keys, whatever `pod.env` adds) stays out of git and of every hook,
/// ssh or helper git starts.
pub fn allowed(name: &str) -> bool {
    const EXACT: [&str; 24] = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_COUNT",
        "GIT_TOKEN_USER",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ];
    EXACT.contains(&name)
        || name.starts_with("LC_")
        || name.starts_with("GIT_CONFIG_KEY_")
        || name.starts_with("GIT_CONFIG_VALUE_")
}

/// Writes the token file for one network git command; removed when dropped.
pub struct TokenFile(PathBuf);

impl TokenFile {
    pub fn write(path: &Path, token: &str) -> std::io::Result<TokenFile> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(token.as_bytes())?;
        Ok(TokenFile(path.to_path_buf()))
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the token file goes while a network git command runs.
pub fn token_file_path(home: &Path) -> PathBuf {
    home.join(".asdo").join("git-token")
}

/// `'…'` for sh, which is what git runs GIT_SSH_COMMAND with.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The ssh command git uses: only our key, and only hosts the image (or GIT_SSH_KNOWN_HOSTS) vouches for.
pub fn ssh_command(key: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o BatchMode=yes",
        sh_quote(&key.to_string_lossy()),
        sh_quote(&known_hosts.to_string_lossy())
    )
}

/// The mounted key is read-only and may be group-readable or owned by root (fsGroup),
/// which ssh refuses; a private 0600 copy under HOME is what ssh will use.
pub fn copy_ssh_key(src: &Path, home: &Path) -> std::io::Result<PathBuf> {
    let mut key = std::fs::read(src)?;
    // Secrets made from a file without a final newline give keys OpenSSH cannot load.
    if !key.ends_with(b"\n") {
        key.push(b'\n');
    }
    let dir = home.join(".asdo");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let dest = dir.join("ssh-key");
    let _ = std::fs::remove_file(&dest);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&dest)?;
    f.write_all(&key)?;
    Ok(dest)
}

/// Environment shared by every child, opencode included: identity and git settings, no secrets.
pub fn base_env(c: &Config) -> Vec<(String, String)> {
    let committer_name = std::env::var("GIT_COMMITTER_NAME").unwrap_or(c.author_name.clone());
    let committer_email = std::env::var("GIT_COMMITTER_EMAIL").unwrap_or(c.author_email.clone());
    let mut env = vec![
        ("GIT_AUTHOR_NAME".to_string(), c.author_name.clone()),
        ("GIT_AUTHOR_EMAIL".to_string(), c.author_email.clone()),
        ("GIT_COMMITTER_NAME".to_string(), committer_name),
        ("GIT_COMMITTER_EMAIL".to_string(), committer_email),
        // A prompt for a password would hang the pod until its deadline.
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
    ];
    let existing = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    env.extend(config_env(
        existing,
        &[
            // The workspace volume's root belongs to root (fsGroup only sets the group), and
            // git refuses a work tree owned by someone else without this.
            ("safe.directory", &c.context.to_string_lossy()),
            // The pod has no signing key; a signing default from some config must not fail the commit.
            ("commit.gpgsign", "false"),
        ],
    ));
    env
}

/// git's own env: added to git children only, never to opencode. Settings passed this
/// way outrank the repository's `.git/config`, which OpenCode could edit during the
/// session: hooks it planted in `.git/hooks` (post-commit, reference-transaction …) and
/// an fsmonitor command never run in asdo's own git commands.
pub fn credential_env(c: &Config, ssh_key_copy: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![];
    if let Some(key) = ssh_key_copy {
        env.push((
            "GIT_SSH_COMMAND".to_string(),
            ssh_command(key, &c.known_hosts),
        ));
    }
    // Appended after base_env's entries.
    let existing = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        + 2;
    let mut pairs = vec![("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false")];
    let token_file = token_file_path(&c.home).to_string_lossy().into_owned();
    if c.credentials.token {
        // An empty helper first drops any helper configured elsewhere, so ours is the only one asked.
        pairs.extend([
            ("credential.helper", ""),
            ("credential.helper", TOKEN_HELPER),
        ]);
        env.push((TOKEN_FILE_ENV.to_string(), token_file));
    }
    env.extend(config_env(existing, &pairs));
    env
}

/// `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`, git's way to take `-c` settings without argv.
fn config_env(start: usize, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, (k, v))| {
            [
                (format!("GIT_CONFIG_KEY_{}", start + i), k.to_string()),
                (format!("GIT_CONFIG_VALUE_{}", start + i), v.to_string()),
            ]
        })
        .collect();
    env.push((
        "GIT_CONFIG_COUNT".to_string(),
        (start + pairs.len()).to_string(),
    ));
    env
}

/// Merges env lists: a later GIT_CONFIG_COUNT replaces an earlier one.
pub fn merged(lists: &[&[(String, String)]]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for (k, v) in lists.iter().flat_map(|l| l.iter()) {
        out.retain(|(n, _)| n != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// Builds git commands that run in the work tree with the given environment.
pub struct Git {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Git {
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut c = Command::new("git");
        c.args(args.into_iter().map(Into::into))
            .current_dir(&self.dir)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(allowed)))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// The most telling line of git's stderr: a rejected ref, else the last fatal/error line.
pub fn reason(tail: &[String]) -> Option<String> {
    let find = |pred: &dyn Fn(&str) -> bool| tail.iter().rev().find(|l| pred(l)).cloned();
    find(&|l| l.contains("rejected]"))
        .or_else(|| find(&|l| l.starts_with("fatal:")))
        .or_else(|| find(&|l| l.starts_with("error:")))
        .or_else(|| tail.last().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(extra: &[(&str, &str)]) -> Config {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| {
            match k {
                "TASK_ID" => Some("T001".to_string()),
                "GIT_REPO" => Some("https://example.com/o/r.git".to_string()),
                "GIT_BRANCH" => Some("b".to_string()),
                "TASK_CONTEXT_PATH" => Some("/work/space".to_string()),
                _ => None,
            }
            .or_else(|| extra.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        })
        .unwrap()
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn quoting_for_git_ssh_command() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        let cmd = ssh_command(
            Path::new("/h/.asdo/ssh-key"),
            Path::new("/etc/ssh/ssh_known_hosts"),
        );
        assert_eq!(
            cmd,
            "ssh -i '/h/.asdo/ssh-key' -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='/etc/ssh/ssh_known_hosts' -o BatchMode=yes"
        );
    }

    #[test]
    fn base_env_has_identity_and_no_credentials() {
        let env = base_env(&config(&[("GIT_TOKEN", "tok-zzzz")]));
        assert_eq!(get(&env, "GIT_AUTHOR_NAME"), Some("asdo-agent"));
        assert_eq!(get(&env, "GIT_TERMINAL_PROMPT"), Some("0"));
        assert!(
            env.iter()
                .all(|(k, v)| !v.contains("tok-zzzz") && k != "GIT_SSH_COMMAND")
        );
        assert!(!env.iter().any(|(_, v)| v.contains("credential")));
        assert!(
            env.iter().any(|(_, v)| v == "/work/space"),
            "safe.directory"
        );
    }

    #[test]
    fn token_helper_is_configured_through_env_without_the_token() {
        let c = config(&[("GIT_TOKEN", "tok-zzzz")]);
        let env = merged(&[&base_env(&c), &credential_env(&c, None)]);
        assert!(env.iter().all(|(_, v)| !v.contains("tok-zzzz")));
        let count: usize = get(&env, "GIT_CONFIG_COUNT").unwrap().parse().unwrap();
        let keys: Vec<_> = (0..count)
            .map(|i| get(&env, &format!("GIT_CONFIG_KEY_{i}")).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "safe.directory",
                "commit.gpgsign",
                "core.hooksPath",
                "core.fsmonitor",
                "credential.helper",
                "credential.helper"
            ]
        );
        assert_eq!(
            get(&env, &format!("GIT_CONFIG_VALUE_{}", count - 1)),
            Some(TOKEN_HELPER)
        );
        assert_eq!(get(&env, "GIT_SSH_COMMAND"), None);
    }

    /// The helper really answers git with the token from the environment, and only for `get`.
    #[test]
    fn token_helper_answers_git_credential_fill() {
        let home = std::env::temp_dir().join(format!("asdo-helper-test-{}", std::process::id()));
        let c = config(&[("GIT_TOKEN", "tok-zzzz"), ("HOME", home.to_str().unwrap())]);
        let env = merged(&[&base_env(&c), &credential_env(&c, None)]);
        assert!(env.iter().all(|(_, v)| !v.contains("tok-zzzz")));
        let run = |extra: &[(&str, &str)]| {
            let mut child = std::process::Command::new("git")
                .args(["credential", "fill"])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", &home)
                .env_remove("GIT_TOKEN_USER")
                .env_remove("GIT_TOKEN")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .envs(extra.iter().copied())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"protocol=https\nhost=example.com\n\n")
                .unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let path = token_file_path(&home);
        {
            let _file = TokenFile::write(&path, "tok-zzzz").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let out = run(&[]);
            assert!(out.contains("username=x-access-token\n"), "{out}");
            assert!(out.contains("password=tok-zzzz\n"), "{out}");
            let out = run(&[("GIT_TOKEN_USER", "oauth2")]);
            assert!(out.contains("username=oauth2\n"), "{out}");
        }
        assert!(!path.exists(), "removed after the command");
        assert!(!run(&[]).contains("tok-zzzz"));
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn git_children_get_an_allow_list_of_the_environment() {
        for ok in ["PATH", "HOME", "LC_ALL", "GIT_CONFIG_KEY_0", "https_proxy"] {
            assert!(allowed(ok), "{ok}");
        }
        for no in [
            "GIT_TOKEN",
            "OPENCODE_SERVER_PASSWORD",
            "ANTHROPIC_API_KEY",
            "OPENCODE_CONFIG_CONTENT",
            "GIT_TRACE_CURL",
            "ASDO_SECRET_ENV",
        ] {
            assert!(!allowed(no), "{no}");
        }
    }

    #[test]
    fn ssh_key_is_copied_private_with_a_final_newline() {
        let home = std::env::temp_dir().join(format!("asdo-git-test-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let src = home.join("mounted-key");
        std::fs::write(&src, "-----BEGIN KEY-----\nabc\n-----END KEY-----").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o400)).unwrap();
        for _ in 0..2 {
            let copy = copy_ssh_key(&src, &home).unwrap();
            let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(
                std::fs::read_to_string(&copy)
                    .unwrap()
                    .ends_with("-----END KEY-----\n")
            );
        }
        let c = config(&[]);
        let env = credential_env(&c, Some(&home.join(".asdo/ssh-key")));
        assert!(
            get(&env, "GIT_SSH_COMMAND")
                .unwrap()
                .contains("IdentitiesOnly=yes")
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn reason_prefers_the_rejected_ref() {
        let tail: Vec<String> = [
            "To /tmp/bare.git",
            " ! [remote rejected] HEAD -> b (pre-receive hook declined)",
            "error: failed to push some refs to '/tmp/bare.git'",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            reason(&tail).unwrap(),
            " ! [remote rejected] HEAD -> b (pre-receive hook declined)"
        );
        let tail = vec![
            "Cloning into '.'...".to_string(),
            "fatal: repository 'x' does not exist".to_string(),
        ];
        assert_eq!(
            reason(&tail).unwrap(),
            "fatal: repository 'x' does not exist"
        );
        assert_eq!(reason(&[]), None);
    }
}
