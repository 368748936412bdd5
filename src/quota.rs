//! A ResourceQuota refusing a task pod: the concurrency cap of an environment
//! (chart value `resourceQuota`, `count/pods`), said in one line with what to do.
//!
//! The API server's quota admission answers 403 with a message such as
//! `pods "agent-t3" is forbidden: exceeded quota: tasks, requested: count/pods=1,
//! used: count/pods=10, limited: count/pods=10`; that text is the only place the numbers are.

use crate::error::Error;

/// What quota admission said.
#[derive(Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub quota: String,
    /// `resource=amount` lists, as the API server prints them.
    pub requested: String,
    pub used: String,
    pub limited: String,
}

pub fn parse(message: &str) -> Option<Exceeded> {
    let rest = message.split_once("exceeded quota: ")?.1;
    let (quota, rest) = rest.split_once(", requested: ")?;
    let (requested, rest) = rest.split_once(", used: ")?;
    let (used, limited) = rest.split_once(", limited: ")?;
    Some(Exceeded {
        quota: quota.trim().to_string(),
        requested: requested.trim().to_string(),
        used: used.trim().to_string(),
        limited: limited.trim().to_string(),
    })
}

/// `count/pods=10` (or `pods=10`) out of a `resource=amount,…` list.
fn pods(list: &str) -> Option<&str> {
    list.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        matches!(k, "count/pods" | "pods").then_some(v)
    })
}

/// The user-facing error for a create refused by a ResourceQuota, if that is what `err` is.
pub fn refusal(err: &kube::Error, pod: &str, ns: &str) -> Option<Error> {
    let kube::Error::Api(status) = err else {
        return None;
    };
    if status.code != 403 {
        return None;
    }
    let q = parse(&status.message)?;
    Some(Error::Api(match (pods(&q.limited), pods(&q.used)) {
        (Some(limit), used) => format!(
            "cannot create pod {pod}: namespace {ns} allows {limit} task pods at once (ResourceQuota {}), \
             and {} are pending or running; wait for one to end (asdo wait --any, asdo list) or delete \
             finished ones (asdo cleanup), then spawn again",
            q.quota,
            used.unwrap_or(limit)
        ),
        (None, _) => format!(
            "cannot create pod {pod}: it exceeds ResourceQuota {} in namespace {ns} (requested {}, used {}, \
             limited {}); lower pod.resources or ask for a larger quota",
            q.quota, q.requested, q.used, q.limited
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_servers_message() {
        let m = "pods \"agent-t3\" is forbidden: exceeded quota: agentic-sdlc-orchestrator-dev-tasks, \
                 requested: count/pods=1, used: count/pods=2, limited: count/pods=2";
        let q = parse(m).unwrap();
        assert_eq!(q.quota, "agentic-sdlc-orchestrator-dev-tasks");
        assert_eq!(pods(&q.limited), Some("2"));
        assert!(parse("pods \"x\" is forbidden: User cannot create").is_none());
        let cpu = parse(
            "exceeded quota: q, requested: limits.cpu=2, used: limits.cpu=7, limited: limits.cpu=8",
        )
        .unwrap();
        assert_eq!(pods(&cpu.limited), None);
    }
}
