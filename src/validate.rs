//! The Kubernetes rules for every name and value asdo puts into a request path, a
//! selector or an object, checked locally so bad input is one line and exit 2 with
//! nothing sent. Why here and not left to the API server: kube-rs builds request
//! paths by formatting, without percent-encoding, so a namespace of `x?` or `x/..`
//! would change *which* object a request addresses (a DELETE of `…/namespaces/x?/pods`
//! is a DELETE of the namespace). Pure: no I/O.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use crate::error::{Error, Result};

/// RFC 1123 label: lowercase letters, digits, '-', alphanumeric at both ends, ≤ 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253 (Secret, ConfigMap names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A namespace goes into every request path: the first thing checked.
pub fn namespace(ns: &str) -> Result<()> {
    if is_dns_label(ns) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "invalid namespace {}: a namespace is a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
        quoted(ns)
    )))
}

/// Names of Secrets, ConfigMaps and other objects asdo refers to.
pub fn object_name(kind: &str, name: &str) -> Result<()> {
    if is_dns_subdomain(name) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "invalid {kind} name {}: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
        quoted(name)
    )))
}

/// `{:?}` quotes and escapes control characters, so a hostile value prints as one line.
fn quoted(s: &str) -> String {
    let shown: String = s.chars().take(80).collect();
    if shown.len() < s.len() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    }
}

/// The name part of a label key, and every label value: ≤ 63, alphanumeric at the
/// ends, `-_.` inside.
fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A qualified name: `[prefix/]name`, the prefix a DNS subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

pub fn label(key: &str, value: &str) -> Result<()> {
    if !is_qualified_name(key) {
        return Err(Error::usage(format!(
            "invalid label key {}: use [prefix/]name, the name at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric",
            quoted(key)
        )));
    }
    if !is_label_value(value) {
        return Err(Error::usage(format!(
            "invalid value {} for label {key}: at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric (or empty)",
            quoted(value)
        )));
    }
    Ok(())
}

/// A label selector as `kubectl -l` takes it: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// `k in (a,b)`, `k notin (a,b)`, comma-separated. Parsed, not just scanned, so a
/// typo is a local usage error instead of a 400 from the server (or worse).
pub fn selector(sel: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::usage(format!(
            "invalid label selector {}: {why} (use k=v, k!=v, k, !k, 'k in (a,b)', 'k notin (a,b)', comma-separated)",
            quoted(sel)
        )))
    };
    if sel.chars().any(|c| c.is_control()) {
        return bad("control characters");
    }
    let mut rest = sel.trim();
    if rest.is_empty() {
        return Ok(());
    }
    loop {
        rest = rest.trim_start();
        let negated = rest.starts_with('!');
        if negated {
            rest = rest[1..].trim_start();
        }
        let key_end = rest
            .find(|c: char| "=!,() ".contains(c))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        if !is_qualified_name(key) {
            return bad(&format!("{} is not a valid label key", quoted(key)));
        }
        rest = rest[key_end..].trim_start();
        if !negated {
            let op = ["==", "!=", "=", "in ", "in(", "notin ", "notin("]
                .into_iter()
                .find(|op| rest.starts_with(op));
            match op {
                Some(op @ ("==" | "!=" | "=")) => {
                    rest = rest[op.len()..].trim_start();
                    let end = rest.find([',', ' ']).unwrap_or(rest.len());
                    if !is_label_value(&rest[..end]) {
                        return bad(&format!(
                            "{} is not a valid label value",
                            quoted(&rest[..end])
                        ));
                    }
                    rest = rest[end..].trim_start();
                }
                Some(op) => {
                    rest = rest[op.trim_end_matches('(').len()..].trim_start();
                    let Some(inner) = rest.strip_prefix('(') else {
                        return bad("'in'/'notin' needs a parenthesised list");
                    };
                    let Some(close) = inner.find(')') else {
                        return bad("unclosed '('");
                    };
                    for v in inner[..close].split(',') {
                        if !is_label_value(v.trim()) {
                            return bad(&format!("{} is not a valid label value", quoted(v)));
                        }
                    }
                    rest = inner[close + 1..].trim_start();
                }
                None => {}
            }
        }
        match rest.strip_prefix(',') {
            Some(r) if !r.trim().is_empty() => rest = r,
            Some(_) => return bad("ends with ','"),
            None if rest.is_empty() => return Ok(()),
            None => return bad(&format!("unexpected {}", quoted(rest))),
        }
    }
}

/// Environment variable names as the API server accepts them.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// A resource quantity (`500m`, `2Gi`, `1e3`), non-negative as requests and limits must be.
pub fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let num_ok =
        !num.is_empty() && num.matches('.').count() <= 1 && num.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
        .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()));
    num_ok && suffix_ok
}

/// An image reference: `[registry[:port]/]path[:tag][@algo:hex]`, as the kubelet
/// parses it (anything else ends as InvalidImageName after the pod was created).
pub fn is_image(s: &str) -> bool {
    if s.is_empty() || s.len() > 4096 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first component is a registry when it looks like a host (has '.', ':' or is localhost).
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host.split_once(':').unwrap_or((host, ""));
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        let port_ok =
            !host.contains(':') || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
    }
    !parts.is_empty()
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Everything in a rendered pod that the API server (or the kubelet, later and
/// worse) would refuse, checked before it is sent.
pub fn pod(pod: &Pod) -> Result<()> {
    let meta = &pod.metadata;
    if let Some(name) = &meta.name
        && !is_dns_label(name)
    {
        return Err(Error::usage(format!("invalid pod name {}", quoted(name))));
    }
    for (k, v) in meta.labels.iter().flatten() {
        label(k, v)?;
    }
    for k in meta.annotations.iter().flatten().map(|(k, _)| k) {
        if !is_qualified_name(k) {
            return Err(Error::usage(format!(
                "invalid annotation key {} (pod.annotations): use [prefix/]name",
                quoted(k)
            )));
        }
    }
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        return Err(Error::usage(format!(
            "pod.activeDeadlineSeconds must be a positive number of seconds, not {d}"
        )));
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        return Err(Error::usage(format!(
            "pod.terminationGracePeriodSeconds must be 0 or more, not {g}"
        )));
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        object_name("image pull Secret (pod.imagePullSecrets)", &s.name)?;
    }
    for v in spec.volumes.iter().flatten() {
        if !is_dns_label(&v.name) {
            return Err(Error::usage(format!(
                "invalid volume name {}: a DNS-1123 label",
                quoted(&v.name)
            )));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            object_name("Secret", name)?;
        }
        if let Some(cm) = &v.config_map {
            object_name("ConfigMap", &cm.name)?;
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        container(c)?;
    }
    Ok(())
}

fn container(c: &Container) -> Result<()> {
    match &c.image {
        Some(image) if is_image(image) => {}
        Some(image) => {
            return Err(Error::usage(format!(
                "invalid image {} for container {}: use [registry/]name[:tag][@sha256:digest] in lowercase (pod.image, --image)",
                quoted(image),
                c.name
            )));
        }
        None => {
            return Err(Error::usage(format!(
                "container {} has no image: set pod.image.repository or --image",
                c.name
            )));
        }
    }
    for e in c.env.iter().flatten() {
        if !is_env_name(&e.name) {
            return Err(Error::usage(format!(
                "invalid environment variable name {} (pod.env): letters, digits, '_', '-' or '.', not starting with a digit",
                quoted(&e.name)
            )));
        }
        let from = e.value_from.as_ref();
        if let Some(r) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            object_name("Secret", &r.name)?;
        }
        if let Some(r) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
            object_name("ConfigMap", &r.name)?;
        }
    }
    for f in c.env_from.iter().flatten() {
        if let Some(s) = &f.secret_ref {
            object_name("Secret", &s.name)?;
        }
        if let Some(cm) = &f.config_map_ref {
            object_name("ConfigMap", &cm.name)?;
        }
    }
    if let Some(r) = &c.resources {
        resources(r)?;
    }
    Ok(())
}

fn resources(r: &ResourceRequirements) -> Result<()> {
    for (kind, map) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (res, q) in map.iter().flatten() {
            if !is_quantity(&q.0) {
                return Err(Error::usage(format!(
                    "invalid quantity {} for pod.resources.{kind}.{res}: use a number with an optional suffix, e.g. 500m, 2Gi",
                    quoted(&q.0)
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["agent-orchestrator-dev", "a", "x1", &"a".repeat(63)] {
            namespace(ok).unwrap();
        }
        for bad in [
            "",
            "agent-orchestrator-stg?",
            "ns#x",
            "a/b",
            "..",
            "ns%2Fx",
            "a b",
            "ünïcode",
            "UPPER",
            "-x",
            "x-",
            "a.b",
            "ns\n",
            &"a".repeat(64),
        ] {
            let e = namespace(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn selectors() {
        for ok in [
            "",
            "task-id=T001",
            "a==b,c!=d",
            "env",
            "!env",
            "tier in (a, b),x notin (c)",
            "example.com/team=x",
            "a=",
        ] {
            selector(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "a=b?", "a#b", "a=b/c", "=x", "a b", "a=b,", "a in b", "a in (b", "a=%2F", "ü=1",
            "a=b\n", "a>>b",
        ] {
            assert_eq!(selector(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn values() {
        for ok in ["1", "500m", "2Gi", "0.5", "1e3", "+1"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "-1", "2GB", "lots", "1.2.3", "Gi", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        for ok in ["FOO", "_x", "a.b-c", "GIT_TOKEN"] {
            assert!(is_env_name(ok));
        }
        for bad in ["", "1X", "A=B", "a b", "é"] {
            assert!(!is_env_name(bad), "{bad}");
        }
        for ok in [
            "agentic-sdlc/opencode:0.1.0-dev",
            "ghcr.io/org/img:v1",
            "localhost:5000/x",
            "busybox",
            "img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_image(ok), "{ok}");
        }
        for bad in [
            "",
            "UPPER/img",
            "img:",
            "img:bad tag",
            "a//b",
            "img@sha256:xyz",
            "-img",
        ] {
            assert!(!is_image(bad), "{bad}");
        }
        label("app", "agent-orchestrator").unwrap();
        assert!(label("app", "x y").is_err());
        assert!(label("bad key", "x").is_err());
        assert!(label("a", &"x".repeat(64)).is_err());
    }
}
