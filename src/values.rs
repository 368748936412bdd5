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
        // serde-saphyr's message is "error: line L column C: …" and an annotated snippet
        // of the file: kept on its lines (squashed onto one they are unreadable), with
        // one `error:` (the CLI prints it) and the file's name where it says <input>.
        let rendered = e.to_string();
        let rendered = rendered.trim_end();
        let rendered = rendered.strip_prefix("error: ").unwrap_or(rendered);
        Error::usage(format!(
            "invalid YAML in {origin}: {}",
            rendered.replace("<input>", origin)
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

/// The chart's schema, parsed once per process: spawn checks every -f file and every --set.
fn schema() -> &'static Value {
    static PARSED: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(SCHEMA).expect("the chart's schema is valid JSON")
    });
    &PARSED
}

/// Check user values (one `-f` file or one `--set`) against the chart's schema, as `helm
/// install` would, before anything is merged or sent: unknown keys at any depth (every object
/// in the schema is closed, the Kubernetes ones included), wrong types, enums, patterns and
/// lengths. Such a layer is partial, so a `null` (which deletes a default) passes, and keys the
/// schema requires are enforced only inside list items (lists replace, maps merge).
pub fn check_keys(origin: &str, values: &Value) -> Result<()> {
    check(origin, values, Mode::Overlay)
}

/// Check the final, merged values the way Helm does after coalescing (`required` everywhere).
pub fn check_final(values: &Value) -> Result<()> {
    check(
        "the merged values (chart, release, cluster ConfigMap, -f, --set)",
        values,
        Mode::Final,
    )
}

fn check(origin: &str, values: &Value, mode: Mode) -> Result<()> {
    let schema = schema();
    let mut found = Findings::default();
    validate(schema, schema, values, "", mode, &mut found);
    if !found.unknown.is_empty() {
        return Err(Error::usage(format!(
            "unknown value {} in {origin}: the chart has no such key (see charts/{CHART_NAME}/README.md)",
            found.unknown.join(", ")
        )));
    }
    match found.invalid.as_slice() {
        [] => Ok(()),
        problems => Err(Error::usage(format!(
            "invalid values in {origin}: {} (see charts/{CHART_NAME}/values.schema.json)",
            problems.join("; ")
        ))),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// One layer of user values: nulls delete defaults, maps are partial.
    Overlay,
    /// The coalesced values, or anything inside a list item (lists are never merged).
    Final,
}

#[derive(Default)]
struct Findings {
    unknown: Vec<String>,
    invalid: Vec<String>,
}

/// Every schema keyword `validate` enforces or deliberately ignores (annotations and
/// containers). A unit test fails when the schema uses any other, so none is skipped silently.
#[cfg(test)]
const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "oneOf",
    "anyOf",
    // annotations and the definitions container
    "$schema",
    "$id",
    "title",
    "description",
    "definitions",
];

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    // $ref chains are short (a definition pointing at another); a cycle would be a schema bug.
    for _ in 0..8 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r
                .strip_prefix("#/")
                .and_then(|p| root.pointer(&format!("/{p}")))
            {
                Some(target) => node = target,
                None => return &Value::Null,
            },
            None => break,
        }
    }
    node
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// The schema's patterns, compiled once per process: a check walks every string of the
/// values, and compiling a regex costs far more than matching it.
fn pattern(p: &str) -> std::result::Result<regex::Regex, regex::Error> {
    static COMPILED: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = compiled.get(p) {
        return Ok(re.clone());
    }
    let re = regex::Regex::new(p)?;
    compiled.insert(p.to_string(), re.clone());
    Ok(re)
}

fn validate(root: &Value, node: &Value, v: &Value, path: &str, mode: Mode, out: &mut Findings) {
    let node = resolve(root, node);
    let at = if path.is_empty() { "(top level)" } else { path };
    let mut bad = |msg: String| out.invalid.push(format!("{at}: {msg}"));

    if let Some(t) = node.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            bad(format!("{} is not of type {t}", show(v)));
            return;
        }
    }
    if let Some(allowed) = node.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        bad(format!(
            "{} is not one of {}",
            show(v),
            Value::Array(allowed.clone())
        ));
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = node.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            bad(if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("{} is shorter than {min} characters", show(v))
            });
        }
        if let Some(max) = node.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            bad(format!("{} is longer than {max} characters", show(v)));
        }
        if let Some(p) = node.get("pattern").and_then(Value::as_str) {
            match pattern(p) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => bad(format!("{} does not match {p}", show(v))),
                Err(e) => bad(format!("the schema's pattern {p} is invalid: {e}")),
            }
        }
    }
    if let (Some(min), Some(n)) = (node.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        bad(format!("{n} is less than {min}"));
    }
    for (key, need) in [("oneOf", Some(1)), ("anyOf", None)] {
        if let Some(branches) = node.get(key).and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|b| {
                    let mut f = Findings::default();
                    validate(root, b, v, path, mode, &mut f);
                    f.unknown.is_empty() && f.invalid.is_empty()
                })
                .count();
            let ok = match need {
                Some(n) => matching == n,
                None => matching > 0,
            };
            if !ok {
                out.invalid
                    .push(format!("{at}: {} is not an allowed value here", show(v)));
            }
        }
    }
    match v {
        Value::Object(m) => {
            if mode == Mode::Final
                && let Some(req) = node.get("required").and_then(Value::as_array)
            {
                for r in req.iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        out.invalid.push(format!("{at}: {r} is required"));
                    }
                }
            }
            let props = node.get("properties").and_then(Value::as_object);
            let extra = node.get("additionalProperties");
            for (k, child) in m {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let schema = props.and_then(|p| p.get(k));
                if schema.is_none() && extra == Some(&Value::Bool(false)) {
                    out.unknown.push(here);
                    continue;
                }
                // A null in user values deletes the default (Helm), whatever the key's type.
                if child.is_null() && mode == Mode::Overlay {
                    continue;
                }
                match (schema, extra) {
                    (Some(s), _) => validate(root, s, child, &here, mode, out),
                    (None, Some(s @ Value::Object(_))) => {
                        validate(root, s, child, &here, mode, out)
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(
                        root,
                        schema,
                        item,
                        &format!("{path}[{i}]"),
                        Mode::Final,
                        out,
                    );
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
    /// RuntimeClass (gVisor, Kata, …) for task pods; "" = the cluster default.
    #[serde(default)]
    pub runtime_class_name: String,
    #[serde(default)]
    pub priority_class_name: String,
    /// Kueue LocalQueue (label `kueue.x-k8s.io/queue-name`); "" = not queued.
    #[serde(default)]
    pub queue_name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub security_context: Option<PodSecurityContext>,
    pub container_security_context: Option<SecurityContext>,
    #[serde(default)]
    pub workspace: WorkspaceValues,
    /// The /home/agent and /tmp emptyDirs (same shape as `workspace`).
    #[serde(default)]
    pub home: WorkspaceValues,
    #[serde(default)]
    pub tmp: WorkspaceValues,
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
pub struct ForgeValues {
    /// github or gitlab (ASDO_FORGE); empty: guessed from the repository's host.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// REST API base URL (ASDO_FORGE_API_URL); empty: the forge's usual one for the host.
    #[serde(default)]
    pub api_url: String,
    /// owner/repository on the forge (ASDO_FORGE_PROJECT); empty: from the repository URL.
    #[serde(default)]
    pub project: String,
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
    pub base: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub git_author_name: String,
    #[serde(default)]
    pub git_author_email: String,
}

/// `agent.*`: how `asdo agent` runs OpenCode (env ASDO_PERMISSIONS, ASDO_IDLE_TIMEOUT, and
/// the budgets in `crate::contract`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentValues {
    /// approve, fail or wait: the answer to OpenCode's permission requests.
    #[serde(default = "AgentValues::default_permissions")]
    pub permissions: String,
    /// No activity for this long fails the task (`20m`, `90s`).
    #[serde(default = "AgentValues::default_idle_timeout")]
    pub idle_timeout: String,
    /// fail or wait: what happens when the model asks a question (ASDO_QUESTIONS).
    #[serde(default = "AgentValues::default_questions")]
    pub questions: String,
    /// Model turns per run; 0: no limit (ASDO_MAX_TURNS).
    #[serde(default = "AgentValues::default_max_turns")]
    pub max_turns: u64,
    /// Input plus output tokens per run; 0: no limit (ASDO_MAX_TOKENS).
    #[serde(default)]
    pub max_tokens: u64,
    /// US dollars per run, as OpenCode reports cost; 0: no limit (ASDO_MAX_COST). Kept as
    /// written (`--set agent.maxCost=2.50` is a string to Helm too) and rendered as the
    /// chart's `toString` renders it.
    #[serde(
        default = "AgentValues::default_max_cost",
        deserialize_with = "number_text"
    )]
    pub max_cost: String,
    /// One tool call may run this long (ASDO_TOOL_TIMEOUT).
    #[serde(default = "AgentValues::default_tool_timeout")]
    pub tool_timeout: String,
    /// A run that changed no file is a success (ASDO_ALLOW_NO_CHANGES), for review tasks.
    #[serde(default)]
    pub allow_no_changes: bool,
    /// Open a draft pull/merge request after the push (ASDO_PULL_REQUEST).
    #[serde(default)]
    pub pull_request: bool,
    #[serde(default)]
    pub forge: ForgeValues,
}

impl Default for AgentValues {
    fn default() -> AgentValues {
        AgentValues {
            permissions: AgentValues::default_permissions(),
            idle_timeout: AgentValues::default_idle_timeout(),
            questions: AgentValues::default_questions(),
            max_turns: AgentValues::default_max_turns(),
            max_tokens: 0,
            max_cost: AgentValues::default_max_cost(),
            tool_timeout: AgentValues::default_tool_timeout(),
            allow_no_changes: false,
            pull_request: false,
            forge: ForgeValues::default(),
        }
    }
}

/// A number or a string holding one, as text (`2.5`, `"2.50"`, `0`).
fn number_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

impl AgentValues {
    fn default_permissions() -> String {
        "approve".into()
    }

    fn default_idle_timeout() -> String {
        "20m".into()
    }

    fn default_questions() -> String {
        "fail".into()
    }

    fn default_max_turns() -> u64 {
        crate::contract::DEFAULT_MAX_TURNS
    }

    fn default_tool_timeout() -> String {
        "30m".into()
    }

    fn default_max_cost() -> String {
        "0".into()
    }

    /// The agent would refuse these at start (exit 10); refused here instead, before any call.
    fn check(&self) -> Result<()> {
        crate::contract::Policy::parse(&self.permissions).map_err(|_| {
            Error::usage(format!(
                "agent.permissions {:?}: expected approve, fail or wait",
                self.permissions
            ))
        })?;
        crate::contract::QuestionPolicy::parse(&self.questions).map_err(|_| {
            Error::usage(format!(
                "agent.questions {:?}: expected fail or wait",
                self.questions
            ))
        })?;
        for (name, value) in [
            ("idleTimeout", &self.idle_timeout),
            ("toolTimeout", &self.tool_timeout),
        ] {
            match crate::humantime::parse(value) {
                Ok(d) if !d.is_zero() => {}
                _ => {
                    return Err(Error::usage(format!(
                        "agent.{name} {value:?}: expected a duration longer than 0, e.g. 20m or 90s"
                    )));
                }
            }
        }
        crate::contract::parse_cost(&self.max_cost)
            .map_err(|e| Error::usage(format!("agent.maxCost {e}")))?;
        Ok(())
    }
}

impl Values {
    /// What a task pod needs of the merged values beyond the schema: a Secret name for
    /// each Secret turned on, and a forge token for `--pr`. Checked before any API call.
    pub fn check_for_spawn(&self) -> Result<()> {
        if self.pod.ssh_secret.enabled && self.pod.ssh_secret.name.is_empty() {
            return Err(Error::usage(
                "pod.sshSecret.enabled needs a Secret name: pass --ssh-secret NAME",
            ));
        }
        if self.pod.git_token_secret.enabled && self.pod.git_token_secret.name.is_empty() {
            return Err(Error::usage(
                "pod.gitTokenSecret.enabled needs a Secret name: --set pod.gitTokenSecret.name=NAME",
            ));
        }
        if self.agent.pull_request && !self.pod.git_token_secret.enabled {
            return Err(Error::usage(
                "agent.pullRequest (--pr) needs a forge token: --set pod.gitTokenSecret.enabled=true --set pod.gitTokenSecret.name=NAME",
            ));
        }
        Ok(())
    }

    /// The typed view of fully merged values, after the same schema check Helm makes.
    pub fn from_value(v: Value) -> Result<Values> {
        check_final(&v)?;
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

    /// Every keyword the schema uses is one `validate` knows: none is skipped silently.
    #[test]
    fn schema_uses_only_enforced_keywords() {
        fn walk(node: &Value, out: &mut std::collections::BTreeSet<String>) {
            match node {
                Value::Object(m) => {
                    for (k, v) in m {
                        match k.as_str() {
                            // Maps of names to schemas: the names are not keywords.
                            "properties" | "definitions" => v
                                .as_object()
                                .into_iter()
                                .flatten()
                                .for_each(|(_, s)| walk(s, out)),
                            // Values, not schemas.
                            "enum" | "required" | "type" | "description" | "pattern" => {
                                out.insert(k.clone());
                            }
                            _ => {
                                out.insert(k.clone());
                                walk(v, out);
                            }
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        let mut used = Default::default();
        walk(schema(), &mut used);
        let unknown: Vec<_> = used
            .iter()
            .filter(|k| !KEYWORDS.contains(&k.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "schema keywords asdo does not enforce: {unknown:?}"
        );
    }

    fn refused(yaml: &str) -> String {
        let v = parse_yaml("t.yaml", yaml).unwrap();
        match check_keys("t.yaml", &v) {
            Ok(()) => panic!("accepted: {yaml}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
        }
    }

    /// Typos inside the Kubernetes objects the chart passes through (H3): Helm refuses them
    /// now, and asdo must too instead of dropping them from the Pod.
    #[test]
    fn typos_inside_kubernetes_objects_are_refused() {
        for (yaml, key) in [
            (
                "pod:\n  securityContext:\n    runAsNonroot: true\n",
                "pod.securityContext.runAsNonroot",
            ),
            (
                "pod:\n  containerSecurityContext:\n    readOnlyRootFileSystem: true\n",
                "readOnlyRootFileSystem",
            ),
            (
                "pod:\n  securityContext:\n    seccompProfile:\n      typ: RuntimeDefault\n",
                "seccompProfile.typ",
            ),
            (
                "pod:\n  env:\n    - name: A\n      valuefrom: {secretKeyRef: {name: s, key: k}}\n",
                "pod.env[0].valuefrom",
            ),
            (
                "pod:\n  env:\n    - name: A\n      valueFrom: {secretKeyRef: {name: s, kee: k}}\n",
                "secretKeyRef.kee",
            ),
            (
                "pod:\n  extraVolumes:\n    - name: v\n      emptydir: {}\n",
                "pod.extraVolumes[0].emptydir",
            ),
            (
                "pod:\n  tolerations:\n    - {key: a, operater: Exists}\n",
                "operater",
            ),
            (
                "pod:\n  affinity:\n    nodeaffinity: {}\n",
                "pod.affinity.nodeaffinity",
            ),
            (
                "networkPolicy:\n  egress:\n    - to: [{ipblock: {cidr: 10.0.0.0/8}}]\n",
                "ipblock",
            ),
        ] {
            let e = refused(yaml);
            assert!(e.contains(key) && e.contains("no such key"), "{yaml}: {e}");
        }
        for (yaml, what) in [
            (
                "pod:\n  extraVolumeMounts:\n    - {name: v, mountPath: /v, readOnly: \"yes\"}\n",
                "readOnly",
            ),
            (
                "pod:\n  securityContext:\n    seccompProfile: {type: runtimedefault}\n",
                "seccompProfile.type",
            ),
            (
                "pod:\n  securityContext:\n    runAsUser: \"10001\"\n",
                "runAsUser",
            ),
            ("pod:\n  env:\n    - value: x\n", "name is required"),
            (
                "pod:\n  tolerations:\n    - {operator: exists}\n",
                "operator",
            ),
        ] {
            let e = refused(yaml);
            assert!(
                e.contains(what) && e.contains("invalid value"),
                "{yaml}: {e}"
            );
        }
    }

    /// Names Kubernetes would refuse and an empty store key (H4), and the new pod values (S4).
    #[test]
    fn names_and_store_keys_follow_the_schema() {
        for (yaml, what) in [
            ("serviceAccount:\n  name: My_SA\n", "serviceAccount.name"),
            ("fullnameOverride: My_Release\n", "fullnameOverride"),
            (
                "externalSecret:\n  remoteRef:\n    key: \"\"\n",
                "must not be empty",
            ),
            (
                "externalSecret:\n  extraData:\n    - {secretKey: \"a key\", remoteRef: {key: k}}\n",
                "secretKey",
            ),
            (
                "externalSecret:\n  extraData:\n    - {secretKey: k}\n",
                "remoteRef is required",
            ),
            ("pod:\n  runtimeClassName: gVisor\n", "pod.runtimeClassName"),
            (
                "pod:\n  priorityClassName: \"high prio\"\n",
                "pod.priorityClassName",
            ),
            ("pod:\n  home:\n    sizeLimit: 1GB\n", "pod.home.sizeLimit"),
            ("networkPolicy:\n  egressPreset: open\n", "egressPreset"),
        ] {
            let e = refused(yaml);
            assert!(e.contains(what), "{yaml}: {e}");
        }
        let ok = parse_yaml(
            "t",
            "pod:\n  runtimeClassName: gvisor\n  priorityClassName: agents-low\n  tmp: {sizeLimit: 512Mi}\n  activeDeadlineSeconds: null\n",
        )
        .unwrap();
        check_keys("t", &ok).unwrap();
        // null deletes a default in a layer, but the merged values are typed.
        let mut merged = defaults_for("dev").unwrap();
        merge(&mut merged, ok);
        let v = Values::from_value(merged).unwrap();
        assert_eq!(v.pod.runtime_class_name, "gvisor");
        assert_eq!(v.pod.active_deadline_seconds, None);
        let mut broken = defaults_for("dev").unwrap();
        broken["pod"]["image"]["repository"] = Value::Null;
        assert!(Values::from_value(broken).is_err());
    }

    /// Whatever the schema lets through reaches the Pod: the typed view keeps every key of
    /// the Kubernetes objects (k8s-openapi is built for the schema's Kubernetes version).
    #[test]
    fn kubernetes_objects_are_never_dropped() {
        let input = json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "fsGroupChangePolicy": "OnRootMismatch",
                "seLinuxOptions": {"level": "s0:c1"}, "appArmorProfile": {"type": "RuntimeDefault"},
                "supplementalGroups": [5], "sysctls": [{"name": "net.ipv4.ping_group_range", "value": "0 1"}],
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
            "containerSecurityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "procMount": "Default", "privileged": false, "runAsGroup": 1},
            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}},
                    {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
            "extraVolumes": [{"name": "p", "projected": {"defaultMode": 256, "sources": [
                {"secret": {"name": "s", "items": [{"key": "k", "path": "p"}]}},
                {"serviceAccountToken": {"audience": "git", "expirationSeconds": 600, "path": "t"}}]}},
                {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}}}],
            "extraVolumeMounts": [{"name": "p", "mountPath": "/p", "readOnly": true, "subPath": "x",
                                   "mountPropagation": "None"}],
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["task-id"],
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}}}]}},
        });
        let mut v = defaults_for("dev").unwrap();
        merge(&mut v, json!({"pod": input.clone()}));
        check_keys("t", &json!({"pod": input.clone()})).unwrap();
        let typed = Values::from_value(v).unwrap();
        let p = &typed.pod;
        let back = json!({
            "securityContext": p.security_context, "containerSecurityContext": p.container_security_context,
            "env": p.env, "extraVolumes": p.extra_volumes, "extraVolumeMounts": p.extra_volume_mounts,
            "tolerations": p.tolerations, "affinity": p.affinity,
        });
        // The chart's defaults merge under the input's securityContexts: compare the input's keys.
        for k in [
            "env",
            "extraVolumes",
            "extraVolumeMounts",
            "tolerations",
            "affinity",
        ] {
            assert_eq!(
                back[k], input[k],
                "{k} changed on its way through asdo's types"
            );
        }
        for k in ["securityContext", "containerSecurityContext"] {
            for (field, value) in input[k].as_object().unwrap() {
                assert_eq!(
                    &back[k][field], value,
                    "{k}.{field} changed on its way through asdo's types"
                );
            }
        }
    }

    #[test]
    fn yaml_errors_name_file_and_line() {
        let e = parse_yaml("my.yaml", "pod:\n  image: [unclosed\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("my.yaml"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        // The annotated snippet keeps its lines; one `error:` (the CLI's).
        assert!(msg.contains('\n') && msg.contains("my.yaml:2:"), "{msg}");
        assert!(!msg.contains("error"), "{msg}");
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
