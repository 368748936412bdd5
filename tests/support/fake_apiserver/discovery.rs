//! Discovery documents. Served as plain `application/json`, so kubectl falls
//! back from aggregated discovery to these legacy endpoints.

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret};
use serde_json::{Value, json};

use super::resources::{K8S_VERSION, api_resource};

pub(crate) const AUTHZ_GROUP: &str = "authorization.k8s.io";

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": K8S_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn api_versions(port: u16) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}],
    })
}

pub(crate) fn core_v1() -> Value {
    let mut resources = vec![
        api_resource::<ConfigMap>(),
        api_resource::<Event>(),
        api_resource::<Namespace>(),
        api_resource::<Node>(),
        api_resource::<Pod>(),
        json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}),
        api_resource::<Secret>(),
    ];
    for r in &mut resources {
        if r["name"] == "pods" {
            r["categories"] = json!(["all"]);
        }
    }
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

fn authz_group() -> Value {
    let v = json!({"groupVersion": format!("{AUTHZ_GROUP}/v1"), "version": "v1"});
    json!({"name": AUTHZ_GROUP, "versions": [v], "preferredVersion": v})
}

pub(crate) fn groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [authz_group()]})
}

pub(crate) fn authz() -> Value {
    let mut g = authz_group();
    g["kind"] = "APIGroup".into();
    g["apiVersion"] = "v1".into();
    g
}

pub(crate) fn authz_v1() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{AUTHZ_GROUP}/v1"),
        "resources": [{
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": false,
            "kind": "SelfSubjectAccessReview",
            "verbs": ["create"],
        }],
    })
}
