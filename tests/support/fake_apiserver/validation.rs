//! Name and label validation with the apimachinery's exact messages, so a 422
//! from the fake reads like one from a real cluster.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: String,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ErrorKind {
    Invalid { value: String, detail: String },
    Required { detail: String },
    Forbidden { detail: String },
    Duplicate { value: String },
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> FieldError {
        FieldError::invalid_raw(field, format!("{value:?}"), detail)
    }

    /// `value` as printed: Go prints numbers unquoted.
    pub fn invalid_raw(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Invalid {
                value: value.into(),
                detail: detail.into(),
            },
        }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Required {
                detail: detail.into(),
            },
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Forbidden {
                detail: detail.into(),
            },
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Duplicate {
                value: format!("{value:?}"),
            },
        }
    }

    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Invalid { .. } => "FieldValueInvalid",
            ErrorKind::Required { .. } => "FieldValueRequired",
            ErrorKind::Forbidden { .. } => "FieldValueForbidden",
            ErrorKind::Duplicate { .. } => "FieldValueDuplicate",
        }
    }

    /// The message without the field path, as in Status causes.
    pub fn body(&self) -> String {
        let (head, detail) = match &self.kind {
            ErrorKind::Invalid { value, detail } => (format!("Invalid value: {value}"), detail),
            ErrorKind::Required { detail } => ("Required value".to_string(), detail),
            ErrorKind::Forbidden { detail } => ("Forbidden".to_string(), detail),
            ErrorKind::Duplicate { value } => return format!("Duplicate value: {value}"),
        };
        if detail.is_empty() {
            head
        } else {
            format!("{head}: {detail}")
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_label_like(s: &str, inner: impl Fn(char) -> bool, edge: impl Fn(char) -> bool) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    edge(first) && edge(last) && s.chars().all(inner)
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = vec![];
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".into());
    }
    if !is_label_like(s, |c| lower_alnum(c) || c == '-', lower_alnum) {
        errs.push(DNS1123_LABEL_MSG.into());
    }
    errs
}

pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = vec![];
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".into());
    }
    let ok = !s.is_empty()
        && s.split('.')
            .all(|part| is_label_like(part, |c| lower_alnum(c) || c == '-', lower_alnum));
    if !ok {
        errs.push(DNS1123_SUBDOMAIN_MSG.into());
    }
    errs
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn name_part_char(c: char) -> bool {
    alnum(c) || matches!(c, '-' | '_' | '.')
}

pub(crate) fn label_value(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".into());
    }
    if !v.is_empty() && !is_label_like(v, name_part_char, alnum) {
        errs.push(LABEL_VALUE_MSG.into());
    }
    errs
}

/// A label or annotation key: `[prefix/]name`.
pub(crate) fn qualified_name(k: &str) -> Vec<String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let mut errs = vec![];
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".into());
        } else {
            errs.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".into());
        }
        if !is_label_like(name, name_part_char, alnum) {
            errs.push(QUALIFIED_NAME_MSG.into());
        }
    }
    errs
}

pub(crate) fn labels(labels: Option<&BTreeMap<String, String>>, field: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(
            qualified_name(k)
                .into_iter()
                .map(|e| FieldError::invalid(field, k, e)),
        );
        errs.extend(
            label_value(v)
                .into_iter()
                .map(|e| FieldError::invalid(field, v, e)),
        );
    }
    errs
}

/// Checks common to every object; `name_is_label` for namespaces, whose names are DNS labels.
pub(crate) fn object_meta(meta: &ObjectMeta, name_is_label: bool) -> Vec<FieldError> {
    let mut errs = vec![];
    match meta.name.as_deref() {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            let found = if name_is_label {
                dns1123_label(name)
            } else {
                dns1123_subdomain(name)
            };
            errs.extend(
                found
                    .into_iter()
                    .map(|e| FieldError::invalid("metadata.name", name, e)),
            );
        }
    }
    errs.extend(labels(meta.labels.as_ref(), "metadata.labels"));
    for k in meta.annotations.iter().flat_map(|a| a.keys()) {
        errs.extend(
            qualified_name(k)
                .into_iter()
                .map(|e| FieldError::invalid("metadata.annotations", k, e)),
        );
    }
    errs
}
