//! `labelSelector` and `fieldSelector` query parameters: parsing with the
//! apimachinery's grammar and matching against any stored object.

use std::collections::BTreeMap;

use super::resources::AnyObject;
use super::status::ApiError;
use super::validation;

#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

#[derive(Debug, Clone)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone)]
struct LabelReq {
    key: String,
    op: LabelOp,
}

#[derive(Debug, Clone)]
struct FieldReq {
    field: String,
    value: String,
    equal: bool,
}

impl Selectors {
    /// From a request's query; `fields` lists the field labels this resource supports.
    pub fn from_query(query: &[(String, String)], fields: &[&str]) -> Result<Selectors, ApiError> {
        let get = |k: &str| {
            query
                .iter()
                .find(|(q, _)| q == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let labels = parse_labels(get("labelSelector"))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = parse_fields(get("fieldSelector"), fields).map_err(ApiError::bad_request)?;
        Ok(Selectors { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &dyn AnyObject) -> bool {
        let empty = BTreeMap::new();
        let labels = obj.labels().unwrap_or(&empty);
        self.labels.iter().all(|r| r.matches(labels))
            && self
                .fields
                .iter()
                .all(|r| (obj.field_value(&r.field) == r.value) == r.equal)
    }
}

impl LabelReq {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            LabelOp::Eq(want) => v == Some(want),
            LabelOp::NotEq(want) => v != Some(want),
            LabelOp::In(set) => v.is_some_and(|v| set.contains(v)),
            LabelOp::NotIn(set) => v.is_none_or(|v| !set.contains(v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
            LabelOp::Gt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelOp::Lt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

/// Splits on commas outside parentheses: `a in (x,y),b` is two requirements.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = vec![];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    if s.trim().is_empty() {
        return Ok(vec![]);
    }
    split_top_level(s)
        .into_iter()
        .map(parse_label_req)
        .collect()
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("found '', expected: identifier".into());
    }
    match validation::qualified_name(key).first() {
        Some(e) => Err(format!("key: Invalid value: {key:?}: {e}")),
        None => Ok(()),
    }
}

fn check_value(v: &str) -> Result<String, String> {
    match validation::label_value(v).first() {
        Some(e) => Err(format!("values[0][{v}]: Invalid value: {v:?}: {e}")),
        None => Ok(v.to_string()),
    }
}

fn parse_label_req(part: &str) -> Result<LabelReq, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("found ',', expected: !, identifier, or 'end of string'".into());
    }
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(LabelReq {
            key: key.into(),
            op: LabelOp::DoesNotExist,
        });
    }
    let end = part
        .find(|c: char| c.is_whitespace() || "=!<>(".contains(c))
        .unwrap_or(part.len());
    let (key, rest) = (&part[..end], part[end..].trim());
    check_key(key)?;
    let key = key.to_string();
    let op =
        if rest.is_empty() {
            LabelOp::Exists
        } else if let Some(v) = rest.strip_prefix("==") {
            LabelOp::Eq(check_value(v.trim())?)
        } else if let Some(v) = rest.strip_prefix("!=") {
            LabelOp::NotEq(check_value(v.trim())?)
        } else if let Some(v) = rest.strip_prefix('=') {
            LabelOp::Eq(check_value(v.trim())?)
        } else if let Some(v) = rest.strip_prefix('>') {
            LabelOp::Gt(v.trim().parse().map_err(|_| {
                format!("for 'Gt', 'Lt' operators, the value must be an integer: {v}")
            })?)
        } else if let Some(v) = rest.strip_prefix('<') {
            LabelOp::Lt(v.trim().parse().map_err(|_| {
                format!("for 'Gt', 'Lt' operators, the value must be an integer: {v}")
            })?)
        } else if let Some(v) = rest.strip_prefix("notin") {
            LabelOp::NotIn(parse_set(v)?)
        } else if let Some(v) = rest.strip_prefix("in") {
            LabelOp::In(parse_set(v)?)
        } else {
            return Err(format!(
                "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
            ));
        };
    Ok(LabelReq { key, op })
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("found '{}', expected: '('", s.trim()))?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(check_value)
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Err("for 'in', 'notin' operators, values set can't be empty".into());
    }
    Ok(values)
}

/// Splits on `sep` where not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = parts.last_mut().unwrap();
                last.push('\\');
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_fields(s: &str, supported: &[&str]) -> Result<Vec<FieldReq>, String> {
    if s.trim().is_empty() {
        return Ok(vec![]);
    }
    split_unescaped(s, ',')
        .into_iter()
        .map(|term| {
            let (field, value, equal) = find_op(&term)
                .ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{term}'"))?;
            let field = field.trim().to_string();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported.contains(&field.as_str())
            {
                return Err(format!("field label not supported: {field}"));
            }
            Ok(FieldReq {
                field,
                value: unescape(value),
                equal,
            })
        })
        .collect()
}

/// The first unescaped `!=`, `==` or `=`.
fn find_op(term: &str) -> Option<(&str, &str, bool)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'!' if b.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], &term[i + 2..], false));
            }
            b'=' if b.get(i + 1) == Some(&b'=') => return Some((&term[..i], &term[i + 2..], true)),
            b'=' => return Some((&term[..i], &term[i + 1..], true)),
            _ => {}
        }
        i += 1;
    }
    None
}
