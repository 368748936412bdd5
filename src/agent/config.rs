//! The agent's environment contract, read once into a [`Config`]. Everything that
//! can be wrong with the pod's env is reported here, before any git or opencode run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::answers::QuestionPolicy;
use super::permissions::Policy;
use crate::contract::{self as env, Prompt, TaskEnv};

/// Chart defaults (values.yaml `task.gitAuthor*`), for a pod started without them.
pub const DEFAULT_AUTHOR_NAME: &str = "asdo-agent";
pub const DEFAULT_AUTHOR_EMAIL: &str = "asdo-agent@users.noreply.github.com";
pub const DEFAULT_CONTEXT: &str = "/workspace";
/// Where the image bakes the host keys of github.com, gitlab.com and bitbucket.org.
pub const DEFAULT_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";
/// Key file names tried in GIT_SSH_KEY_DIR: the kubernetes.io/ssh-auth key first, then ssh's own names.
pub const KEY_NAMES: [&str; 4] = ["ssh-privatekey", "id_ed25519", "id_ecdsa", "id_rsa"];
/// Between SIGTERM to a child and SIGKILL; well inside the pod's 30 s termination grace.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// The prompt travels in an HTTP request body to OpenCode, not in argv, so only memory
/// bounds it; this keeps a runaway file from being sent. spawn caps what it sends lower
/// (an API object is at most about 1.5 MiB).
pub const MAX_PROMPT_BYTES: usize = 8 * 1024 * 1024;
/// `agent.idleTimeout`: no event but heartbeats for this long fails the task.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// `agent.toolTimeout`: a tool call (a build, a test run) may run silently this long.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How git authenticates to the remote.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// A private key found in GIT_SSH_KEY_DIR.
    pub ssh_key: Option<PathBuf>,
    /// GIT_TOKEN was set; its value stays in the environment and is never copied here,
    /// so no Debug print or error message can carry it.
    pub token: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ssh_key", &self.ssh_key)
            .field("token", &if self.token { "<set>" } else { "<unset>" })
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub task_id: String,
    pub repo: String,
    pub branch: String,
    /// Open a draft pull/merge request after the push (ASDO_PULL_REQUEST), on this forge.
    pub forge: Option<super::forge::Forge>,
    /// Where a new task branch starts (GIT_BASE: a branch, tag or commit); None: the remote's default branch.
    pub base: Option<String>,
    /// The work tree (TASK_CONTEXT_PATH).
    pub context: PathBuf,
    /// The user's instructions as given (TASK_PROMPT or the file's text), if any.
    pub prompt: Option<String>,
    /// Repository-relative spec directory, e.g. `specs/001-auth`.
    pub spec_dir: Option<String>,
    pub model: Option<String>,
    pub author_name: String,
    pub author_email: String,
    pub credentials: Credentials,
    pub known_hosts: PathBuf,
    /// Where the SSH key copy goes (HOME).
    pub home: PathBuf,
    pub kill_grace: Duration,
    /// How permission requests are answered (ASDO_PERMISSIONS).
    pub permissions: Policy,
    /// How the model's questions are answered (ASDO_QUESTIONS).
    pub questions: QuestionPolicy,
    /// The person's channel: the downwardAPI file with the pod's annotations (ASDO_ANSWERS_FILE).
    pub answers_file: Option<PathBuf>,
    /// Names of the env vars whose values are secrets (ASDO_SECRET_ENV, plus the ones
    /// the agent knows: GIT_TOKEN, OPENCODE_SERVER_PASSWORD). Names only, never values.
    pub secret_env: Vec<String>,
    /// ASDO_IDLE_TIMEOUT.
    pub idle_timeout: Duration,
    /// ASDO_OPENCODE_PORT; 0 picks a free one.
    pub opencode_port: u16,
    /// ASDO_MAX_TURNS, ASDO_MAX_TOKENS, ASDO_MAX_COST.
    pub budgets: super::budget::Budgets,
    /// ASDO_TOOL_TIMEOUT.
    pub tool_timeout: Duration,
    /// ASDO_ALLOW_NO_CHANGES: changing nothing is a success (review and answer tasks).
    pub allow_no_changes: bool,
}

/// A config problem, worded for the pod log; never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// `get` returns a variable's value; empty counts as unset, as it does for
    /// Kubernetes env entries rendered from empty values. The contract is read by
    /// [`TaskEnv::from_lookup`]; this turns its values into settings.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let e = TaskEnv::from_lookup(get).map_err(ConfigError)?;

        let context = PathBuf::from(e.context_path.unwrap_or(DEFAULT_CONTEXT.into()));
        if !context.is_absolute() {
            return err(format!(
                "{} {} must be an absolute path",
                env::TASK_CONTEXT_PATH,
                context.display()
            ));
        }

        let prompt = match e.prompt {
            Some(Prompt::Text(p)) => Some(p),
            Some(Prompt::File(file)) => Some(std::fs::read_to_string(&file).map_err(|e| {
                ConfigError(format!(
                    "{} {file}: cannot read it: {e}",
                    env::TASK_PROMPT_FILE
                ))
            })?),
            None => None,
        };
        let prompt = prompt.filter(|p| !p.trim().is_empty());
        if prompt.as_ref().is_some_and(|p| p.len() > MAX_PROMPT_BYTES) {
            return err(format!(
                "the task prompt is longer than {} MiB; put the details in a file in the repository and point the prompt at it",
                MAX_PROMPT_BYTES / 1024 / 1024
            ));
        }

        let spec_dir = e.spec_dir.map(|d| clean_spec_dir(&d)).transpose()?;

        let model = e.model;
        if let Some(m) = &model {
            validate_model(m)?;
        }

        let home = PathBuf::from(e.home.unwrap_or("/tmp".into()));
        let ssh_key = e.ssh_key_dir.map(|d| find_key(Path::new(&d))).transpose()?;
        let credentials = Credentials {
            ssh_key,
            token: e.git_token.is_some(),
        };

        let kill_grace = match e.kill_grace {
            None => DEFAULT_KILL_GRACE,
            Some(s) => s.parse::<u64>().map(Duration::from_secs).map_err(|_| {
                ConfigError(format!("{} {s:?}: expected whole seconds", env::KILL_GRACE))
            })?,
        };

        let permissions = match e.permissions {
            None => Policy::default(),
            Some(p) => Policy::parse(&p).map_err(ConfigError)?,
        };
        let questions = match e.questions {
            None => QuestionPolicy::default(),
            Some(q) => QuestionPolicy::parse(&q).map_err(ConfigError)?,
        };
        let answers_file = e.answers_file.map(PathBuf::from);
        if let Some(f) = &answers_file
            && !f.is_absolute()
        {
            return err(format!(
                "{} {} must be an absolute path",
                env::ANSWERS_FILE,
                f.display()
            ));
        }
        let mut secret_env: Vec<String> = vec![env::PASSWORD_ENV.into(), env::GIT_TOKEN.into()];
        for name in e.secret_env {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return err(format!(
                    "{}: {name:?} is not an environment variable name",
                    env::SECRET_ENV_LIST
                ));
            }
            if !secret_env.contains(&name) {
                secret_env.push(name);
            }
        }
        let idle_timeout = match e.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(s) => match crate::humantime::parse(&s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return err(format!("{} must be longer than 0s", env::IDLE_TIMEOUT)),
                Err(x) => return err(format!("{}: {x}", env::IDLE_TIMEOUT)),
            },
        };
        let opencode_port = match e.opencode_port {
            None => env::OPENCODE_PORT,
            Some(s) => s.parse::<u16>().map_err(|_| {
                ConfigError(format!(
                    "{} {s:?}: expected a port number (0 for any free one)",
                    env::OPENCODE_PORT_ENV
                ))
            })?,
        };

        let count = |k: &str, v: Option<String>, default: u64| match v {
            None => Ok(default),
            Some(s) => s.trim().parse::<u64>().map_err(|_| {
                ConfigError(format!(
                    "{k} {s:?}: expected a whole number (0 for no limit)"
                ))
            }),
        };
        let budgets = super::budget::Budgets {
            max_turns: count(
                env::MAX_TURNS,
                e.max_turns,
                super::budget::DEFAULT_MAX_TURNS,
            )?,
            max_tokens: count(
                env::MAX_TOKENS,
                e.max_tokens,
                super::budget::DEFAULT_MAX_TOKENS,
            )?,
            max_cost: match e.max_cost {
                None => super::budget::DEFAULT_MAX_COST,
                Some(s) => super::budget::parse_cost(&s)
                    .map_err(|x| ConfigError(format!("{}: {x}", env::MAX_COST)))?,
            },
        };
        let tool_timeout = match e.tool_timeout {
            None => DEFAULT_TOOL_TIMEOUT,
            Some(s) => match crate::humantime::parse(&s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return err(format!("{} must be longer than 0s", env::TOOL_TIMEOUT)),
                Err(x) => return err(format!("{}: {x}", env::TOOL_TIMEOUT)),
            },
        };
        let allow_no_changes = match e.allow_no_changes.as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return err(format!(
                    "{} {other:?}: expected true or false",
                    env::ALLOW_NO_CHANGES
                ));
            }
        };

        let forge = match e.pull_request.as_deref() {
            None | Some("false") | Some("0") => None,
            Some("true") | Some("1") => {
                if !credentials.token {
                    return err(format!(
                        "{} needs {} (pod.gitTokenSecret): the forge API takes a token, not an SSH key",
                        env::PULL_REQUEST,
                        env::GIT_TOKEN
                    ));
                }
                let f = super::forge::resolve(
                    &e.repo,
                    e.forge.as_deref(),
                    e.forge_api_url.as_deref(),
                    e.forge_project.as_deref(),
                )
                .map_err(|x| ConfigError(format!("{}: {x}", env::PULL_REQUEST)))?;
                Some(f)
            }
            Some(other) => {
                return err(format!(
                    "{} {other:?}: expected true or false",
                    env::PULL_REQUEST
                ));
            }
        };

        Ok(Config {
            forge,
            task_id: e.task_id,
            repo: e.repo,
            branch: e.branch,
            base: e.base,
            context,
            prompt,
            spec_dir,
            model,
            author_name: e.author_name.unwrap_or(DEFAULT_AUTHOR_NAME.into()),
            author_email: e.author_email.unwrap_or(DEFAULT_AUTHOR_EMAIL.into()),
            credentials,
            known_hosts: e.known_hosts.unwrap_or(DEFAULT_KNOWN_HOSTS.into()).into(),
            home,
            kill_grace,
            permissions,
            questions,
            answers_file,
            secret_env,
            idle_timeout,
            opencode_port,
            budgets,
            tool_timeout,
            allow_no_changes,
        })
    }

    /// The repository as it may be shown: userinfo dropped from URLs.
    pub fn repo_for_display(&self) -> String {
        redact_url(&self.repo)
    }

    /// Resolved settings, one per line, for `asdo agent --dry-run`. No secrets.
    pub fn describe(&self) -> String {
        let creds = match (&self.credentials.ssh_key, self.credentials.token) {
            (Some(k), true) => format!("ssh key {} and GIT_TOKEN", k.display()),
            (Some(k), false) => format!("ssh key {}", k.display()),
            (None, true) => "GIT_TOKEN (https credential helper)".into(),
            (None, false) => "none".into(),
        };
        let lines = [
            ("task", self.task_id.clone()),
            ("repo", self.repo_for_display()),
            ("branch", self.branch.clone()),
            ("context", self.context.display().to_string()),
            ("spec-dir", self.spec_dir.clone().unwrap_or("-".into())),
            (
                "model",
                self.model.clone().unwrap_or("(opencode default)".into()),
            ),
            (
                "author",
                format!("{} <{}>", self.author_name, self.author_email),
            ),
            ("credentials", creds),
            ("known-hosts", self.known_hosts.display().to_string()),
            ("permissions", self.permissions.name().to_string()),
            ("questions", self.questions.name().to_string()),
            (
                "answers-file",
                self.answers_file
                    .as_ref()
                    .map_or("-".to_string(), |f| f.display().to_string()),
            ),
            ("secret-env", self.secret_env.join(",")),
            ("idle-timeout", crate::humantime::short(self.idle_timeout)),
            ("opencode", format!("127.0.0.1:{}", self.opencode_port)),
            ("budgets", self.budgets.describe()),
            ("tool-timeout", crate::humantime::short(self.tool_timeout)),
            ("allow-no-changes", self.allow_no_changes.to_string()),
        ];
        lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
    }
}

/// `scheme://user:pw@host/…` → `scheme://host/…`; scp-like `git@host:path` is kept (no secret there).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

/// The spec dir is joined to the repository root in the prompt: keep it relative and inside.
fn clean_spec_dir(dir: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if dir.starts_with('/') || parts.contains(&"..") || dir.chars().any(char::is_control) {
        return err(format!(
            "TASK_SPEC_DIR {dir:?} must be a path relative to the repository root, e.g. specs/001-auth"
        ));
    }
    Ok(parts.join("/"))
}

/// `provider/model`; it is passed as an argument, so it must not look like an option.
fn validate_model(m: &str) -> Result<(), ConfigError> {
    let ok = m
        .split_once('/')
        .is_some_and(|(p, rest)| !p.is_empty() && !rest.is_empty() && !p.starts_with('-'))
        && !m.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        err(format!(
            "OPENCODE_MODEL {m:?} must look like provider/model, e.g. anthropic/claude-sonnet-4-5"
        ))
    }
}

fn find_key(dir: &Path) -> Result<PathBuf, ConfigError> {
    KEY_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ConfigError(format!(
                "GIT_SSH_KEY_DIR {}: no private key found (looked for {})",
                dir.display(),
                KEY_NAMES.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        ("TASK_ID", "T001"),
        ("GIT_REPO", "https://github.com/org/repo.git"),
        ("GIT_BRANCH", "specs/001-auth/T001-async"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut vars = BASE.to_vec();
        vars.extend_from_slice(extra);
        Config::from_lookup(lookup(&vars))
    }

    #[test]
    fn defaults() {
        let c = with(&[("HOME", "/home/agent")]).unwrap();
        assert_eq!(c.context, Path::new("/workspace"));
        assert_eq!(c.author_name, DEFAULT_AUTHOR_NAME);
        assert_eq!(c.author_email, DEFAULT_AUTHOR_EMAIL);
        assert_eq!(c.prompt, None);
        assert_eq!(c.spec_dir, None);
        assert_eq!(c.model, None);
        assert_eq!(
            c.credentials,
            Credentials {
                ssh_key: None,
                token: false
            }
        );
        assert_eq!(c.known_hosts, Path::new(DEFAULT_KNOWN_HOSTS));
        assert_eq!(c.kill_grace, DEFAULT_KILL_GRACE);
        assert_eq!(c.permissions, super::super::permissions::Policy::Approve);
        assert_eq!(c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.opencode_port, 4096);
        assert_eq!(c.budgets, super::super::budget::Budgets::default());
        assert_eq!(c.tool_timeout, DEFAULT_TOOL_TIMEOUT);
        assert!(!c.allow_no_changes);
    }

    #[test]
    fn budgets_tool_timeout_and_no_changes_from_env() {
        let c = with(&[
            ("ASDO_MAX_TURNS", "12"),
            ("ASDO_MAX_TOKENS", "50000"),
            ("ASDO_MAX_COST", "$1.25"),
            ("ASDO_TOOL_TIMEOUT", "45m"),
            ("ASDO_ALLOW_NO_CHANGES", "true"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.budgets.max_turns,
                c.budgets.max_tokens,
                c.budgets.max_cost
            ),
            (12, 50000, 1.25)
        );
        assert_eq!(c.tool_timeout, Duration::from_secs(45 * 60));
        assert!(c.allow_no_changes);
        for (k, v, want) in [
            (
                "ASDO_MAX_TURNS",
                "ten",
                "ASDO_MAX_TURNS \"ten\": expected a whole number",
            ),
            (
                "ASDO_MAX_TOKENS",
                "-1",
                "ASDO_MAX_TOKENS \"-1\": expected a whole number",
            ),
            (
                "ASDO_MAX_COST",
                "-2",
                "ASDO_MAX_COST: \"-2\": expected US dollars",
            ),
            (
                "ASDO_TOOL_TIMEOUT",
                "0s",
                "ASDO_TOOL_TIMEOUT must be longer than 0s",
            ),
            (
                "ASDO_ALLOW_NO_CHANGES",
                "yes",
                "ASDO_ALLOW_NO_CHANGES \"yes\": expected true or false",
            ),
        ] {
            let e = with(&[(k, v)]).unwrap_err();
            assert!(e.0.starts_with(want), "{k}={v}: {e}");
        }
    }

    #[test]
    fn everything_set() {
        let c = with(&[
            ("TASK_CONTEXT_PATH", "/work/here"),
            ("TASK_PROMPT", "Add login"),
            ("TASK_SPEC_DIR", "./specs//001-auth/"),
            ("OPENCODE_MODEL", "anthropic/claude-sonnet-4-5"),
            ("GIT_AUTHOR_NAME", "Bot"),
            ("GIT_AUTHOR_EMAIL", "bot@example.com"),
            ("GIT_TOKEN", "tok-123456"),
            ("ASDO_KILL_GRACE", "2"),
        ])
        .unwrap();
        assert_eq!(c.context, Path::new("/work/here"));
        assert_eq!(c.prompt.as_deref(), Some("Add login"));
        assert_eq!(c.spec_dir.as_deref(), Some("specs/001-auth"));
        assert_eq!(c.model.as_deref(), Some("anthropic/claude-sonnet-4-5"));
        assert_eq!(
            (c.author_name.as_str(), c.author_email.as_str()),
            ("Bot", "bot@example.com")
        );
        assert!(c.credentials.token);
        assert_eq!(c.kill_grace, Duration::from_secs(2));
        let shown = format!("{c:?}\n{}", c.describe());
        assert!(!shown.contains("tok-123456"), "{shown}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = with(&[
            ("TASK_PROMPT", ""),
            ("OPENCODE_MODEL", ""),
            ("TASK_CONTEXT_PATH", ""),
        ])
        .unwrap();
        assert_eq!((c.prompt, c.model), (None, None));
        assert_eq!(c.context, Path::new(DEFAULT_CONTEXT));
    }

    #[test]
    fn missing_and_invalid_values_are_refused() {
        for missing in ["TASK_ID", "GIT_REPO", "GIT_BRANCH"] {
            let vars: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = Config::from_lookup(lookup(&vars)).unwrap_err();
            assert!(e.0.contains(missing), "{e}");
        }
        for bad in [
            ("GIT_BRANCH", "a..b"),
            ("GIT_BRANCH", "-x"),
            ("TASK_ID", "T_1"),
            ("GIT_REPO", "/local/path"),
            ("GIT_REPO", "--upload-pack=evil"),
            ("TASK_CONTEXT_PATH", "relative/dir"),
            ("TASK_SPEC_DIR", "../outside"),
            ("TASK_SPEC_DIR", "/abs"),
            ("OPENCODE_MODEL", "-m"),
            ("OPENCODE_MODEL", "no-slash"),
            ("ASDO_KILL_GRACE", "soon"),
            ("ASDO_PERMISSIONS", "sure"),
            ("ASDO_IDLE_TIMEOUT", "0"),
            ("ASDO_IDLE_TIMEOUT", "soon"),
            ("ASDO_OPENCODE_PORT", "70000"),
            ("TASK_PROMPT_FILE", "/nonexistent/prompt.md"),
        ] {
            let vars: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != bad.0)
                .chain([bad])
                .collect();
            assert!(Config::from_lookup(lookup(&vars)).is_err(), "{bad:?}");
        }
        let e = with(&[("TASK_PROMPT", "a"), ("TASK_PROMPT_FILE", "/x")]).unwrap_err();
        assert!(e.0.contains("not both"), "{e}");
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_echoing_it() {
        let vars = [
            ("TASK_ID", "T001"),
            ("GIT_REPO", "https://user:s3cr3t-pw@github.com/org/repo.git"),
            ("GIT_BRANCH", "b"),
        ];
        let e = Config::from_lookup(lookup(&vars)).unwrap_err();
        assert!(e.0.starts_with("GIT_REPO:"), "{e}");
        assert!(!e.0.contains("s3cr3t-pw"), "{e}");
    }

    #[test]
    fn redacts_userinfo_for_display() {
        assert_eq!(
            redact_url("https://x@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(redact_url("ssh://git@host:22/o/r"), "ssh://host:22/o/r");
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_url("file:///srv/r.git"), "file:///srv/r.git");
    }

    #[test]
    fn prompt_file_and_ssh_key_dir() {
        let dir = std::env::temp_dir().join(format!("asdo-config-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("prompt.md"), "Do the thing\nin detail\n").unwrap();
        std::fs::write(dir.join("keys/id_rsa"), "rsa").unwrap();
        std::fs::write(dir.join("keys/id_ed25519"), "ed").unwrap();
        let prompt = dir.join("prompt.md").display().to_string();
        let keys = dir.join("keys").display().to_string();
        let mut vars = BASE.to_vec();
        vars.push(("TASK_PROMPT_FILE", &prompt));
        vars.push(("GIT_SSH_KEY_DIR", &keys));
        let c = Config::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(c.prompt.as_deref(), Some("Do the thing\nin detail\n"));
        // ed25519 is preferred over rsa; ssh-privatekey (kubernetes.io/ssh-auth) over both.
        assert_eq!(c.credentials.ssh_key, Some(dir.join("keys/id_ed25519")));
        std::fs::write(dir.join("keys/ssh-privatekey"), "k8s").unwrap();
        let c = Config::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(c.credentials.ssh_key, Some(dir.join("keys/ssh-privatekey")));

        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let empty = empty.display().to_string();
        let mut vars = BASE.to_vec();
        vars.push(("GIT_SSH_KEY_DIR", &empty));
        let e = Config::from_lookup(lookup(&vars)).unwrap_err();
        assert!(e.0.contains("no private key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
