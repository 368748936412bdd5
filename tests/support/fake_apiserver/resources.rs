//! The kinds the fake serves and what differs between them: scope, verbs,
//! selectable fields, printed columns, defaulting. Handlers are generic over
//! [`Kind`]; watch events carry objects as [`AnyObject`].

use std::any::Any;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, NamespaceSpec, NamespaceStatus, Node, NodeAddress, NodeCondition,
    NodeStatus, NodeSystemInfo, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::{ByteString, ListableResource, Metadata, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::store::{Collection, Store};
use super::table::{self, AGE, Column, NAME, col};
use super::util;
use super::validation::FieldError;

pub(crate) const NODE_NAME: &str = "fake-node";
pub(crate) const K8S_VERSION: &str = "v1.33.0-fake";

pub(crate) trait Kind:
    Resource
    + ListableResource
    + Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
    const NAMESPACED: bool;
    const SINGULAR: &'static str;
    const SHORT_NAMES: &'static [&'static str];
    const VERBS: &'static [&'static str];
    /// Field labels selectable besides metadata.name and metadata.namespace.
    const FIELDS: &'static [&'static str] = &[];
    /// Pods answer a delete with the object; most kinds with a Status.
    const DELETE_RETURNS_OBJECT: bool = false;
    const COLUMNS: &'static [Column];

    fn field(&self, _field: &str) -> String {
        String::new()
    }
    fn cells(&self, now: Timestamp) -> Vec<Value>;
    /// Defaulting and kind-specific validation on create.
    fn prepare(&mut self) -> Vec<FieldError> {
        vec![]
    }
    fn collection(store: &Store) -> &Collection<Self>;
    fn collection_mut(store: &mut Store) -> &mut Collection<Self>;
}

/// A stored object of any kind, as watch events and selectors see it.
pub(crate) trait AnyObject: Send + Sync {
    fn resource(&self) -> &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.meta().labels.as_ref()
    }
    fn field_value(&self, field: &str) -> String;
    fn to_json(&self) -> Value;
    fn table_row(&self, now: Timestamp, include: &str) -> Value;
    fn columns(&self) -> &'static [Column];
    fn as_any(&self) -> &dyn Any;
}

impl<K: Kind> AnyObject for K {
    fn resource(&self) -> &'static str {
        K::URL_PATH_SEGMENT
    }
    fn meta(&self) -> &ObjectMeta {
        self.metadata()
    }
    fn field_value(&self, field: &str) -> String {
        let m = self.metadata();
        match field {
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            f => Kind::field(self, f),
        }
    }
    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("k8s-openapi objects serialize")
    }
    fn table_row(&self, now: Timestamp, include: &str) -> Value {
        let object = if include == "Object" {
            self.to_json()
        } else {
            Value::Null
        };
        table::row(self.cells(now), self.metadata(), object, include)
    }
    fn columns(&self) -> &'static [Column] {
        K::COLUMNS
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub(crate) fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn age_cell(meta: &ObjectMeta, now: Timestamp) -> Value {
    table::age(meta.creation_timestamp.as_ref(), now).into()
}

/// Every verb the fake serves for a read-write resource (pods included).
pub(crate) const RW_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "watch",
];

impl Kind for Secret {
    const NAMESPACED: bool = true;
    const SINGULAR: &'static str = "secret";
    const SHORT_NAMES: &'static [&'static str] = &[];
    const VERBS: &'static [&'static str] = RW_VERBS;
    const FIELDS: &'static [&'static str] = &["type"];
    const COLUMNS: &'static [Column] = &[
        NAME,
        col(
            "Type",
            0,
            "Used to facilitate programmatic handling of secret data.",
        ),
        col("Data", 0, "Data contains the secret data."),
        AGE,
    ];

    fn field(&self, field: &str) -> String {
        match field {
            "type" => self.type_.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }
    fn cells(&self, now: Timestamp) -> Vec<Value> {
        let data = self.data.as_ref().map_or(0, |d| d.len());
        vec![
            name_of(&self.metadata).into(),
            self.type_.clone().unwrap_or_default().into(),
            data.into(),
            age_cell(&self.metadata, now),
        ]
    }
    /// The real server folds stringData into data on write.
    fn prepare(&mut self) -> Vec<FieldError> {
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in strings {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
        if self.type_.as_deref().unwrap_or("").is_empty() {
            self.type_ = Some("Opaque".into());
        }
        vec![]
    }
    fn collection(store: &Store) -> &Collection<Self> {
        &store.secrets
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.secrets
    }
}

impl Kind for ConfigMap {
    const NAMESPACED: bool = true;
    const SINGULAR: &'static str = "configmap";
    const SHORT_NAMES: &'static [&'static str] = &["cm"];
    const VERBS: &'static [&'static str] = RW_VERBS;
    const COLUMNS: &'static [Column] = &[
        NAME,
        col("Data", 0, "Data contains the configuration data."),
        AGE,
    ];

    fn cells(&self, now: Timestamp) -> Vec<Value> {
        let n = self.data.as_ref().map_or(0, |d| d.len())
            + self.binary_data.as_ref().map_or(0, |d| d.len());
        vec![
            name_of(&self.metadata).into(),
            n.into(),
            age_cell(&self.metadata, now),
        ]
    }
    fn collection(store: &Store) -> &Collection<Self> {
        &store.configmaps
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.configmaps
    }
}

pub(crate) fn namespace(name: &str) -> Namespace {
    let mut ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    ns.prepare();
    ns
}

impl Kind for Namespace {
    const NAMESPACED: bool = false;
    const SINGULAR: &'static str = "namespace";
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const VERBS: &'static [&'static str] = &["create", "get", "list", "patch", "watch"];
    const FIELDS: &'static [&'static str] = &["status.phase"];
    const COLUMNS: &'static [Column] =
        &[NAME, col("Status", 0, "The status of the namespace"), AGE];

    fn field(&self, field: &str) -> String {
        match field {
            "status.phase" => self
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }
    fn cells(&self, now: Timestamp) -> Vec<Value> {
        vec![
            name_of(&self.metadata).into(),
            Kind::field(self, "status.phase").into(),
            age_cell(&self.metadata, now),
        ]
    }
    fn prepare(&mut self) -> Vec<FieldError> {
        let name = name_of(&self.metadata).to_string();
        self.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("kubernetes.io/metadata.name".into(), name);
        self.spec.get_or_insert_with(|| NamespaceSpec {
            finalizers: Some(vec!["kubernetes".into()]),
        });
        self.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        vec![]
    }
    fn collection(store: &Store) -> &Collection<Self> {
        &store.namespaces
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.namespaces
    }
}

impl Kind for Event {
    const NAMESPACED: bool = true;
    const SINGULAR: &'static str = "event";
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const VERBS: &'static [&'static str] = RW_VERBS;
    const FIELDS: &'static [&'static str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    const COLUMNS: &'static [Column] = &[
        col("Last Seen", 0, "The last time the event occurred"),
        col("Type", 0, "Type of this event (Normal, Warning)"),
        col(
            "Reason",
            0,
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        col("Object", 0, "The object that this event is about."),
        col(
            "Message",
            0,
            "A human-readable description of the status of this operation.",
        ),
    ];

    fn field(&self, field: &str) -> String {
        let o = &self.involved_object;
        let v = match field {
            "involvedObject.kind" => o.kind.clone(),
            "involvedObject.namespace" => o.namespace.clone(),
            "involvedObject.name" => o.name.clone(),
            "involvedObject.uid" => o.uid.clone(),
            "involvedObject.apiVersion" => o.api_version.clone(),
            "involvedObject.resourceVersion" => o.resource_version.clone(),
            "involvedObject.fieldPath" => o.field_path.clone(),
            "reason" => self.reason.clone(),
            "reportingComponent" => self.reporting_component.clone(),
            "source" => self.source.as_ref().and_then(|s| s.component.clone()),
            "type" => self.type_.clone(),
            _ => None,
        };
        v.unwrap_or_default()
    }
    fn cells(&self, now: Timestamp) -> Vec<Value> {
        let o = &self.involved_object;
        let object = format!(
            "{}/{}",
            o.kind.as_deref().unwrap_or("").to_lowercase(),
            o.name.as_deref().unwrap_or("")
        );
        vec![
            table::age(self.last_timestamp.as_ref(), now).into(),
            self.type_.clone().unwrap_or_default().into(),
            self.reason.clone().unwrap_or_default().into(),
            object.into(),
            self.message.clone().unwrap_or_default().into(),
        ]
    }
    fn collection(store: &Store) -> &Collection<Self> {
        &store.events
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.events
    }
}

/// The one node pods are "scheduled" to.
pub(crate) fn fake_node() -> Node {
    let quantity = |s: &str| Quantity(s.into());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", "2"),
        ("memory", "8Gi"),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), quantity(v)))
    .collect();
    let labels = [
        ("kubernetes.io/hostname", NODE_NAME),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node-role.kubernetes.io/control-plane", ""),
    ];
    Node {
        metadata: ObjectMeta {
            name: Some(NODE_NAME.into()),
            labels: Some(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "127.0.0.1".into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: NODE_NAME.into(),
                },
            ]),
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("kubelet is posting ready status".into()),
                last_heartbeat_time: Some(util::now_time()),
                last_transition_time: Some(util::now_time()),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: String::new(),
                container_runtime_version: "fake://1.0.0".into(),
                kernel_version: String::new(),
                kube_proxy_version: String::new(),
                kubelet_version: K8S_VERSION.into(),
                machine_id: String::new(),
                operating_system: "linux".into(),
                os_image: "fake kubelet (local processes)".into(),
                system_uuid: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Kind for Node {
    const NAMESPACED: bool = false;
    const SINGULAR: &'static str = "node";
    const SHORT_NAMES: &'static [&'static str] = &["no"];
    const VERBS: &'static [&'static str] = &["get", "list", "watch"];
    const FIELDS: &'static [&'static str] = &["spec.unschedulable"];
    const COLUMNS: &'static [Column] = &[
        NAME,
        col("Status", 0, "The status of the node"),
        col("Roles", 0, "The roles of the node"),
        AGE,
        col("Version", 0, "Kubelet Version reported by the node."),
    ];

    fn field(&self, field: &str) -> String {
        match field {
            "spec.unschedulable" => self
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
                .to_string(),
            _ => String::new(),
        }
    }
    fn cells(&self, now: Timestamp) -> Vec<Value> {
        vec![
            name_of(&self.metadata).into(),
            "Ready".into(),
            "control-plane".into(),
            age_cell(&self.metadata, now),
            K8S_VERSION.into(),
        ]
    }
    fn collection(store: &Store) -> &Collection<Self> {
        &store.nodes
    }
    fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
        &mut store.nodes
    }
}

/// Discovery entry for a kind, from the same constants the handlers obey.
pub(crate) fn api_resource<K: Kind>() -> Value {
    let mut r = json!({
        "name": K::URL_PATH_SEGMENT,
        "singularName": K::SINGULAR,
        "namespaced": K::NAMESPACED,
        "kind": K::KIND,
        "verbs": K::VERBS,
    });
    if !K::SHORT_NAMES.is_empty() {
        r["shortNames"] = json!(K::SHORT_NAMES);
    }
    r
}
