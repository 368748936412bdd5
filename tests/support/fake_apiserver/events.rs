//! core/v1 Events as the scheduler and kubelet record them; a repeat of the
//! same reason and message for the same pod bumps the count of the first.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Shared;
use super::resources::NODE_NAME;
use super::util;

/// Event names by (pod uid, reason, message).
#[derive(Default)]
pub(crate) struct Recorder {
    names: Mutex<HashMap<u64, String>>,
}

/// Records an Event about `pod` from `component` ("kubelet" or "default-scheduler").
pub(crate) fn record(
    shared: &Shared,
    pod: &Pod,
    component: &str,
    type_: &str,
    reason: &str,
    message: &str,
    field_path: Option<String>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let mut h = DefaultHasher::new();
    (&pod.metadata.uid, reason, message).hash(&mut h);
    let mut names = shared.events.names.lock().unwrap();
    let now = util::now_time();
    let mut store = shared.store();
    if let Some(name) = names.get(&h.finish())
        && store.get::<Event>(&ns, name).is_some()
    {
        store.update::<Event>(&ns, name, None, |e| {
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(now.clone());
            true
        });
        return;
    }
    // The real name: <object>.<creation time in hex nanoseconds>, so names sort by time.
    let mut nanos = now.0.as_nanosecond() as u64;
    while store
        .get::<Event>(&ns, &format!("{pod_name}.{nanos:x}"))
        .is_some()
    {
        nanos += 1;
    }
    let name = format!("{pod_name}.{nanos:x}");
    names.insert(h.finish(), name.clone());
    store.put(Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod_name),
            namespace: Some(ns),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: Some(NODE_NAME.into()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(NODE_NAME.into()),
        ..Default::default()
    });
}
