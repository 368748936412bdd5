//! URL routing: discovery, `/api/v1` resources (namespaced and cluster-wide),
//! pods/log, SelfSubjectAccessReview, and the forbidden-namespace check.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReviewStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret};

use super::Shared;
use super::discovery::{self, AUTHZ_GROUP};
use super::handlers;
use super::logs;
use super::openapi;
use super::protobuf;
use super::server::{self, Request, Resp};
use super::status::ApiError;
use super::util::percent_decode;

/// A resource URL taken apart.
pub(crate) struct Target {
    /// The namespace in the path; None for cluster-scoped and all-namespace requests.
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// The RBAC verb this request needs.
    pub fn verb(&self, req: &Request) -> &'static str {
        match (req.method.as_str(), self.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if req.flag("watch") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        }
    }
}

const NAMESPACED: &[&str] = &["pods", "secrets", "configmaps", "events"];

pub(crate) async fn route(shared: &Arc<Shared>, req: Request) -> Result<Resp, ApiError> {
    let segments: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let doc = |v| {
        if req.method == "GET" {
            Ok(server::json(200, &v))
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    let target = |ns: Option<&str>, resource: &str, rest: &[&str]| -> Result<Target, ApiError> {
        if rest.len() > 2 {
            return Err(ApiError::route_not_found());
        }
        Ok(Target {
            namespace: ns.map(str::to_string),
            resource: resource.to_string(),
            name: rest.first().map(|s| s.to_string()),
            subresource: rest.get(1).map(|s| s.to_string()),
        })
    };
    match s.as_slice() {
        ["version"] => doc(discovery::version()),
        ["api"] => doc(discovery::api_versions(shared.port)),
        ["api", "v1"] => doc(discovery::core_v1()),
        ["apis"] => doc(discovery::groups()),
        ["apis", AUTHZ_GROUP] => doc(discovery::authz()),
        ["apis", AUTHZ_GROUP, "v1"] => doc(discovery::authz_v1()),
        ["apis", AUTHZ_GROUP, "v1", "selfsubjectaccessreviews"] => access_review(shared, &req),
        ["openapi", "v3"] => doc(openapi::root()),
        ["openapi", "v3", "api", "v1"] => doc(openapi::core_v1()),
        ["healthz" | "livez" | "readyz"] => Ok(server::full(200, "text/plain", "ok")),
        ["api", "v1", "namespaces", ns, resource, rest @ ..] if NAMESPACED.contains(resource) => {
            let t = target(Some(ns), resource, rest)?;
            resource_request(shared, req, t).await
        }
        ["api", "v1", resource, rest @ ..] => {
            let t = target(None, resource, rest)?;
            resource_request(shared, req, t).await
        }
        _ => Err(ApiError::route_not_found()),
    }
}

async fn resource_request(shared: &Arc<Shared>, req: Request, t: Target) -> Result<Resp, ApiError> {
    check_forbidden(shared, &req, &t)?;
    match (t.resource.as_str(), t.subresource.as_deref()) {
        ("pods", Some("log")) if req.method == "GET" => logs::serve(shared, &req, &t),
        ("pods", Some("log")) => Err(ApiError::method_not_allowed()),
        (_, Some(_)) => Err(ApiError::route_not_found()),
        ("pods", None) => handlers::serve::<Pod>(shared, req, t).await,
        ("secrets", None) => handlers::serve::<Secret>(shared, req, t).await,
        ("configmaps", None) => handlers::serve::<ConfigMap>(shared, req, t).await,
        ("events", None) => handlers::serve::<Event>(shared, req, t).await,
        ("namespaces", None) => handlers::serve::<Namespace>(shared, req, t).await,
        ("nodes", None) => handlers::serve::<Node>(shared, req, t).await,
        _ => Err(ApiError::route_not_found()),
    }
}

/// Requests in a forbidden namespace (and for the namespace object itself) get RBAC's 403.
fn check_forbidden(shared: &Shared, req: &Request, t: &Target) -> Result<(), ApiError> {
    let ns = match (&t.namespace, t.resource.as_str(), &t.name) {
        (Some(ns), _, _) => ns.as_str(),
        (None, "namespaces", Some(name)) => name.as_str(),
        _ => return Ok(()),
    };
    if !shared.faults.is_forbidden(ns) {
        return Ok(());
    }
    let resource = match &t.subresource {
        Some(sub) => format!("{}/{sub}", t.resource),
        None => t.resource.clone(),
    };
    Err(ApiError::forbidden(
        &resource,
        t.name.as_deref(),
        t.verb(req),
        ns,
    ))
}

/// `kubectl auth can-i` and clients' preflight checks: allowed unless the namespace is forbidden.
fn access_review(shared: &Shared, req: &Request) -> Result<Resp, ApiError> {
    if req.method != "POST" {
        return Err(ApiError::method_not_allowed());
    }
    let mut review: SelfSubjectAccessReview =
        if req.content_type.starts_with(protobuf::CONTENT_TYPE) {
            protobuf::access_review(&req.body).ok_or_else(|| {
                ApiError::bad_request("malformed protobuf SelfSubjectAccessReview")
            })?
        } else {
            handlers::decode_json(req, "SelfSubjectAccessReview", "v1")?
        };
    let ns = review
        .spec
        .resource_attributes
        .as_ref()
        .and_then(|a| a.namespace.clone())
        .unwrap_or_default();
    let allowed = ns.is_empty() || !shared.faults.is_forbidden(&ns);
    review.status = Some(SubjectAccessReviewStatus {
        allowed,
        reason: allowed.then(|| "the fake API server allows everything".into()),
        ..Default::default()
    });
    Ok(server::json(201, &review))
}
