//! `asdo doctor`'s checks: can this user run tasks here? One [`Check`] per line, each
//! with what to do next. On a cluster: reach the API server, the namespace, the
//! release's ConfigMap and password Secret, and every rule of the chart's Role (what it
//! cannot check with the Role it says so, `skip`, instead of guessing). On the local
//! runtime: this machine (`runtime::local::doctor`). `cli/doctor.rs` prints them.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::cluster;
use crate::scope::Scope;
use crate::values::Values;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but something may bite (another OpenCode version, no slot free now).
    Warn,
    /// Tasks cannot run until this is fixed.
    Fail,
    /// Could not be checked with this user's rights; not a failure.
    Skip,
}

impl Level {
    /// The line's tag, four wide.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub level: Level,
    pub message: String,
}

impl Check {
    pub fn new(level: Level, message: impl Into<String>) -> Check {
        Check {
            level,
            message: message.into(),
        }
    }
    pub fn ok(message: impl Into<String>) -> Check {
        Check::new(Level::Ok, message)
    }
    pub fn fail(message: impl Into<String>) -> Check {
        Check::new(Level::Fail, message)
    }
    pub fn skip(message: impl Into<String>) -> Check {
        Check::new(Level::Skip, message)
    }
}

/// Runs the scope's runtime's checks, each given to `report` as soon as it is known (a
/// slow API server shows the lines so far). The cluster is connected here, not before:
/// that it cannot be reached is itself the first check's answer.
pub async fn run(scope: &Scope, report: &mut dyn FnMut(Check)) {
    match scope.runtime {
        crate::runtime::Kind::Kubernetes => cluster(scope, report).await,
        crate::runtime::Kind::Local => {
            use crate::runtime::local::doctor::{self, Host};
            match tokio::task::spawn_blocking(|| doctor::run(&Host::from_env())).await {
                Ok(checks) => checks.into_iter().for_each(report),
                Err(e) => report(Check::fail(format!("the local checks stopped: {e}"))),
            }
        }
    }
}

/// The chart's Role, rule by rule, as (verb, resource, subresource): exactly what asdo calls
/// and nothing else (a unit test holds this list and templates/rbac.yaml together). The
/// ConfigMap and Secret `get` rules are limited to one name each, so they are checked for it.
const NEEDED: &[(&str, &str, &str)] = &[
    ("create", "pods", ""),
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("delete", "pods", ""),
    ("deletecollection", "pods", ""),
    // answer: a person's answer to a permission or question is an annotation on the pod.
    ("patch", "pods", ""),
    ("get", "pods", "log"),
    ("list", "events", ""),
    ("get", "configmaps", ""),
    // spawn: a prompt too big for an env value goes in a ConfigMap owned by its pod.
    ("create", "configmaps", ""),
    // attach, send (the WebSocket forward is a GET, authorized as get or create).
    ("create", "pods", "portforward"),
    ("get", "pods", "portforward"),
    // attach/send read the server password from this one Secret (or take --password-file).
    ("get", "secrets", ""),
];

async fn cluster(scope: &Scope, report: &mut dyn FnMut(Check)) {
    let ns = scope.namespace.clone();
    let values = match Values::from_value(scope.defaults.clone()) {
        Ok(v) => v,
        Err(e) => return report(Check::fail(e.to_string())),
    };

    let client = match cluster::client(&scope.cluster).await {
        Ok(c) => c,
        Err(e) => {
            return report(Check::fail(e.to_string()));
        }
    };
    // Every call is bounded by --request-timeout: a server that accepts and never answers
    // is a FAIL line, never a doctor that prints nothing.
    match cluster::within_timeout("reach the cluster", client.apiserver_version())
        .await
        .and_then(|r| r.map_err(|e| crate::error::Error::from_kube("reach the cluster", e)))
    {
        Ok(v) => report(Check::ok(format!(
            "cluster reachable (Kubernetes {})",
            v.git_version
        ))),
        Err(e) => {
            return report(Check::fail(e.to_string()));
        }
    }
    report(
        exists::<Namespace>(
            Api::all(client.clone()),
            &ns,
            "namespace",
            "install the chart: helm upgrade --install … (namespace.create) or pass -n",
            "Namespaces are cluster-scoped, which the chart's Role cannot grant",
        )
        .await,
    );
    let cm = values.config_map_name(&scope.release);
    report(
        exists::<ConfigMap>(
            Api::namespaced(client.clone(), &ns),
            &cm,
            "ConfigMap",
            "install the chart for this environment (configMap.create)",
            "the chart's Role grants get on it: are you in rbac.subjects?",
        )
        .await,
    );
    let secret = values.server_password_secret(&scope.release);
    report(
        exists::<Secret>(
            Api::namespaced(client.clone(), &ns),
            &secret,
            "password Secret",
            "check the ExternalSecret (kubectl describe externalsecret) and its secret store",
            "the chart's Role grants get on this one Secret (for attach/send): are you in rbac.subjects?",
        )
        .await,
    );
    for (verb, resource, sub) in NEEDED {
        let name = match (*verb, *resource) {
            ("get", "configmaps") => Some(cm.as_str()),
            ("get", "secrets") => Some(secret.as_str()),
            _ => None,
        };
        report(allowed(&client, Some(&ns), verb, resource, sub, name).await);
    }
    // Not in the Role: `asdo list -A` lists pods cluster-wide, which needs a ClusterRole.
    let all = allowed(&client, None, "list", "pods", "", None).await;
    report(match all.level {
        Level::Ok => Check::ok("may list pods in all namespaces (asdo list -A)"),
        _ => Check::skip(
            "asdo list -A needs list pods in all namespaces, a ClusterRole the chart does not ship; \
             asdo list -e ENV works with the Role",
        ),
    });
}

/// Whether `name` exists. Metadata only (`PartialObjectMetadata`): for the Secret that means
/// no secret data ever crosses the wire, even for users allowed to read it.
async fn exists<K>(api: Api<K>, name: &str, what: &str, fix: &str, why_forbidden: &str) -> Check
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let asked = format!("read {what} {name}");
    let answer = match cluster::within_timeout(&asked, api.get_metadata_opt(name)).await {
        Ok(a) => a,
        Err(timed_out) => return Check::fail(timed_out.to_string()),
    };
    match answer {
        Ok(Some(_)) => Check::ok(format!("{what} {name} exists")),
        Ok(None) => Check::fail(format!("{what} {name} not found: {fix}")),
        Err(kube::Error::Api(s)) if s.code == 403 => Check::skip(format!(
            "{what} {name}: not checked, you may not read it ({why_forbidden})"
        )),
        Err(e) => Check::fail(crate::error::Error::from_kube(&asked, e).to_string()),
    }
}

async fn allowed(
    client: &Client,
    ns: Option<&str>,
    verb: &str,
    resource: &str,
    sub: &str,
    name: Option<&str>,
) -> Check {
    let mut what = if sub.is_empty() {
        format!("{verb} {resource}")
    } else {
        format!("{verb} {resource}/{sub}")
    };
    if let Some(n) = name {
        what = format!("{what} {n}");
    }
    let ns_text = ns.map_or("all namespaces".to_string(), str::to_string);
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: ns.map(str::to_string),
                verb: Some(verb.to_string()),
                resource: Some(resource.to_string()),
                subresource: (!sub.is_empty()).then(|| sub.to_string()),
                name: name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asked = format!("ask whether you may {what}");
    let answer =
        match cluster::within_timeout(&asked, api.create(&PostParams::default(), &review)).await {
            Ok(a) => a,
            Err(timed_out) => return Check::fail(timed_out.to_string()),
        };
    match answer {
        Ok(r) => match r.status {
            Some(s) if s.allowed => Check::ok(format!("may {what} in {ns_text}")),
            Some(s) => Check::fail(format!(
                "may not {what} in {ns_text}{}: ask an admin to add you to rbac.subjects of the chart",
                s.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            None => Check::fail(format!("no answer on whether you may {what} in {ns_text}")),
        },
        Err(e) => Check::fail(crate::error::Error::from_kube(&asked, e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::NEEDED;

    /// doctor checks exactly the Role's verbs: every (verb, resource) of the chart's
    /// templates/rbac.yaml is in NEEDED and nothing else is.
    #[test]
    fn checks_are_the_roles_rules() {
        let rbac = include_str!("../charts/agentic-sdlc-orchestrator/templates/rbac.yaml");
        let list = |line: &str| -> Vec<String> {
            let inner = line.split_once('[').and_then(|(_, r)| r.rsplit_once(']'));
            inner
                .map(|(i, _)| {
                    i.split(',')
                        .map(|x| x.trim().trim_matches('"').to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut role = std::collections::BTreeSet::new();
        let mut resources: Vec<String> = vec![];
        // Rules of the Role only (the RoleBinding follows `---`).
        for line in rbac.split("\n---").next().unwrap().lines() {
            let l = line.trim();
            if l.starts_with("resources:") {
                resources = list(l);
            } else if l.starts_with("verbs:") {
                for r in &resources {
                    let (res, sub) = r.split_once('/').unwrap_or((r, ""));
                    for v in list(l) {
                        role.insert((v, res.to_string(), sub.to_string()));
                    }
                }
            }
        }
        let checked: std::collections::BTreeSet<_> = NEEDED
            .iter()
            .map(|(v, r, s)| (v.to_string(), r.to_string(), s.to_string()))
            .collect();
        assert!(
            role.len() >= 9,
            "parsed too few rules from rbac.yaml: {role:?}"
        );
        assert_eq!(checked, role, "doctor's checks and the chart's Role differ");
    }
}
