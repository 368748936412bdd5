//! The verbs on a resource, generic over [`Kind`]: get, list (selectors,
//! paging, Table), watch, create (generateName, validation, dryRun), delete,
//! deletecollection and merge-patch.

use std::any::Any;
use std::sync::Arc;

use k8s_openapi::List;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use super::kubelet;
use super::pod;
use super::protobuf;
use super::resources::{AnyObject, Kind, name_of};
use super::routes::Target;
use super::selectors::Selectors;
use super::server::{self, Request, Resp};
use super::status::{self, ApiError};
use super::store::Key;
use super::table;
use super::util;
use super::validation::{self, FieldError};
use super::watch;

pub(crate) async fn serve<K: Kind>(
    shared: &Arc<Shared>,
    req: Request,
    t: Target,
) -> Result<Resp, ApiError> {
    let verb = t.verb(&req);
    let collection_only = K::NAMESPACED && t.namespace.is_none();
    if collection_only && !matches!(verb, "list" | "watch") {
        return Err(ApiError::route_not_found());
    }
    if !K::VERBS.contains(&verb) {
        return Err(ApiError::method_not_allowed());
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    match verb {
        "get" => get::<K>(shared, &req, &ns, &name),
        "list" => list::<K>(shared, &req, t.namespace.as_deref()),
        "watch" => watch::serve::<K>(shared, &req, t.namespace.as_deref()),
        "create" => create::<K>(shared, &req, &ns),
        "delete" => delete::<K>(shared, &req, &ns, &name),
        "deletecollection" => delete_collection::<K>(shared, &req, &ns),
        "patch" => patch::<K>(shared, &req, &ns, &name),
        _ => Err(ApiError::method_not_allowed()),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body could not be decoded: {e}")))
}

/// A JSON request body, or protobuf for the few kinds kubectl sends that way; other media types get 415.
pub(crate) fn decode_json<T: DeserializeOwned>(
    req: &Request,
    kind: &str,
    version: &str,
) -> Result<T, ApiError> {
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    let cannot = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    };
    if ct == protobuf::CONTENT_TYPE
        && let Some(v) = protobuf::object(kind, &req.body)
    {
        return serde_json::from_value(v).map_err(|e| cannot(&e));
    }
    if !ct.is_empty() && ct != "application/json" && ct != "*/*" {
        return Err(ApiError::unsupported_media_type(ct, "application/json"));
    }
    serde_json::from_slice(&req.body).map_err(|e| cannot(&e))
}

fn decode_object<K: Kind>(req: &Request) -> Result<K, ApiError> {
    decode_json(req, K::KIND, K::VERSION)
}

/// Fields of `input` that did not survive decoding into the typed object.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i.iter().filter(|(_, v)| !v.is_null()) {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                unknown_fields(iv, tv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// `fieldValidation`: Strict rejects unknown fields, Warn (the default) reports
/// them in a Warning header, Ignore drops them silently.
fn field_validation<K: Kind>(req: &Request, obj: &K) -> Result<Option<String>, ApiError> {
    let mode = req.param("fieldValidation").unwrap_or("Warn");
    let Ok(input) = serde_json::from_slice::<Value>(&req.body) else {
        return Ok(None);
    };
    let mut unknown = vec![];
    unknown_fields(
        &input,
        &serde_json::to_value(obj).unwrap(),
        "",
        &mut unknown,
    );
    if unknown.is_empty() || mode == "Ignore" {
        return Ok(None);
    }
    let list = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {list}",
            kind = K::KIND,
            v = K::VERSION
        )));
    }
    Ok(Some(
        unknown
            .iter()
            .map(|f| format!("299 - \"unknown field \\\"{f}\\\"\""))
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

fn selectors<K: Kind>(req: &Request) -> Result<Selectors, ApiError> {
    Selectors::from_query(&req.query, K::FIELDS)
}

fn get<K: Kind>(shared: &Shared, req: &Request, ns: &str, name: &str) -> Result<Resp, ApiError> {
    let obj = shared
        .store()
        .get::<K>(ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, name))?;
    if table::wants_table(&req.accept) {
        let rv = obj.metadata().resource_version.clone();
        let row = obj.table_row(
            util::now(),
            req.param("includeObject").unwrap_or("Metadata"),
        );
        return Ok(server::json(
            200,
            &table::table(Some(K::COLUMNS), vec![row], json!({"resourceVersion": rv})),
        ));
    }
    Ok(server::json(200, &obj))
}

/// The continue token: opaque to clients, here the list's resourceVersion and the last key served.
fn encode_continue(rv: u64, key: &Key) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}", key.0, key.1)});
    util::hex_encode(token.to_string().as_bytes())
}

fn decode_continue(token: &str) -> Result<(u64, Key), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let v: Value = util::hex_decode(token)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(bad)?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let (ns, name) = v["start"]
        .as_str()
        .and_then(|s| s.split_once('/'))
        .ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

fn list<K: Kind>(shared: &Shared, req: &Request, ns: Option<&str>) -> Result<Resp, ApiError> {
    let sel = selectors::<K>(req)?;
    let limit = req
        .int_param("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let resume = req
        .param("continue")
        .filter(|c| !c.is_empty())
        .map(decode_continue)
        .transpose()?;
    let store = shared.store();
    // A continued list reports the first page's resourceVersion, so a watch
    // started from it cannot miss changes made while paging.
    let rv = resume
        .as_ref()
        .map_or(store.resource_version(), |(rv, _)| *rv);
    let page = store.page::<K>(ns, &sel, resume.as_ref().map(|(_, k)| k), limit);
    drop(store);
    let meta = ListMeta {
        resource_version: Some(rv.to_string()),
        continue_: page.next.as_ref().map(|k| encode_continue(rv, k)),
        remaining_item_count: page.remaining,
        ..Default::default()
    };
    if table::wants_table(&req.accept) {
        let now = util::now();
        let include = req.param("includeObject").unwrap_or("Metadata");
        let rows = page
            .items
            .iter()
            .map(|o| o.table_row(now, include))
            .collect();
        return Ok(server::json(
            200,
            &table::table(Some(K::COLUMNS), rows, serde_json::to_value(&meta).unwrap()),
        ));
    }
    Ok(server::json(
        200,
        &List::<K> {
            items: page.items,
            metadata: meta,
        },
    ))
}

fn create<K: Kind>(shared: &Arc<Shared>, req: &Request, ns: &str) -> Result<Resp, ApiError> {
    let mut obj: K = decode_object(req)?;
    let warning = field_validation(req, &obj)?;
    let m = obj.metadata_mut();
    if K::NAMESPACED {
        match m.namespace.as_deref() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => m.namespace = Some(ns.to_string()),
        }
    }
    // Server-owned fields are never taken from the client.
    m.uid = None;
    m.resource_version = None;
    m.creation_timestamp = None;
    m.deletion_timestamp = None;
    let generate = m
        .generate_name
        .clone()
        .filter(|g| !g.is_empty() && m.name.as_deref().unwrap_or("").is_empty());
    if let Some(prefix) = &generate {
        m.name = Some(format!(
            "{}{}",
            &prefix[..prefix.len().min(58)],
            util::name_suffix()
        ));
    }
    // Mutating admission runs before validation, as on a real server.
    if shared.faults.kueue_pod_webhook()
        && let Some(p) = (&mut obj as &mut dyn Any).downcast_mut::<Pod>()
    {
        pod::kueue_pod_webhook(p);
    }
    let mut errors = validation::object_meta(obj.metadata(), K::KIND == "Namespace");
    errors.extend(obj.prepare());
    let name = name_of(obj.metadata()).to_string();
    if !errors.is_empty() {
        return Err(ApiError::invalid(K::KIND, &name, &errors));
    }
    let mut store = shared.store();
    if K::NAMESPACED && !store.has_namespace(ns) {
        return Err(ApiError::not_found("namespaces", ns));
    }
    // Quota admission: count/pods charges pods that are not Succeeded or Failed.
    if K::KIND == "Pod"
        && let Some((quota, limit)) = shared.faults.pod_quota(ns)
    {
        let used = store
            .page::<Pod>(Some(ns), &Default::default(), None, None)
            .items
            .iter()
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .count();
        if used >= limit {
            return Err(ApiError::exceeded_quota(&name, &quota, used, limit));
        }
    }
    if req.dry_run() {
        if store.get::<K>(ns, &name).is_some() {
            return Err(ApiError::already_exists(K::URL_PATH_SEGMENT, &name));
        }
        let m = obj.metadata_mut();
        m.uid = Some(util::uid());
        m.creation_timestamp = Some(util::now_time());
        return Ok(server::with_warning(server::json(201, &obj), warning));
    }
    let created = store.create(obj)?;
    drop(store);
    if let Some(pod) = (&created as &dyn Any).downcast_ref::<Pod>() {
        kubelet::admit(shared, pod);
    }
    Ok(server::with_warning(server::json(201, &created), warning))
}

struct DeleteRequest {
    grace: Option<i64>,
    dry_run: bool,
    options: DeleteOptions,
}

fn delete_request(req: &Request) -> Result<DeleteRequest, ApiError> {
    let options: DeleteOptions = if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        DeleteOptions::default()
    } else {
        decode(&req.body)?
    };
    let grace = options
        .grace_period_seconds
        .or(req.int_param("gracePeriodSeconds")?);
    let dry_run = req.dry_run() || options.dry_run.iter().flatten().any(|d| d == "All");
    Ok(DeleteRequest {
        grace,
        dry_run,
        options,
    })
}

fn check_preconditions<K: Kind>(obj: &K, opts: &DeleteOptions) -> Result<(), ApiError> {
    let Some(p) = &opts.preconditions else {
        return Ok(());
    };
    let m = obj.metadata();
    let name = name_of(m);
    let fail = |what: &str, want: &str, have: Option<&str>| {
        ApiError::conflict(
            K::URL_PATH_SEGMENT,
            name,
            &format!(
                "Precondition failed: {what} in precondition: {want}, {what} in object meta: {}",
                have.unwrap_or("")
            ),
        )
    };
    if let Some(uid) = &p.uid
        && m.uid.as_deref() != Some(uid)
    {
        return Err(fail("UID", uid, m.uid.as_deref()));
    }
    if let Some(rv) = &p.resource_version
        && m.resource_version.as_deref() != Some(rv)
    {
        return Err(fail("ResourceVersion", rv, m.resource_version.as_deref()));
    }
    Ok(())
}

/// Pods go through graceful deletion on a real server: the deleted object carries
/// deletionTimestamp and the grace period, which the kubelet honours.
fn stamp_deletion<K: Kind>(obj: &mut K, grace: Option<i64>) {
    if let Some(pod) = (obj as &mut dyn Any).downcast_mut::<Pod>() {
        let default = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        pod.metadata.deletion_timestamp = Some(util::now_time());
        pod.metadata.deletion_grace_period_seconds = Some(grace.unwrap_or(default).max(0));
    }
}

fn delete<K: Kind>(shared: &Shared, req: &Request, ns: &str, name: &str) -> Result<Resp, ApiError> {
    let d = delete_request(req)?;
    let mut store = shared.store();
    let current = store
        .get::<K>(ns, name)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, name))?;
    check_preconditions(current, &d.options)?;
    let deleted = if d.dry_run {
        let mut obj = current.clone();
        stamp_deletion(&mut obj, d.grace);
        obj
    } else {
        store
            .remove::<K>(ns, name, |o| stamp_deletion(o, d.grace))
            .expect("present under the same lock")
    };
    if K::DELETE_RETURNS_OBJECT {
        Ok(server::json(200, &deleted))
    } else {
        Ok(server::json(
            200,
            &status::success(name, K::URL_PATH_SEGMENT, deleted.metadata().uid.clone()),
        ))
    }
}

fn delete_collection<K: Kind>(shared: &Shared, req: &Request, ns: &str) -> Result<Resp, ApiError> {
    let sel = selectors::<K>(req)?;
    let d = delete_request(req)?;
    let mut store = shared.store();
    let ns_filter = K::NAMESPACED.then_some(ns);
    let mut items = store.page::<K>(ns_filter, &sel, None, None).items;
    for obj in &mut items {
        if d.dry_run {
            stamp_deletion(obj, d.grace);
        } else {
            let (ons, oname) = super::store::key_of(obj);
            *obj = store
                .remove::<K>(&ons, &oname, |o| stamp_deletion(o, d.grace))
                .expect("listed under the same lock");
        }
    }
    let meta = ListMeta {
        resource_version: Some(store.resource_version().to_string()),
        ..Default::default()
    };
    Ok(server::json(
        200,
        &List::<K> {
            items,
            metadata: meta,
        },
    ))
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn has_directives(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_directives(v)),
        Value::Array(a) => a.iter().any(has_directives),
        _ => false,
    }
}

/// Only the spec fields a real server lets a pod update change: images, the deadline,
/// tolerations; scheduling gates may only be removed, and while the pod is gated its
/// nodeSelector may be set (what Kueue does when it admits a pod to a flavor).
fn pod_spec_update_errors(old: &Value, new: &Value) -> Vec<FieldError> {
    let gates = |spec: &Value| -> Vec<String> {
        spec["schedulingGates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect()
    };
    let (old_gates, new_gates) = (gates(old), gates(new));
    if let Some(added) = new_gates.iter().find(|g| !old_gates.contains(g)) {
        return vec![FieldError::forbidden(
            "spec.schedulingGates",
            format!("only deletion is allowed, but found new scheduling gate '{added}'"),
        )];
    }
    let gated = !old_gates.is_empty();
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("tolerations");
            o.remove("schedulingGates");
            if gated {
                o.remove("nodeSelector");
            }
        }
        for c in s["containers"].as_array_mut().into_iter().flatten() {
            if let Some(o) = c.as_object_mut() {
                o.remove("image");
            }
        }
        s
    };
    if strip(old) == strip(new) {
        return vec![];
    }
    vec![FieldError::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )]
}

/// A strategic merge patch the fake can apply as a merge patch: plain metadata maps (what
/// `kubectl label`/`annotate` send) or `spec.schedulingGates: null` (removing every gate).
fn strategic_is_merge(patch: &Value) -> bool {
    let Some(o) = patch.as_object() else {
        return false;
    };
    !has_directives(patch)
        && o.iter().all(|(k, v)| match k.as_str() {
            "metadata" | "apiVersion" | "kind" => true,
            "spec" => v.as_object().is_some_and(|spec| {
                spec.iter()
                    .all(|(k, v)| k == "schedulingGates" && v.is_null())
            }),
            _ => false,
        })
}

fn patch<K: Kind>(shared: &Shared, req: &Request, ns: &str, name: &str) -> Result<Resp, ApiError> {
    const ACCEPTED: &str = "application/merge-patch+json";
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    let patch: Value = decode(&req.body)?;
    let strategic_as_merge =
        ct == "application/strategic-merge-patch+json" && strategic_is_merge(&patch);
    if ct != ACCEPTED && !strategic_as_merge {
        return Err(ApiError::unsupported_media_type(ct, ACCEPTED));
    }
    let mut store = shared.store();
    let current = store
        .get::<K>(ns, name)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, name))?;
    let old = serde_json::to_value(current).unwrap();
    if let Some(rv) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && Some(rv)
            != old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::conflict(
            K::URL_PATH_SEGMENT,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let mut doc = old.clone();
    merge_patch(&mut doc, &patch);
    // Identity and status are not the client's to change through the main resource.
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "resourceVersion",
    ] {
        doc["metadata"][f] = old["metadata"][f].clone();
    }
    if let Some(s) = old.get("status") {
        doc["status"] = s.clone();
    }
    let mut errors: Vec<FieldError> = vec![];
    if K::KIND == "Pod" {
        errors.extend(pod_spec_update_errors(&old["spec"], &doc["spec"]));
    }
    let updated: K =
        serde_json::from_value(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
    errors.extend(validation::labels(
        updated.metadata().labels.as_ref(),
        "metadata.labels",
    ));
    if !errors.is_empty() {
        return Err(ApiError::invalid(K::KIND, name, &errors));
    }
    if req.dry_run() {
        return Ok(server::json(200, &updated));
    }
    Ok(server::json(200, &store.put(updated)))
}
