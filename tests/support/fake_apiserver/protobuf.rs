//! Just enough of Kubernetes' protobuf encoding to read what kubectl sends only
//! as protobuf: `kubectl create secret|configmap|namespace` and `kubectl auth
//! can-i`. Responses are always JSON, which clients accept.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The length-delimited fields of a message, by field number.
fn fields(mut b: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = vec![];
    while !b.is_empty() {
        let (tag, rest) = varint(b)?;
        b = rest;
        match tag & 7 {
            0 => b = varint(b)?.1,
            2 => {
                let (len, rest) = varint(b)?;
                let len = usize::try_from(len).ok()?;
                out.push((tag >> 3, rest.get(..len)?));
                b = rest.get(len..)?;
            }
            5 => b = b.get(4..)?,
            1 => b = b.get(8..)?,
            _ => return None,
        }
    }
    Some(out)
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

fn field(msg: &[u8], n: u64) -> Option<&[u8]> {
    fields(msg)?
        .into_iter()
        .find(|(f, _)| *f == n)
        .map(|(_, v)| v)
}

fn string(msg: &[u8], n: u64) -> Option<String> {
    field(msg, n).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A `map<string, V>` field: repeated entries {1: key, 2: value}.
fn map(msg: &[u8], n: u64) -> Option<BTreeMap<String, Vec<u8>>> {
    let entries: BTreeMap<_, _> = fields(msg)?
        .into_iter()
        .filter(|(f, _)| *f == n)
        .map(|(_, e)| {
            (
                string(e, 1).unwrap_or_default(),
                field(e, 2).unwrap_or_default().to_vec(),
            )
        })
        .collect();
    (!entries.is_empty()).then_some(entries)
}

fn string_map(msg: &[u8], n: u64) -> Option<BTreeMap<String, String>> {
    map(msg, n).map(|m| {
        m.into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    })
}

fn object_meta(msg: &[u8]) -> ObjectMeta {
    ObjectMeta {
        name: string(msg, 1),
        generate_name: string(msg, 2),
        namespace: string(msg, 3),
        labels: string_map(msg, 11),
        annotations: string_map(msg, 12),
        ..Default::default()
    }
}

/// `k8s\0` + runtime.Unknown{raw}: the encoded object.
fn raw(body: &[u8]) -> Option<&[u8]> {
    field(body.strip_prefix(b"k8s\0")?, 2)
}

/// A protobuf-encoded object of `kind`, as JSON for the usual decoding path.
pub(crate) fn object(kind: &str, body: &[u8]) -> Option<Value> {
    let raw = raw(body)?;
    let meta = object_meta(field(raw, 1).unwrap_or_default());
    let v = match kind {
        "Secret" => serde_json::to_value(Secret {
            metadata: meta,
            data: map(raw, 2).map(|m| m.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            type_: string(raw, 3),
            string_data: string_map(raw, 4),
            ..Default::default()
        }),
        "ConfigMap" => serde_json::to_value(ConfigMap {
            metadata: meta,
            data: string_map(raw, 2),
            binary_data: map(raw, 3)
                .map(|m| m.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Default::default()
        }),
        "Namespace" => serde_json::to_value(Namespace {
            metadata: meta,
            ..Default::default()
        }),
        _ => return None,
    };
    v.ok()
}

/// SelfSubjectAccessReview{spec: {resourceAttributes}}.
pub(crate) fn access_review(body: &[u8]) -> Option<SelfSubjectAccessReview> {
    let spec = field(raw(body)?, 2)?;
    let mut review = SelfSubjectAccessReview::default();
    if let Some(a) = field(spec, 1) {
        review.spec.resource_attributes = Some(ResourceAttributes {
            namespace: string(a, 1),
            verb: string(a, 2),
            group: string(a, 3),
            version: string(a, 4),
            resource: string(a, 5),
            subresource: string(a, 6),
            name: string(a, 7),
            ..Default::default()
        });
    }
    Some(review)
}
