//! The pod env contract: every variable `render` sets on the agent container and
//! `asdo agent` reads back, spelled once. `render` builds a [`TaskEnv`] and writes it with
//! [`TaskEnv::to_env`]; the agent reads it with [`TaskEnv::from_lookup`] (then
//! `agent::config` interprets it); `asdo agent --help` lists [`VARS`]. An agent started
//! outside a pod takes the same variables.
//!
//! Pure: no I/O. Values are kept as the env carries them (strings as the chart renders
//! them: "300", "1.5", "30m", "false"); parsing them is the agent's business.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

pub const TASK_ID: &str = "TASK_ID";
pub const GIT_REPO: &str = "GIT_REPO";
pub const GIT_BRANCH: &str = "GIT_BRANCH";
pub const GIT_BASE: &str = "GIT_BASE";
pub const TASK_CONTEXT_PATH: &str = "TASK_CONTEXT_PATH";
pub const TASK_SPEC_DIR: &str = "TASK_SPEC_DIR";
pub const TASK_PROMPT: &str = "TASK_PROMPT";
pub const TASK_PROMPT_FILE: &str = "TASK_PROMPT_FILE";
pub const OPENCODE_MODEL: &str = "OPENCODE_MODEL";
pub const GIT_AUTHOR_NAME: &str = "GIT_AUTHOR_NAME";
pub const GIT_AUTHOR_EMAIL: &str = "GIT_AUTHOR_EMAIL";
pub const HOME: &str = "HOME";
pub const GIT_SSH_KEY_DIR: &str = "GIT_SSH_KEY_DIR";
pub const GIT_SSH_KNOWN_HOSTS: &str = "GIT_SSH_KNOWN_HOSTS";
/// From a Secret (`pod.gitTokenSecret`); never copied out of the environment.
pub const GIT_TOKEN: &str = "GIT_TOKEN";
/// The OpenCode server's password: from the release's Secret in a pod; read on this side
/// too, by `attach`/`send`, as an override of the Secret.
pub const PASSWORD_ENV: &str = "OPENCODE_SERVER_PASSWORD";
pub const PULL_REQUEST: &str = "ASDO_PULL_REQUEST";
pub const FORGE: &str = "ASDO_FORGE";
pub const FORGE_API_URL: &str = "ASDO_FORGE_API_URL";
pub const FORGE_PROJECT: &str = "ASDO_FORGE_PROJECT";
pub const PERMISSIONS: &str = "ASDO_PERMISSIONS";
pub const IDLE_TIMEOUT: &str = "ASDO_IDLE_TIMEOUT";
pub const QUESTIONS: &str = "ASDO_QUESTIONS";
/// The downwardAPI file that holds the pod's annotations (the person's answers).
pub const ANSWERS_FILE: &str = "ASDO_ANSWERS_FILE";
/// Comma-separated names of the variables whose values are secrets (rendered from
/// `secretKeyRef`): the agent redacts them from the log and refuses to commit them.
pub const SECRET_ENV_LIST: &str = "ASDO_SECRET_ENV";
/// `agent.maxTurns`: model turns (0: no limit).
pub const MAX_TURNS: &str = "ASDO_MAX_TURNS";
/// `agent.maxTokens`: input plus output tokens over the run (0: no limit).
pub const MAX_TOKENS: &str = "ASDO_MAX_TOKENS";
/// `agent.maxCost`: US dollars as OpenCode reports them per step (0: no limit).
pub const MAX_COST: &str = "ASDO_MAX_COST";
/// `agent.toolTimeout`: one tool call running longer than this fails the task.
pub const TOOL_TIMEOUT: &str = "ASDO_TOOL_TIMEOUT";
/// `agent.allowNoChanges`: a run that changed nothing ends `done no-changes`, exit 0.
pub const ALLOW_NO_CHANGES: &str = "ASDO_ALLOW_NO_CHANGES";
/// Seconds between SIGTERM to a child and SIGKILL.
pub const KILL_GRACE: &str = "ASDO_KILL_GRACE";
/// The port `opencode serve` listens on (127.0.0.1); [`OPENCODE_PORT`] when unset, 0 for
/// any free one (an agent run outside a pod, beside another).
pub const OPENCODE_PORT_ENV: &str = "ASDO_OPENCODE_PORT";

/// `opencode serve` in the agent container: the agent's default port and the pod's
/// container port, published under [`OPENCODE_PORT_NAME`].
pub const OPENCODE_PORT: u16 = 4096;
/// The container port name `attach`/`send` look for.
pub const OPENCODE_PORT_NAME: &str = "opencode";
/// The key in the release's password Secret (kept from the original chart).
pub const SERVER_PASSWORD_KEY: &str = "server-password";

/// `agent.permissions` / `ASDO_PERMISSIONS`: how the agent answers OpenCode's permission requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Allow it once. The pod is the sandbox; `deny` rules in OpenCode's config still
    /// hold because OpenCode never asks for a denied tool.
    #[default]
    Approve,
    /// Refuse it and fail the task (exit 12), naming the permission.
    Fail,
    /// Leave it for a person (`asdo attach`); the idle watchdog bounds the wait.
    Wait,
}

impl Policy {
    pub const NAMES: [&'static str; 3] = ["approve", "fail", "wait"];

    pub fn parse(s: &str) -> Result<Policy, String> {
        match s.trim() {
            "approve" => Ok(Policy::Approve),
            "fail" => Ok(Policy::Fail),
            "wait" => Ok(Policy::Wait),
            other => Err(format!(
                "{PERMISSIONS} {other:?}: expected one of {}",
                Policy::NAMES.join(", ")
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Approve => "approve",
            Policy::Fail => "fail",
            Policy::Wait => "wait",
        }
    }
}

/// `agent.questions` / `ASDO_QUESTIONS`: what happens when the model asks a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuestionPolicy {
    /// Refuse it and fail the task at once (exit 12), naming the question: a task pod
    /// usually has nobody watching, and the idle timeout would take 20 minutes to say so.
    #[default]
    Fail,
    /// Leave it for a person (`asdo answer`, or `asdo attach`); the idle timeout bounds the wait.
    Wait,
}

impl QuestionPolicy {
    pub const NAMES: [&'static str; 2] = ["fail", "wait"];

    pub fn parse(s: &str) -> Result<QuestionPolicy, String> {
        match s.trim() {
            "fail" => Ok(QuestionPolicy::Fail),
            "wait" => Ok(QuestionPolicy::Wait),
            other => Err(format!(
                "{QUESTIONS} {other:?}: expected one of {}",
                QuestionPolicy::NAMES.join(", ")
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QuestionPolicy::Fail => "fail",
            QuestionPolicy::Wait => "wait",
        }
    }
}

/// Defaults of the budgets (documented in the chart's README and docker/README.md).
/// 0 means "no limit". Turns bound every run (a long task takes 50–150); tokens and
/// cost depend on the model, so they are off unless a release or a task sets them.
pub const DEFAULT_MAX_TURNS: u64 = 300;
pub const DEFAULT_MAX_TOKENS: u64 = 0;
pub const DEFAULT_MAX_COST: f64 = 0.0;

/// Parses a cost: `1.5`, `$1.50`; never negative.
pub fn parse_cost(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("{s:?}: expected US dollars, e.g. 2.50 (0 for no limit)"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: expected US dollars, 0 or more"))
    }
}

/// Every variable of the contract with one line for `asdo agent --help`, in the order
/// a person reads them.
pub const VARS: &[(&str, &str)] = &[
    (TASK_ID, "the task id (required)"),
    (GIT_REPO, "the repository URL (required)"),
    (GIT_BRANCH, "the task branch (required)"),
    (
        GIT_BASE,
        "where a new branch starts (default: the remote's default branch)",
    ),
    (
        TASK_CONTEXT_PATH,
        "the work tree, an absolute path (default /workspace)",
    ),
    (
        TASK_SPEC_DIR,
        "the spec directory, relative to the repository",
    ),
    (TASK_PROMPT, "the instructions"),
    (TASK_PROMPT_FILE, "… or a file holding them (not both)"),
    (OPENCODE_MODEL, "provider/model (default: OpenCode's)"),
    (GIT_AUTHOR_NAME, "commit author (default asdo-agent)"),
    (GIT_AUTHOR_EMAIL, "commit author's email"),
    (
        HOME,
        "the agent's home: git and OpenCode state, the SSH key's copy",
    ),
    (GIT_SSH_KEY_DIR, "a directory holding the SSH private key"),
    (GIT_SSH_KNOWN_HOSTS, "known hosts file"),
    (GIT_TOKEN, "an HTTPS token (from a Secret)"),
    (
        PASSWORD_ENV,
        "the OpenCode server's password (default: made up for the run)",
    ),
    (
        OPENCODE_PORT_ENV,
        "the OpenCode server's port on 127.0.0.1 (default 4096; 0: any free one)",
    ),
    (PULL_REQUEST, "open a draft pull/merge request (true|false)"),
    (FORGE, "github|gitlab (default: from the repository URL)"),
    (FORGE_API_URL, "the forge's API URL"),
    (FORGE_PROJECT, "owner/repository on the forge"),
    (PERMISSIONS, "approve|fail|wait (default approve)"),
    (QUESTIONS, "fail|wait (default fail)"),
    (ANSWERS_FILE, "the pod's annotations file (answers)"),
    (SECRET_ENV_LIST, "names of the variables holding secrets"),
    (IDLE_TIMEOUT, "no event for this long fails the run (20m)"),
    (TOOL_TIMEOUT, "one tool call may run this long (30m)"),
    (MAX_TURNS, "model turns (300; 0: no limit)"),
    (MAX_TOKENS, "tokens in + out (0: no limit)"),
    (MAX_COST, "US dollars (0: no limit)"),
    (
        ALLOW_NO_CHANGES,
        "a run that changes nothing succeeds (false)",
    ),
    (
        KILL_GRACE,
        "seconds from SIGTERM to SIGKILL for a child (10)",
    ),
];

/// `asdo agent --help`'s list of variables, from [`VARS`].
pub fn vars_help() -> String {
    let width = VARS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    VARS.iter()
        .map(|(n, what)| format!("  {n:width$}  {what}\n"))
        .collect()
}

/// Where the instructions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// TASK_PROMPT.
    Text(String),
    /// TASK_PROMPT_FILE: a path in the container.
    File(String),
}

/// A variable whose value comes from a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// Render side: the Secret and key the kubelet resolves.
    Ref { secret: String, key: String },
    /// Agent side: the variable is set. Its value stays in the environment and is never
    /// copied here, so no Debug print or error can carry it.
    Set,
}

impl SecretValue {
    /// As the agent sees it: the reference resolved to a value.
    pub fn seen(&self) -> SecretValue {
        SecretValue::Set
    }
}

/// The task settings the pod env carries. Empty values count as unset, as they do for
/// Kubernetes env entries rendered from empty chart values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskEnv {
    pub task_id: String,
    pub repo: String,
    pub branch: String,
    pub base: Option<String>,
    pub context_path: Option<String>,
    pub spec_dir: Option<String>,
    pub prompt: Option<Prompt>,
    pub model: Option<String>,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub home: Option<String>,
    pub ssh_key_dir: Option<String>,
    pub git_token: Option<SecretValue>,
    /// ASDO_PULL_REQUEST, as given (`true`, `false`, `1`, `0`).
    pub pull_request: Option<String>,
    pub forge: Option<String>,
    pub forge_api_url: Option<String>,
    pub forge_project: Option<String>,
    pub password: Option<SecretValue>,
    pub permissions: Option<String>,
    pub idle_timeout: Option<String>,
    pub questions: Option<String>,
    pub answers_file: Option<String>,
    /// ASDO_SECRET_ENV, split on commas (blank names dropped).
    pub secret_env: Vec<String>,
    pub max_turns: Option<String>,
    pub max_tokens: Option<String>,
    pub max_cost: Option<String>,
    pub tool_timeout: Option<String>,
    pub allow_no_changes: Option<String>,
    pub known_hosts: Option<String>,
    pub kill_grace: Option<String>,
    pub opencode_port: Option<String>,
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_var(name: &str, v: &SecretValue) -> Option<EnvVar> {
    let SecretValue::Ref { secret, key } = v else {
        return None;
    };
    Some(EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    })
}

impl TaskEnv {
    /// The names of the variables this env takes from Secrets, in env order.
    pub fn secret_names(&self) -> Vec<&'static str> {
        [(GIT_TOKEN, &self.git_token), (PASSWORD_ENV, &self.password)]
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    /// The container env, in the order the chart's template writes it (CI compares the
    /// two). A [`SecretValue::Set`] is not written: only a reference can be.
    pub fn to_env(&self) -> Vec<EnvVar> {
        let mut env = vec![
            literal(TASK_ID, &self.task_id),
            literal(GIT_REPO, &self.repo),
            literal(GIT_BRANCH, &self.branch),
        ];
        let opt = |env: &mut Vec<EnvVar>, name: &str, v: &Option<String>| {
            if let Some(v) = v {
                env.push(literal(name, v));
            }
        };
        opt(&mut env, GIT_BASE, &self.base);
        opt(&mut env, TASK_CONTEXT_PATH, &self.context_path);
        opt(&mut env, TASK_SPEC_DIR, &self.spec_dir);
        match &self.prompt {
            Some(Prompt::File(f)) => env.push(literal(TASK_PROMPT_FILE, f)),
            Some(Prompt::Text(t)) => env.push(literal(TASK_PROMPT, t)),
            None => {}
        }
        opt(&mut env, OPENCODE_MODEL, &self.model);
        opt(&mut env, GIT_AUTHOR_NAME, &self.author_name);
        opt(&mut env, GIT_AUTHOR_EMAIL, &self.author_email);
        opt(&mut env, HOME, &self.home);
        opt(&mut env, GIT_SSH_KEY_DIR, &self.ssh_key_dir);
        opt(&mut env, GIT_SSH_KNOWN_HOSTS, &self.known_hosts);
        env.extend(
            self.git_token
                .as_ref()
                .and_then(|t| secret_var(GIT_TOKEN, t)),
        );
        opt(&mut env, PULL_REQUEST, &self.pull_request);
        opt(&mut env, FORGE, &self.forge);
        opt(&mut env, FORGE_API_URL, &self.forge_api_url);
        opt(&mut env, FORGE_PROJECT, &self.forge_project);
        env.extend(
            self.password
                .as_ref()
                .and_then(|p| secret_var(PASSWORD_ENV, p)),
        );
        opt(&mut env, PERMISSIONS, &self.permissions);
        opt(&mut env, IDLE_TIMEOUT, &self.idle_timeout);
        opt(&mut env, QUESTIONS, &self.questions);
        opt(&mut env, ANSWERS_FILE, &self.answers_file);
        env.push(literal(SECRET_ENV_LIST, &self.secret_env.join(",")));
        opt(&mut env, MAX_TURNS, &self.max_turns);
        opt(&mut env, MAX_TOKENS, &self.max_tokens);
        opt(&mut env, MAX_COST, &self.max_cost);
        opt(&mut env, TOOL_TIMEOUT, &self.tool_timeout);
        opt(&mut env, ALLOW_NO_CHANGES, &self.allow_no_changes);
        opt(&mut env, KILL_GRACE, &self.kill_grace);
        opt(&mut env, OPENCODE_PORT_ENV, &self.opencode_port);
        env
    }

    /// Reads the contract through `get` (a variable's value; empty counts as unset).
    /// Refuses what no agent can run with: a missing or malformed identity (TASK_ID,
    /// GIT_REPO, GIT_BRANCH, GIT_BASE) or both prompt variables. The message never
    /// carries a secret (a password in a URL is not echoed).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<TaskEnv, String> {
        use crate::task;
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let required =
            |k: &str| get(k).ok_or_else(|| format!("{k} is not set (the pod env must carry it)"));

        let task_id = required(TASK_ID)?;
        task::validate_task_id(&task_id).map_err(|e| format!("{TASK_ID}: {e}"))?;
        let repo = required(GIT_REPO)?;
        // validate_repo never echoes a URL that carries a password.
        task::validate_repo(&repo).map_err(|e| format!("{GIT_REPO}: {e}"))?;
        let branch = required(GIT_BRANCH)?;
        task::validate_branch(&branch).map_err(|e| format!("{GIT_BRANCH}: {e}"))?;
        let base = get(GIT_BASE);
        if let Some(b) = &base {
            task::validate_branch(b).map_err(|e| format!("{GIT_BASE}: {e}"))?;
        }
        let prompt = match (get(TASK_PROMPT), get(TASK_PROMPT_FILE)) {
            (Some(_), Some(_)) => {
                return Err(format!("set {TASK_PROMPT} or {TASK_PROMPT_FILE}, not both"));
            }
            (Some(p), None) => Some(Prompt::Text(p)),
            (None, Some(f)) => Some(Prompt::File(f)),
            (None, None) => None,
        };
        let secret = |k: &str| get(k).map(|_| SecretValue::Set);
        Ok(TaskEnv {
            task_id,
            repo,
            branch,
            base,
            context_path: get(TASK_CONTEXT_PATH),
            spec_dir: get(TASK_SPEC_DIR),
            prompt,
            model: get(OPENCODE_MODEL),
            author_name: get(GIT_AUTHOR_NAME),
            author_email: get(GIT_AUTHOR_EMAIL),
            home: get(HOME),
            ssh_key_dir: get(GIT_SSH_KEY_DIR),
            git_token: secret(GIT_TOKEN),
            pull_request: get(PULL_REQUEST),
            forge: get(FORGE),
            forge_api_url: get(FORGE_API_URL),
            forge_project: get(FORGE_PROJECT),
            password: secret(PASSWORD_ENV),
            permissions: get(PERMISSIONS),
            idle_timeout: get(IDLE_TIMEOUT),
            questions: get(QUESTIONS),
            answers_file: get(ANSWERS_FILE),
            secret_env: get(SECRET_ENV_LIST)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            max_turns: get(MAX_TURNS),
            max_tokens: get(MAX_TOKENS),
            max_cost: get(MAX_COST),
            tool_timeout: get(TOOL_TIMEOUT),
            allow_no_changes: get(ALLOW_NO_CHANGES),
            known_hosts: get(GIT_SSH_KNOWN_HOSTS),
            kill_grace: get(KILL_GRACE),
            opencode_port: get(OPENCODE_PORT_ENV),
        })
    }

    /// What the agent reads back from this env: secret references become [`SecretValue::Set`].
    pub fn as_seen_by_agent(&self) -> TaskEnv {
        TaskEnv {
            git_token: self.git_token.as_ref().map(SecretValue::seen),
            password: self.password.as_ref().map(SecretValue::seen),
            ..self.clone()
        }
    }
}

/// A lookup over a rendered container env: literal values only (what a Secret holds is
/// the kubelet's to fill in; `secrets` stands in for those values).
pub fn lookup_in(env: &[EnvVar], secrets: &str) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|e| {
            let v = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(_)) => secrets.to_string(),
                (None, None) => String::new(),
            };
            (e.name.clone(), v)
        })
        .collect();
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> TaskEnv {
        TaskEnv {
            task_id: "T001".into(),
            repo: "https://github.com/org/repo.git".into(),
            branch: "specs/001/T001".into(),
            base: Some("main".into()),
            context_path: Some("/workspace".into()),
            spec_dir: Some("specs/001".into()),
            prompt: Some(Prompt::File("/etc/asdo/prompt/prompt".into())),
            model: Some("stub/model".into()),
            author_name: Some("Bot".into()),
            author_email: Some("bot@example.com".into()),
            home: Some("/home/agent".into()),
            ssh_key_dir: Some("/etc/asdo/ssh".into()),
            git_token: Some(SecretValue::Ref {
                secret: "gh".into(),
                key: "token".into(),
            }),
            pull_request: Some("true".into()),
            forge: Some("github".into()),
            forge_api_url: Some("https://api.github.com".into()),
            forge_project: Some("org/repo".into()),
            password: Some(SecretValue::Ref {
                secret: "pw".into(),
                key: SERVER_PASSWORD_KEY.into(),
            }),
            permissions: Some("wait".into()),
            idle_timeout: Some("5m".into()),
            questions: Some("wait".into()),
            answers_file: Some("/etc/asdo/answers/annotations".into()),
            secret_env: vec!["GIT_TOKEN".into(), "OPENCODE_SERVER_PASSWORD".into()],
            max_turns: Some("12".into()),
            max_tokens: Some("5000".into()),
            max_cost: Some("1.5".into()),
            tool_timeout: Some("45m".into()),
            allow_no_changes: Some("true".into()),
            known_hosts: Some("/etc/hosts.known".into()),
            kill_grace: Some("3".into()),
            opencode_port: Some("0".into()),
        }
    }

    /// Every field written is read back, and every variable written is one the help lists.
    #[test]
    fn task_env_round_trips_through_the_container_env() {
        let e = full();
        let env = e.to_env();
        assert_eq!(
            TaskEnv::from_lookup(lookup_in(&env, "s3cr3t")).unwrap(),
            e.as_seen_by_agent()
        );
        for v in &env {
            assert!(
                VARS.iter().any(|(n, _)| *n == v.name),
                "{} not in VARS",
                v.name
            );
        }
        // Every variable written once (the two prompt variables exclude each other).
        assert_eq!(env.len(), VARS.len() - 1);
        let text = TaskEnv {
            prompt: Some(Prompt::Text("do it".into())),
            ..full()
        };
        assert_eq!(
            TaskEnv::from_lookup(lookup_in(&text.to_env(), "x")).unwrap(),
            text.as_seen_by_agent()
        );
    }

    #[test]
    fn identity_is_required_and_checked() {
        let env = full().to_env();
        for (name, value, want) in [
            (TASK_ID, "", "TASK_ID is not set"),
            (GIT_REPO, "/local", "GIT_REPO: "),
            (GIT_BRANCH, "a..b", "GIT_BRANCH: "),
            (GIT_BASE, "-x", "GIT_BASE: "),
            (
                TASK_PROMPT,
                "also",
                "set TASK_PROMPT or TASK_PROMPT_FILE, not both",
            ),
        ] {
            let mut env = env.clone();
            env.retain(|e| e.name != name);
            env.push(literal(name, value));
            let e = TaskEnv::from_lookup(lookup_in(&env, "x")).unwrap_err();
            assert!(e.starts_with(want), "{name}={value}: {e}");
        }
    }

    #[test]
    fn help_lists_every_variable_once() {
        let help = vars_help();
        for (n, _) in VARS {
            assert_eq!(help.matches(&format!("  {n} ")).count(), 1, "{n}");
        }
        assert!(help.contains("ASDO_OPENCODE_PORT"));
    }
}
