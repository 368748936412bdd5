//! Chart values: the compiled-in chart and release defaults, Helm-style merging,
//! `--set` parsing, and the typed view the renderer reads. Pure: callers do the I/O.
//!
//! Order, lowest first, as Helm applies it: chart `values.yaml` < release
//! `values.yaml` (under the subchart key) < the cluster's ConfigMap < `-f` files < `--set`.

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The chart, compiled in so `spawn --dry-run` works anywhere and matches `helm template`.
pub const CHART_VALUES: &str = include_str!("../charts/agentic-sdlc-orchestrator/values.yaml");
pub const CHART_NAME: &str = "agentic-sdlc-orchestrator";
/// Must equal the chart's appVersion; a unit test holds them together.
pub const APP_VERSION: &str = "0.1.0";
const CHART_YAML: &str = include_str!("../charts/agentic-sdlc-orchestrator/Chart.yaml");

/// The per-environment releases, compiled in.
pub const RELEASES: &[(&str, &str)] = &[
    (
        "dev",
        include_str!("../releases/agentic-sdlc-orchestrator-dev/values.yaml"),
    ),
    (
        "stg",
        include_str!("../releases/agentic-sdlc-orchestrator-stg/values.yaml"),
    ),
    (
        "prod",
        include_str!("../releases/agentic-sdlc-orchestrator-prod/values.yaml"),
    ),
];

/// The chart's JSON schema: Helm refuses values it does not allow, so asdo does too.
const SCHEMA: &str = include_str!("../charts/agentic-sdlc-orchestrator/values.schema.json");

/// Key of the ConfigMap data entry the chart publishes with its effective values.
pub const CONFIGMAP_KEY: &str = "values.yaml";

pub fn environments() -> Vec<&'static str> {
    RELEASES.iter().map(|(e, _)| *e).collect()
}

/// Parse YAML text into a JSON value; `origin` names the file in the error.
pub fn parse_yaml(origin: &str, text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| {
        Error::usage(format!(
            "invalid YAML in {origin}: {}",
            e.to_string().replace('\n', " ")
        ))
    })?;
    match v {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(v),
        _ => Err(Error::usage(format!(
            "invalid values in {origin}: the top level must be a mapping of keys"
        ))),
    }
}

/// Chart defaults merged with the release of `environment`.
pub fn defaults_for(environment: &str) -> Result<Value> {
    let mut values = parse_yaml("the chart's values.yaml", CHART_VALUES)?;
    let (_, release) = RELEASES
        .iter()
        .find(|(e, _)| *e == environment)
        .ok_or_else(|| {
            Error::usage(format!(
                "unknown environment {environment:?}: known environments are {}",
                environments().join(", ")
            ))
        })?;
    let release = parse_yaml(
        &format!("releases/{CHART_NAME}-{environment}/values.yaml"),
        release,
    )?;
    if let Some(sub) = release.get(CHART_NAME) {
        merge(&mut values, sub.clone());
    }
    Ok(values)
}

/// Refuse keys the chart's schema does not allow (`additionalProperties: false`), as `helm
/// install` would, so a typo such as `pod.imagee.tag` is an error rather than silently ignored.
/// Types and formats are left to the typed view and the renderer.
pub fn check_keys(origin: &str, values: &Value) -> Result<()> {
    // Parsed once per process: spawn checks every -f file and every --set against it.
    static PARSED: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(SCHEMA).expect("the chart's schema is valid JSON")
    });
    let schema = &*PARSED;
    let mut unknown = vec![];
    unknown_keys(schema, schema, values, "", &mut unknown);
    match unknown.as_slice() {
        [] => Ok(()),
        keys => Err(Error::usage(format!(
            "unknown value {} in {origin}: the chart has no such key (see charts/{CHART_NAME}/README.md)",
            keys.join(", ")
        ))),
    }
}

fn unknown_keys(root: &Value, node: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(r) => match r
            .strip_prefix("#/")
            .and_then(|p| root.pointer(&format!("/{p}")))
        {
            Some(target) => target,
            None => return,
        },
        None => node,
    };
    match v {
        Value::Object(m) => {
            let props = node.get("properties").and_then(Value::as_object);
            let extra = node.get("additionalProperties");
            for (k, child) in m {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(schema) = props.and_then(|p| p.get(k)) {
                    unknown_keys(root, schema, child, &here, out);
                } else if extra == Some(&Value::Bool(false)) {
                    out.push(here);
                } else if let Some(schema @ Value::Object(_)) = extra {
                    unknown_keys(root, schema, child, &here, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_keys(root, schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Values files are written for the chart itself; a file written for a release
/// (everything under the subchart key) is accepted too, so one file serves both.
pub fn unwrap_subchart(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.len() == 1 && m.contains_key(CHART_NAME) => {
            m.remove(CHART_NAME).unwrap_or_default()
        }
        other => other,
    }
}

/// Helm's coalescing of user values onto defaults: maps merge key by key, anything else is
/// replaced, and `null` deletes the default.
pub fn merge(base: &mut Value, overlay: Value) {
    merge_inner(base, overlay, false);
}

/// Stacking user-supplied values (`-f` files, then `--set`) before they meet the defaults:
/// like `merge`, but a `null` is kept, so it can still delete a default later (Helm's order).
pub fn layer(base: &mut Value, overlay: Value) {
    merge_inner(base, overlay, true);
}

fn merge_inner(base: &mut Value, overlay: Value, keep_nulls: bool) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() && !keep_nulls {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge_inner(existing, v, keep_nulls);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Apply one `--set a.b.c=value` the way Helm does: `\.` escapes a dot in a key,
/// `{a,b}` is a list, and true/false/null/integers are typed.
pub fn apply_set(values: &mut Value, expr: &str) -> Result<()> {
    let (path, raw) = expr.split_once('=').ok_or_else(|| {
        Error::usage(format!(
            "invalid --set {expr:?}: expected key=value, e.g. --set pod.image.tag=1.2.3"
        ))
    })?;
    let keys = split_key_path(path);
    if keys.iter().any(|k| k.is_empty()) {
        return Err(Error::usage(format!(
            "invalid --set {expr:?}: empty key in {path:?}"
        )));
    }
    let mut overlay = typed_scalar_or_list(raw);
    for k in keys.into_iter().rev() {
        let mut m = Map::new();
        m.insert(k, overlay);
        overlay = Value::Object(m);
    }
    layer(values, overlay);
    Ok(())
}

fn split_key_path(path: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                keys.last_mut().unwrap().push('.');
                chars.next();
            }
            '.' => keys.push(String::new()),
            c => keys.last_mut().unwrap().push(c),
        }
    }
    keys
}

fn typed_scalar_or_list(raw: &str) -> Value {
    if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        if inner.is_empty() {
            return Value::Array(vec![]);
        }
        return Value::Array(inner.split(',').map(typed_scalar).collect());
    }
    typed_scalar(raw)
}

fn typed_scalar(raw: &str) -> Value {
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => match raw.parse::<i64>() {
            // Helm keeps "007" a string: only canonical integers become numbers.
            Ok(n) if n.to_string() == raw => Value::from(n),
            _ => Value::String(raw.to_string()),
        },
    }
}

/// The typed view of the values the renderer needs. Unknown keys are ignored
/// (the chart has keys only its own templates use).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    #[serde(default)]
    pub name_override: String,
    #[serde(default)]
    pub fullname_override: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub global: Global,
    #[serde(default)]
    pub namespace: NamespaceValues,
    #[serde(default)]
    pub service_account: ServiceAccountValues,
    #[serde(default)]
    pub external_secret: ExternalSecretValues,
    pub pod: PodValues,
    #[serde(default)]
    pub task: TaskDefaults,
    #[serde(default)]
    pub agent: AgentValues,
    /// `spawn --image`: a full image reference that replaces repository:tag.
    #[serde(skip)]
    pub image_override: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Global {
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NamespaceValues {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceAccountValues {
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExternalSecretValues {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodValues {
    pub image: ImageValues,
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub active_deadline_seconds: Option<i64>,
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub security_context: Option<PodSecurityContext>,
    pub container_security_context: Option<SecurityContext>,
    #[serde(default)]
    pub workspace: WorkspaceValues,
    #[serde(default)]
    pub ssh_secret: SshSecretValues,
    #[serde(default)]
    pub git_token_secret: GitTokenSecretValues,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub extra_volumes: Vec<Volume>,
    #[serde(default)]
    pub extra_volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageValues {
    pub repository: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub pull_policy: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceValues {
    pub size_limit: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSecretValues {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mount_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitTokenSecretValues {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefaults {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub context_dir: String,
    #[serde(default)]
    pub spec_dir: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub git_author_name: String,
    #[serde(default)]
    pub git_author_email: String,
}

/// `agent.*`: how `asdo agent` runs OpenCode (env ASDO_PERMISSIONS, ASDO_IDLE_TIMEOUT).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentValues {
    /// approve, fail or wait: the answer to OpenCode's permission requests.
    #[serde(default = "AgentValues::default_permissions")]
    pub permissions: String,
    /// No activity for this long fails the task (`20m`, `90s`).
    #[serde(default = "AgentValues::default_idle_timeout")]
    pub idle_timeout: String,
}

impl Default for AgentValues {
    fn default() -> AgentValues {
        AgentValues {
            permissions: AgentValues::default_permissions(),
            idle_timeout: AgentValues::default_idle_timeout(),
        }
    }
}

impl AgentValues {
    fn default_permissions() -> String {
        "approve".into()
    }

    fn default_idle_timeout() -> String {
        "20m".into()
    }

    /// The agent would refuse these at start (exit 10); refused here instead, before any call.
    fn check(&self) -> Result<()> {
        crate::agent::permissions::Policy::parse(&self.permissions).map_err(|_| {
            Error::usage(format!(
                "agent.permissions {:?}: expected approve, fail or wait",
                self.permissions
            ))
        })?;
        match crate::humantime::parse(&self.idle_timeout) {
            Ok(d) if !d.is_zero() => Ok(()),
            _ => Err(Error::usage(format!(
                "agent.idleTimeout {:?}: expected a duration longer than 0, e.g. 20m or 90s",
                self.idle_timeout
            ))),
        }
    }
}

impl Values {
    pub fn from_value(v: Value) -> Result<Values> {
        let values: Values = serde_json::from_value(v).map_err(|e| {
            Error::usage(format!(
                "invalid values: {e}; compare with charts/{CHART_NAME}/values.yaml"
            ))
        })?;
        values.agent.check()?;
        Ok(values)
    }

    /// Helm's `name` helper.
    pub fn chart_name(&self) -> String {
        let n = if self.name_override.is_empty() {
            CHART_NAME
        } else {
            &self.name_override
        };
        trunc63(n)
    }

    /// Helm's `fullname` helper for release `release`.
    pub fn fullname(&self, release: &str) -> String {
        if !self.fullname_override.is_empty() {
            return trunc63(&self.fullname_override);
        }
        let name = self.chart_name();
        if release.contains(&name) {
            trunc63(release)
        } else {
            trunc63(&format!("{release}-{name}"))
        }
    }

    pub fn service_account_name(&self, release: &str) -> String {
        match (&self.service_account.name, self.service_account.create) {
            (n, _) if !n.is_empty() => n.clone(),
            (_, true) => self.fullname(release),
            (_, false) => "default".to_string(),
        }
    }

    /// The Secret holding `server-password` (materialised by the ExternalSecret).
    pub fn server_password_secret(&self, release: &str) -> String {
        if self.external_secret.name.is_empty() {
            format!("{}-server-password", self.fullname(release))
        } else {
            self.external_secret.name.clone()
        }
    }

    /// The ConfigMap the chart publishes its effective values in.
    pub fn config_map_name(&self, release: &str) -> String {
        format!("{}-config", self.fullname(release))
    }

    pub fn image(&self) -> String {
        if let Some(image) = &self.image_override {
            return image.clone();
        }
        let tag = if self.pod.image.tag.is_empty() {
            APP_VERSION
        } else {
            &self.pod.image.tag
        };
        format!("{}:{tag}", self.pod.image.repository)
    }
}

/// Helm's `trunc 63 | trimSuffix "-"`.
fn trunc63(s: &str) -> String {
    let cut: String = s.chars().take(63).collect();
    cut.strip_suffix('-').map(str::to_string).unwrap_or(cut)
}

/// The appVersion line of the compiled-in Chart.yaml (for the test that keeps APP_VERSION honest).
pub fn chart_app_version() -> Option<String> {
    CHART_YAML.lines().find_map(|l| {
        l.strip_prefix("appVersion:")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_version_matches_chart() {
        assert_eq!(chart_app_version().as_deref(), Some(APP_VERSION));
    }

    #[test]
    fn every_release_parses_into_values() {
        for env in environments() {
            let v = Values::from_value(defaults_for(env).unwrap()).unwrap();
            assert_eq!(v.environment, env);
            assert_eq!(v.namespace.name, format!("agent-orchestrator-{env}"));
            assert_eq!(
                v.fullname("ignored"),
                format!("agentic-sdlc-orchestrator-{env}")
            );
        }
        let e = defaults_for("qa").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("dev, stg, prod"), "{e}");
    }

    #[test]
    fn release_resources_override_chart() {
        let v = Values::from_value(defaults_for("prod").unwrap()).unwrap();
        let limits = v.pod.resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["cpu"].0, "4");
        assert_eq!(limits["memory"].0, "8Gi");
        assert_eq!(v.image(), "agentic-sdlc/opencode:0.1.0");
    }

    #[test]
    fn merge_is_helm_coalesce() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(&mut base, json!({"a": {"c": [3], "e": true}, "d": null}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [3], "e": true}}));
    }

    #[test]
    fn set_expressions() {
        let mut v = json!({});
        apply_set(&mut v, "pod.image.tag=1.2.3").unwrap();
        apply_set(&mut v, "pod.activeDeadlineSeconds=60").unwrap();
        apply_set(&mut v, "pod.annotations.example\\.com/team=ai").unwrap();
        apply_set(&mut v, "pod.command={sh,-c,echo hi}").unwrap();
        apply_set(&mut v, "serviceAccount.create=false").unwrap();
        apply_set(&mut v, "pod.image.repository=007").unwrap();
        assert_eq!(
            v,
            json!({
                "pod": {"image": {"tag": "1.2.3", "repository": "007"}, "activeDeadlineSeconds": 60,
                        "annotations": {"example.com/team": "ai"}, "command": ["sh", "-c", "echo hi"]},
                "serviceAccount": {"create": false}
            })
        );
        assert!(apply_set(&mut v, "novalue").is_err());
        assert!(apply_set(&mut v, "a..b=1").is_err());
    }

    #[test]
    fn null_from_user_values_deletes_a_default() {
        let mut user = json!({});
        layer(&mut user, json!({"pod": {"activeDeadlineSeconds": 60}}));
        apply_set(&mut user, "pod.activeDeadlineSeconds=null").unwrap();
        assert_eq!(user, json!({"pod": {"activeDeadlineSeconds": null}}));
        let mut defaults = json!({"pod": {"activeDeadlineSeconds": 3600, "x": 1}});
        merge(&mut defaults, user);
        assert_eq!(defaults, json!({"pod": {"x": 1}}));
    }

    #[test]
    fn unknown_keys_are_refused_like_helm() {
        let ok = parse_yaml("t", "pod:\n  image:\n    tag: x\n  annotations:\n    any/key: v\n  env:\n    - name: A\n      value: b\nglobal:\n  whatever: 1\n").unwrap();
        check_keys("t", &ok).unwrap();
        let bad = parse_yaml("my.yaml", "pod:\n  imagee:\n    tag: x\ntask:\n  idd: T1\n").unwrap();
        let e = check_keys("my.yaml", &bad).unwrap_err().to_string();
        assert!(
            e.contains("pod.imagee") && e.contains("task.idd") && e.contains("my.yaml"),
            "{e}"
        );
        // Every compiled-in values file passes its own schema.
        for env in environments() {
            check_keys(env, &defaults_for(env).unwrap()).unwrap();
        }
    }

    #[test]
    fn yaml_errors_name_file_and_line() {
        let e = parse_yaml("my.yaml", "pod:\n  image: [unclosed\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("my.yaml"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(parse_yaml("x", "- a\n- b\n").is_err());
    }

    #[test]
    fn release_file_shape_is_unwrapped() {
        let v = unwrap_subchart(json!({CHART_NAME: {"pod": {"args": ["x"]}}}));
        assert_eq!(v, json!({"pod": {"args": ["x"]}}));
    }

    #[test]
    fn fullname_follows_helm() {
        let mut v = Values::from_value(parse_yaml("chart", CHART_VALUES).unwrap()).unwrap();
        assert_eq!(
            v.fullname("agentic-sdlc-orchestrator-dev"),
            "agentic-sdlc-orchestrator-dev"
        );
        assert_eq!(v.fullname("r"), "r-agentic-sdlc-orchestrator");
        v.name_override = "x".into();
        assert_eq!(v.fullname("r"), "r-x");
        assert_eq!(v.server_password_secret("r"), "r-x-server-password");
        assert_eq!(v.service_account_name("r"), "r-x");
    }
}
