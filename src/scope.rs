//! Where a command works: the environment, Helm release and namespace, resolved from the
//! global flags and checked before any API call. Below `cli/` so engines (results, spawn)
//! can take a `Scope` without reaching back up into the clap layer.

use crate::cluster::ClusterArgs;
use crate::error::{Error, Result};
use crate::values;

/// The environment, release and namespace a command works in, resolved and checked.
#[derive(Debug, Clone)]
pub struct Scope {
    pub environment: String,
    pub release: String,
    pub namespace: String,
    /// Chart + release defaults for this environment.
    pub defaults: serde_json::Value,
    pub cluster: ClusterArgs,
}

impl Scope {
    /// Namespace precedence: -n / $NAMESPACE, then the release's namespace.name, then agent-orchestrator.
    pub fn resolve(
        environment: &str,
        release_name: &str,
        namespace: Option<&str>,
        cluster: ClusterArgs,
    ) -> Result<Scope> {
        let defaults = values::defaults_for(environment)?;
        let release_ns = defaults
            .pointer("/namespace/name")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        let resolved = match (namespace, release_ns) {
            // An empty -n is a mistake (an unset shell variable), not "the default".
            (Some(""), _) => {
                return Err(Error::usage(
                    "empty namespace (-n/--namespace or $NAMESPACE): pass a namespace name or leave it out for the environment's",
                ));
            }
            (Some(ns), _) => ns.to_string(),
            (_, Some(ns)) => ns.to_string(),
            _ => "agent-orchestrator".to_string(),
        };
        // Before anything else: the namespace is formatted into every request path.
        crate::validate::namespace(&resolved)?;
        crate::error::set_scope_flags(match (namespace, environment) {
            (Some(ns), _) => format!(" -n {ns}"),
            (None, "dev") => String::new(),
            (None, env) => format!(" -e {env}"),
        });
        let release = format!("{release_name}-{environment}");
        if !crate::validate::is_dns_subdomain(&release) || release.len() > 53 {
            return Err(Error::usage(format!(
                "invalid release {release:?} (--release-name/RELEASE_NAME + environment): Helm release names are lowercase letters, digits, '-' and '.', at most 53 characters"
            )));
        }
        Ok(Scope {
            environment: environment.to_string(),
            release,
            namespace: resolved,
            defaults,
            cluster,
        })
    }
}
