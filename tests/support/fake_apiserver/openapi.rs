//! A skeleton OpenAPI v3 document: no schemas, only the PATCH operations with
//! their query parameters. kubectl reads it to learn that the server validates
//! fields itself (`fieldValidation`); without it `kubectl create -f` and
//! `kubectl apply -f` refuse to run. `kubectl explain` still has nothing to show.

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret};
use serde_json::{Map, Value, json};

use super::resources::{K8S_VERSION, Kind};

pub(crate) const CORE_PATH: &str = "api/v1";

pub(crate) fn root() -> Value {
    json!({"paths": {CORE_PATH: {"serverRelativeURL": format!("/openapi/v3/{CORE_PATH}?hash=fake")}}})
}

fn patch_operation<K: Kind>(paths: &mut Map<String, Value>) {
    let prefix = if K::NAMESPACED {
        "/api/v1/namespaces/{namespace}"
    } else {
        "/api/v1"
    };
    let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": true}))
        .collect();
    let op = json!({
        "operationId": format!("patchCoreV1{}", K::KIND),
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": K::KIND},
    });
    paths.insert(
        format!("{prefix}/{}/{{name}}", K::URL_PATH_SEGMENT),
        json!({"patch": op}),
    );
}

pub(crate) fn core_v1() -> Value {
    let mut paths = Map::new();
    patch_operation::<ConfigMap>(&mut paths);
    patch_operation::<Event>(&mut paths);
    patch_operation::<Namespace>(&mut paths);
    patch_operation::<Pod>(&mut paths);
    patch_operation::<Secret>(&mut paths);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fake API server)", "version": K8S_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    })
}
