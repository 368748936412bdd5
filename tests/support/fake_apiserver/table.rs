//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
//! which is what `kubectl get` asks for and prints verbatim.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub(crate) struct Column {
    pub name: &'static str,
    pub format: &'static str,
    pub priority: i32,
    pub description: &'static str,
}

pub(crate) const fn col(name: &'static str, priority: i32, description: &'static str) -> Column {
    Column {
        name,
        format: "",
        priority,
        description,
    }
}

pub(crate) const NAME: Column = Column {
    name: "Name",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};

pub(crate) const AGE: Column = col(
    "Age",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

pub(crate) fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|m| m.contains("as=Table"))
}

/// How a row's object is embedded (`includeObject`): kubectl uses the metadata
/// for `--show-labels` and namespaces.
pub(crate) fn row(cells: Vec<Value>, meta: &ObjectMeta, object: Value, include: &str) -> Value {
    let object = match include {
        "None" => Value::Null,
        "Object" => object,
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        }
    };
    json!({"cells": cells, "object": object})
}

pub(crate) fn table(columns: Option<&[Column]>, rows: Vec<Value>, list_meta: Value) -> Value {
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    if let Some(columns) = columns {
        t["columnDefinitions"] = columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": "string", "format": c.format, "description": c.description, "priority": c.priority})
            })
            .collect();
    }
    t
}

pub(crate) fn age(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t.0).as_secs()),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        return if s % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", s % 60)
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return if hours % 24 == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, hours % 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, days)
        };
    }
    format!("{}y", hours / 24 / 365)
}
