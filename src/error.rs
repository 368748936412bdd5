//! The one error type. Every message is written for the person at the terminal:
//! what went wrong, then what to do next, on one line.

use std::fmt;

/// Exit codes shared by every subcommand (documented in README and SPEC).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The cluster or API said no, or something failed at run time.
    pub const FAILURE: i32 = 1;
    /// Bad input: nothing was sent to the cluster.
    pub const USAGE: i32 = 2;
    /// Stopped with Ctrl-C (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
    /// `wait`/`send`: the --timeout passed before the tasks finished or the session answered
    /// (as timeout(1) exits).
    pub const TIMEOUT: i32 = 124;
}

/// The scope flags the user gave (` -n my-ns`, ` -e stg`), set once by the CLI, so every
/// hint that names a next command keeps them: a hint without them would look elsewhere.
static SCOPE_FLAGS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_scope_flags(flags: String) {
    let _ = SCOPE_FLAGS.set(flags);
}

/// ` -n my-ns` (or ` -e stg`, or nothing): append to a suggested `asdo …` command.
pub fn scope_flags() -> &'static str {
    SCOPE_FLAGS.get().map_or("", String::as_str)
}

#[derive(Debug)]
pub enum Error {
    /// Bad input caught before any API call (exit 2).
    Usage(String),
    /// Something the user asked about does not exist (exit 1).
    NotFound(String),
    /// The object is already there (exit 1).
    AlreadyExists(String),
    /// The cluster cannot be reached or configured (exit 1).
    Cluster(String),
    /// The API server refused or failed a request (exit 1).
    Api(String),
    /// The task itself ended badly: exit with the container's code.
    Task { message: String, code: i32 },
    /// Anything else (exit 1).
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn other(msg: impl Into<String>) -> Self {
        Error::Other(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            // A container's code of 0 can't be an error; never let it read as success.
            Error::Task { code, .. } if *code != 0 => *code,
            _ => exit::FAILURE,
        }
    }

    /// Turn a kube error into a message that says what happened and what to try,
    /// `what` naming the action ("create pod agent-t001 in agent-orchestrator-dev").
    pub fn from_kube(what: &str, err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if !is_status(&status) => {
                Error::Cluster(format!("cannot {what}: {}", not_a_status(&status)))
            }
            kube::Error::Api(status) => {
                let msg = reason_text(&status);
                match status.code {
                    404 => Error::NotFound(format!("cannot {what}: {msg}")),
                    409 => Error::AlreadyExists(format!("cannot {what}: {msg}")),
                    401 => Error::Cluster(format!(
                        "cannot {what}: unauthorized ({msg}); refresh your credentials (e.g. re-login) or pick another --context"
                    )),
                    403 => Error::Api(format!(
                        "cannot {what}: forbidden ({msg}); ask a cluster admin to bind you to the chart's Role (values rbac.subjects), or use -n for a namespace you may use"
                    )),
                    422 => Error::Api(format!(
                        "cannot {what}: the API server rejected the object ({msg}); check --set/-f values"
                    )),
                    code if crate::apiretry::retryable(code) => Error::Api(format!(
                        "cannot {what}: API server answered {code} {}: {msg} (asdo retried it {} times); check the API server's health, then try again",
                        status.reason,
                        crate::apiretry::RETRIES
                    )),
                    code => Error::Api(format!(
                        "cannot {what}: API server answered {code} {}: {msg}",
                        status.reason
                    )),
                }
            }
            kube::Error::HyperError(e) => unreachable(what, &e.to_string()),
            kube::Error::Service(e) => unreachable(what, &root_cause(e.as_ref())),
            other => Error::Api(format!("cannot {what}: {other}")),
        }
    }
}

/// No connection: the cause, and for a connection that did not come up in time, the
/// flag that bounds it.
fn unreachable(what: &str, cause: &str) -> Error {
    let timed_out = cause.contains("deadline has elapsed") || cause.contains("timed out");
    let cause = match crate::cluster::connect_timeout() {
        Some(t) if timed_out => format!(
            "no connection within {} (--connect-timeout)",
            crate::humantime::short(t)
        ),
        _ if timed_out => "no connection within --connect-timeout".to_string(),
        _ => cause.to_string(),
    };
    Error::Cluster(format!(
        "cannot {what}: cluster unreachable ({cause}); check that the cluster is up and that --kubeconfig/--context point at it{}",
        if timed_out {
            ", or raise --connect-timeout"
        } else {
            ""
        }
    ))
}

/// kube-rs's reason for an error answer whose body was not a `metav1.Status`.
const NOT_A_STATUS: &str = "Failed to parse error data";

/// Did a Kubernetes API server say this (a `metav1.Status`), or something else on the way
/// (a proxy, an ingress, the wrong port)?
pub fn is_status(status: &kube::core::Status) -> bool {
    status.reason != NOT_A_STATUS
}

/// An error answer that is not a Kubernetes Status: the code, the server, the body if any,
/// and what to check. kubectl's words for a bare 404.
pub fn not_a_status(status: &kube::core::Status) -> String {
    let code = status.code;
    let phrase = match code {
        404 => "the server could not find the requested resource".to_string(),
        _ => hyper::StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("error")
            .to_string(),
    };
    let body: String = status.message.trim().chars().take(200).collect();
    let body = if body.is_empty() {
        "an empty body".to_string()
    } else {
        format!("{body:?}")
    };
    format!(
        "{} answered {code} ({phrase}) with {body}, not a Kubernetes API Status; is this a Kubernetes API server? check --context/--kubeconfig/the server URL",
        server_named()
    )
}

/// The message of a Status, never empty: an empty one is named by its reason or code.
pub fn reason_text(status: &kube::core::Status) -> String {
    if !status.message.trim().is_empty() {
        return status.message.clone();
    }
    if !status.reason.is_empty() {
        return status.reason.clone();
    }
    match status.code {
        404 => "the server could not find the requested resource".into(),
        code => hyper::StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
            .map_or_else(|| format!("status {code}"), str::to_string),
    }
}

/// A kube error in a few words for a warning line: the status for an answer (through
/// the same wording as errors), the root cause otherwise.
pub fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !is_status(s) => not_a_status(s),
        kube::Error::Api(s) => format!("server error {} ({})", s.code, reason_text(s)),
        other => root_cause(other),
    }
}

fn server_named() -> String {
    let url = crate::cluster::server_url();
    if url.is_empty() {
        "the server".into()
    } else {
        format!("the server {url}")
    }
}

/// The innermost cause says "Connection refused"; the outer layers only say "error trying to connect".
fn root_cause(mut e: &(dyn std::error::Error + 'static)) -> String {
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::Cluster(m)
            | Error::Api(m)
            | Error::Other(m)
            | Error::Task { message: m, .. } => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Error::usage("x").exit_code(), 2);
        assert_eq!(Error::other("x").exit_code(), 1);
        let task = |code| Error::Task {
            message: "t".into(),
            code,
        };
        assert_eq!(task(7).exit_code(), 7);
        assert_eq!(task(0).exit_code(), 1, "a failed task never exits 0");
    }

    #[test]
    fn api_errors_say_what_to_do() {
        let status = |code: u16, reason: &str| {
            kube::Error::Api(
                kube::core::Status::failure("pods \"agent-t1\" already exists", reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        let e = Error::from_kube("create pod", status(409, "AlreadyExists"));
        assert!(matches!(e, Error::AlreadyExists(_)));
        let e = Error::from_kube("list pods", status(403, "Forbidden"));
        assert!(e.to_string().contains("rbac.subjects"), "{e}");
    }

    #[test]
    fn a_connection_that_timed_out_names_connect_timeout() {
        let e = unreachable("list pods", "deadline has elapsed").to_string();
        assert!(e.contains("--connect-timeout"), "{e}");
        assert!(!e.contains("deadline has elapsed"), "{e}");
        let e = unreachable("list pods", "Connection refused (os error 111)").to_string();
        assert!(
            e.contains("Connection refused") && !e.contains("--connect-timeout"),
            "{e}"
        );
    }

    #[test]
    fn an_answer_that_is_not_a_status_says_what_to_check() {
        let bare = kube::Error::Api(
            kube::core::Status::failure("", NOT_A_STATUS)
                .with_code(404)
                .boxed(),
        );
        let e = Error::from_kube("list pods in namespace x", bare).to_string();
        assert!(
            e.contains("404 (the server could not find the requested resource) with an empty body")
                && e.contains("is this a Kubernetes API server?")
                && e.contains("--kubeconfig"),
            "{e}"
        );
        let empty = kube::Error::Api(kube::core::Status::failure("", "").with_code(404).boxed());
        let e = Error::from_kube("get pod p", empty).to_string();
        assert!(!e.ends_with(": "), "{e}");
        assert!(e.contains("could not find"), "{e}");
    }
}
