//! What the kubelet resolves before it can start a container: volume sources
//! that must exist, environment from values, Secrets, ConfigMaps and the
//! downward API, and `$(VAR)` references in env, command and args.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::store::Store;

/// The first volume that cannot be mounted yet, with the kubelet's FailedMount message.
pub(crate) fn missing_volume(store: &Store, pod: &Pod) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let missing = if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or("");
            (s.optional != Some(true) && store.get::<Secret>(ns, name).is_none())
                .then(|| format!("secret {name:?} not found"))
        } else if let Some(c) = &v.config_map {
            (c.optional != Some(true) && store.get::<ConfigMap>(ns, &c.name).is_none())
                .then(|| format!("configmap {:?} not found", c.name))
        } else {
            None
        };
        if let Some(why) = missing {
            return Some(format!(
                "MountVolume.SetUp failed for volume {:?} : {why}",
                v.name
            ));
        }
    }
    None
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .chain(
            s.string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .collect()
}

fn configmap_data(c: &ConfigMap) -> BTreeMap<String, String> {
    c.data.clone().unwrap_or_default()
}

/// The downward API fields env vars may reference.
fn field_ref(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_entry = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = map_entry("metadata.labels['", m.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = map_entry("metadata.annotations['", m.annotations.as_ref()) {
        return Ok(v);
    }
    let v = match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    };
    Ok(v.unwrap_or_default())
}

/// The container's environment in order (after `base`, which the kubelet itself
/// sets), or the CreateContainerConfigError message.
pub(crate) fn resolve(
    store: &Store,
    pod: &Pod,
    c: &Container,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut env: Vec<(String, String)> = base;
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            match store.get::<Secret>(ns, &s.name) {
                Some(secret) => secret_data(secret),
                None if s.optional == Some(true) => continue,
                None => return Err(format!("secret {:?} not found", s.name)),
            }
        } else if let Some(cm) = &from.config_map_ref {
            match store.get::<ConfigMap>(ns, &cm.name) {
                Some(c) => configmap_data(c),
                None if cm.optional == Some(true) => continue,
                None => return Err(format!("configmap {:?} not found", cm.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set_var(&mut env, format!("{prefix}{k}"), v);
        }
    }
    for var in c.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env),
            Some(src) => {
                if let Some(r) = &src.secret_key_ref {
                    let secret = store.get::<Secret>(ns, &r.name);
                    match secret.map(secret_data).map(|d| d.get(&r.key).cloned()) {
                        Some(Some(v)) => v,
                        _ if r.optional == Some(true) => continue,
                        None => return Err(format!("secret {:?} not found", r.name)),
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    }
                } else if let Some(r) = &src.config_map_key_ref {
                    let cm = store.get::<ConfigMap>(ns, &r.name);
                    match cm.map(configmap_data).map(|d| d.get(&r.key).cloned()) {
                        Some(Some(v)) => v,
                        _ if r.optional == Some(true) => continue,
                        None => return Err(format!("configmap {:?} not found", r.name)),
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    }
                } else if let Some(f) = &src.field_ref {
                    field_ref(pod, &f.field_path)?
                } else {
                    // resourceFieldRef: no resources are accounted for here.
                    String::new()
                }
            }
        };
        set_var(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// A later definition of a name replaces the earlier one.
fn set_var(env: &mut Vec<(String, String)>, k: String, v: String) {
    env.retain(|(n, _)| *n != k);
    env.push((k, v));
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` escapes,
/// anything else is left as written.
pub(crate) fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[i..i + end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
