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
    /// `wait`/`send`: the --timeout passed before the tasks finished or the session answered
    /// (as timeout(1) exits).
    pub const TIMEOUT: i32 = 124;
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
            kube::Error::Api(status) => {
                let msg = status.message.clone();
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
                    code => Error::Api(format!(
                        "cannot {what}: API server answered {code} {}: {msg}",
                        status.reason
                    )),
                }
            }
            kube::Error::HyperError(e) => Error::Cluster(format!(
                "cannot {what}: cluster unreachable ({e}); check that the cluster is up and that --kubeconfig/--context point at it"
            )),
            kube::Error::Service(e) => Error::Cluster(format!(
                "cannot {what}: cluster unreachable ({}); check that the cluster is up and that --kubeconfig/--context point at it",
                root_cause(e.as_ref())
            )),
            other => Error::Api(format!("cannot {what}: {other}")),
        }
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
}
