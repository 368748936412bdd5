//! What the API server's answers mean to a follower: which refusals no retry can fix
//! (they end the command, worded with what to check), how an outage is said and bounded,
//! and the words for a pod deleted or replaced under a follow.

use std::time::Duration;

use kube::runtime::watcher;

use crate::error::Error;

/// The code of a kube error, when the API server answered.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// 400/401/403 never fix themselves by retrying: a bad selector, expired credentials,
/// missing RBAC. Watches retry everything else; these end the command.
pub fn fatal_watch_error(e: &watcher::Error, what: &str) -> Option<Error> {
    let code = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => api_code(k)?,
        watcher::Error::WatchError(s) => s.code,
        watcher::Error::NoResourceVersion => return None,
    };
    let not_kubernetes = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => !crate::error::is_status(s),
        _ => false,
    };
    let refused = matches!(code, 400 | 401 | 403) || (not_kubernetes && (400..500).contains(&code));
    if !refused {
        return None;
    }
    Some(match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => fatal_api_error(what, k),
        watcher::Error::WatchError(s) => fatal_api_error(what, &kube::Error::Api(s.clone())),
        watcher::Error::NoResourceVersion => unreachable!(),
    })
}

/// A refusal retrying cannot fix: 400/401/403, or a 4xx that is not a Kubernetes Status
/// (the server is not an API server at all).
pub fn is_refusal(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 400 | 401 | 403)
                || (!crate::error::is_status(s) && (400..500).contains(&s.code))
        }
        _ => false,
    }
}

/// The message for a refused request, with what to check for each code.
pub fn fatal_api_error(what: &str, e: &kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 400 && crate::error::is_status(s) => Error::Api(format!(
            "cannot {what}: the API server rejected the request ({}); check the label selector (-l) and the flags",
            crate::error::reason_text(s)
        )),
        kube::Error::Api(s) => Error::from_kube(what, kube::Error::Api(s.clone())),
        other => Error::Api(format!("cannot {what}: {other}")),
    }
}

pub fn replaced(name: &str, new_uid: &str) -> Error {
    let task = name.strip_prefix(crate::task::POD_PREFIX).unwrap_or(name);
    Error::Other(format!(
        "pod {name} was replaced by another run (uid {new_uid}); run `asdo logs {task}{}` again to follow it (or pass --follow-replaced)",
        crate::error::scope_flags()
    ))
}

/// An outage of a watch: said once on stderr, said again when it is over, and a
/// bound after which the command gives up (`--retry-for`; zero = never).
pub struct Outage {
    limit: Duration,
    what: &'static str,
    since: Option<tokio::time::Instant>,
}

impl Outage {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        Outage {
            limit,
            what,
            since: None,
        }
    }

    /// An error: Some(error) once the outage has lasted past the bound.
    pub fn failed(&mut self, why: &str) -> Option<Error> {
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "warning: {}: API server not answering ({why}); retrying{}",
                self.what,
                if self.limit.is_zero() {
                    String::new()
                } else {
                    format!(" for up to {}", crate::humantime::short(self.limit))
                }
            );
            tokio::time::Instant::now()
        });
        (!self.limit.is_zero() && since.elapsed() >= self.limit).then(|| {
            Error::Cluster(format!(
                "{}: the API server {} has not answered for {} ({why}); giving up (--retry-for)",
                self.what,
                crate::cluster::server_url(),
                crate::humantime::short(self.limit)
            ))
        })
    }

    pub fn ok(&mut self) {
        if self.since.take().is_some() {
            eprintln!("{}: API server answering again", self.what);
        }
    }
}

/// A kube error in a few words (error.rs words it, for every verb).
pub(super) fn describe_kube(e: &kube::Error) -> String {
    crate::error::brief(e)
}

/// A watch error in a few words, through the same path.
pub fn describe_watch(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => crate::error::brief(k),
        watcher::Error::WatchError(s) => crate::error::brief(&kube::Error::Api(s.clone())),
        other => other.to_string(),
    }
}

/// The one verdict on a task pod deleted before its task finished, in `logs` and in
/// `wait` alike (exit 1): whether the pod is already gone, or still terminating with the
/// exit code of the signal that stopped it (137, 143).
pub fn deleted_words(name: &str) -> String {
    format!("pod {name} was deleted before its task finished")
}

pub fn gone(name: &str) -> Error {
    Error::Other(deleted_words(name))
}
