//! `asdo doctor`: can this user run tasks in this environment? One line per check.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};

use super::Global;
use crate::cluster;
use crate::error::{Result, exit};
use crate::values::Values;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  asdo doctor -e prod")]
pub struct DoctorArgs {}

enum Check {
    Ok(String),
    Fail(String),
    /// Could not be checked with this user's rights; not a failure.
    Skip(String),
}

/// The API calls asdo makes, as (verb, resource, subresource).
const NEEDED: &[(&str, &str, &str)] = &[
    ("create", "pods", ""),
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("delete", "pods", ""),
    ("deletecollection", "pods", ""),
    ("get", "pods", "log"),
    // attach, send (the WebSocket forward is a GET, authorized as get or create).
    ("create", "pods", "portforward"),
    ("get", "pods", "portforward"),
];

pub async fn run(global: &Global, _args: DoctorArgs) -> Result<i32> {
    let scope = global.scope()?;
    let ns = scope.namespace.clone();
    let values = Values::from_value(scope.defaults.clone())?;
    let mut failed = false;
    let mut report = |c: Check| {
        let (tag, msg) = match c {
            Check::Ok(m) => ("ok  ", m),
            Check::Fail(m) => {
                failed = true;
                ("FAIL", m)
            }
            Check::Skip(m) => ("skip", m),
        };
        println!("{tag}  {msg}");
    };

    let client = match cluster::client(&scope.cluster).await {
        Ok(c) => c,
        Err(e) => {
            report(Check::Fail(e.to_string()));
            return Ok(exit::FAILURE);
        }
    };
    match client.apiserver_version().await {
        Ok(v) => report(Check::Ok(format!(
            "cluster reachable (Kubernetes {})",
            v.git_version
        ))),
        Err(e) => {
            report(Check::Fail(
                crate::error::Error::from_kube("reach the cluster", e).to_string(),
            ));
            return Ok(exit::FAILURE);
        }
    }
    report(
        exists::<Namespace>(
            Api::all(client.clone()),
            &ns,
            "namespace",
            "install the chart: helm upgrade --install … (namespace.create) or pass -n",
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
        )
        .await,
    );
    for (verb, resource, sub) in NEEDED {
        report(allowed(&client, &ns, verb, resource, sub).await);
    }
    // attach/send read the password from this one Secret (or take --password-file).
    report(allowed_named(&client, &ns, "get", "secrets", &secret).await);
    Ok(if failed { exit::FAILURE } else { exit::OK })
}

async fn exists<K>(api: Api<K>, name: &str, what: &str, fix: &str) -> Check
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(_)) => Check::Ok(format!("{what} {name} exists")),
        Ok(None) => Check::Fail(format!("{what} {name} not found: {fix}")),
        Err(kube::Error::Api(s)) if s.code == 403 => Check::Skip(format!(
            "{what} {name}: not allowed to read it, so not checked"
        )),
        Err(e) => Check::Fail(format!("{what} {name}: {e}")),
    }
}

async fn allowed(client: &Client, ns: &str, verb: &str, resource: &str, sub: &str) -> Check {
    review(client, ns, verb, resource, sub, None).await
}

async fn allowed_named(client: &Client, ns: &str, verb: &str, resource: &str, name: &str) -> Check {
    review(client, ns, verb, resource, "", Some(name)).await
}

async fn review(
    client: &Client,
    ns: &str,
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
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_string()),
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
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => match r.status {
            Some(s) if s.allowed => Check::Ok(format!("may {what} in {ns}")),
            Some(s) => Check::Fail(format!(
                "may not {what} in {ns}{}: ask an admin to add you to rbac.subjects of the chart",
                s.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            None => Check::Fail(format!("no answer on whether you may {what} in {ns}")),
        },
        Err(e) => Check::Fail(format!("cannot ask whether you may {what}: {e}")),
    }
}
