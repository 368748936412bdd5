//! A task's OpenCode server, reached from this machine: the running pod, its
//! `opencode` port forwarded to 127.0.0.1, the server password, and the session the
//! agent drives. Shared by `asdo attach`, `asdo send` (whose talk is in `crate::send`) and
//! the web page.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};

use crate::contract::{OPENCODE_PORT, OPENCODE_PORT_NAME, PASSWORD_ENV};
use crate::error::{Error, Result};
use crate::opencode;
use crate::portforward::{self, Forward};
use crate::task::{self, CONTAINER};
use crate::taskpod::{Phase, TaskPod};

/// How long to wait for the server behind the forward to answer (it starts with the pod).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The password given on this side, first match wins: `--password-file`, then
/// `OPENCODE_SERVER_PASSWORD` in asdo's own environment; None means "read the pod's
/// Secret". The file is read now, so bad input fails before any call.
pub fn password_override(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Error::usage(format!("cannot read --password-file {}: {e}", f.display()))
        })?;
        let pw = text.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(Error::usage(format!(
                "--password-file {} is empty",
                f.display()
            )));
        }
        return Ok(Some(pw));
    }
    Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
}

/// A reachable task server.
pub struct Remote {
    pub task: String,
    pub pod: String,
    pub namespace: String,
    /// The pod's port the server listens on.
    pub port: u16,
    pub forward: Forward,
    pub client: opencode::Client,
    /// The agent's session, from its log; None before the agent has opened one.
    pub session: Option<String>,
    /// Where the password came from, for messages (never the value).
    pub password_from: String,
    /// Kept for `opencode attach`, which gets it through its environment.
    password: String,
}

impl Remote {
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The session, or a message saying why there is none yet.
    pub fn require_session(&self) -> Result<&str> {
        self.session.as_deref().ok_or_else(|| {
            Error::other(format!(
                "task {} has no OpenCode session yet (its log has no `{}{}…` line): wait until the agent has started it (`asdo logs {} -n {}`)",
                self.task,
                crate::marker::PREFIX,
                crate::marker::SESSION.trim_end(),
                self.task,
                self.namespace
            ))
        })
    }
}

/// The one line for a task whose pod is not running.
pub fn not_running(task: &str, ns: &str, phase: Phase) -> Error {
    let why = match phase {
        Phase::Queued | Phase::Pending => {
            "not running yet: its OpenCode server is not up; follow it with"
        }
        _ => "finished: its OpenCode server is gone; read what it did with",
    };
    Error::other(format!(
        "task {task} is {why} `asdo logs {task} -n {ns}` (pod phase {})",
        phase.api_phase()
    ))
}

/// Finds the running pod, forwards its OpenCode port to 127.0.0.1:`local_port` and
/// checks that the server answers with the password.
pub async fn open(
    client: &Client,
    ns: &str,
    task_or_pod: &str,
    password: Option<String>,
    local_port: u16,
) -> Result<Remote> {
    let name = task::pod_name_for(task_or_pod)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = crate::cluster::get_pod(&api, &name, ns)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no pod {name} in namespace {ns}; see the task pods with `asdo list -n {ns}`"
            ))
        })?;
    let task = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(task::LABEL_TASK_ID))
        .cloned()
        .unwrap_or_else(|| task_or_pod.to_string());
    let phase = TaskPod(&pod).phase();
    if phase != Phase::Running {
        return Err(not_running(&task, ns, phase));
    }
    let port = server_port(&pod);
    let (password, password_from) = match password {
        Some(p) => (p, format!("--password-file or {PASSWORD_ENV}")),
        None => secret_password(client, ns, &pod).await?,
    };
    let forward = portforward::start(api.clone(), &name, port, local_port).await?;
    let oc = opencode::Client::new(forward.authority(), Some(&password));
    wait_ready(&oc, &forward, &task, port).await?;
    let session = crate::cluster::agent_session(&api, &name, &task).await?;
    Ok(Remote {
        task,
        pod: name,
        namespace: ns.to_string(),
        port,
        forward,
        client: oc,
        session,
        password_from,
        password,
    })
}

/// The container port named `opencode`, else the agent's default port.
pub fn server_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == CONTAINER)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(OPENCODE_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(OPENCODE_PORT)
}

/// The password from the Secret the pod's `OPENCODE_SERVER_PASSWORD` references.
async fn secret_password(client: &Client, ns: &str, pod: &Pod) -> Result<(String, String)> {
    let reference = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == PASSWORD_ENV)
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone());
    let Some(r) = reference else {
        return Err(Error::other(format!(
            "the pod does not take {PASSWORD_ENV} from a Secret; pass --password-file or set {PASSWORD_ENV}"
        )));
    };
    // The name comes from the pod's spec: data, checked before it becomes a URL path.
    crate::validate::object_name("Secret", &r.name)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let what = format!("read Secret {} in namespace {ns}", r.name);
    let secret = crate::cluster::bounded(&what, secrets.get(&r.name))
        .await
        .map_err(|e| match e {
            Error::Api(m) if m.contains("forbidden") => Error::Api(format!(
                "{m}; or pass --password-file / set {PASSWORD_ENV} if you may not read it"
            )),
            other => other,
        })?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| secret.string_data.as_ref()?.get(&r.key).cloned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::other(format!(
                "Secret {ns}/{} has no key {:?}; check the chart's serverPassword settings",
                r.name, r.key
            ))
        })?;
    Ok((value, format!("Secret {ns}/{} key {}", r.name, r.key)))
}

/// The server starts with the pod: retry until it answers, but a refused password is final.
async fn wait_ready(oc: &opencode::Client, forward: &Forward, task: &str, port: u16) -> Result<()> {
    let end = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut delay = Duration::from_millis(200);
    loop {
        let last = match oc.healthy().await {
            Ok(true) => return Ok(()),
            Ok(false) => "it says it is not healthy".to_string(),
            Err(opencode::Error::Status { status: 401, .. }) => {
                return Err(Error::other(format!(
                    "the OpenCode server of task {task} refused the password (HTTP 401); pass the right one with --password-file or {PASSWORD_ENV}"
                )));
            }
            Err(e @ opencode::Error::TooBig { .. }) => {
                return Err(Error::other(format!("task {task}: {e}")));
            }
            Err(e) => e.to_string(),
        };
        // A forward the API server refuses (RBAC) never starts working: say so now.
        if let Some(refused) = forward.refused() {
            return Err(Error::Api(refused.to_string()));
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::other(format!(
                "the OpenCode server of task {task} (pod port {port}) did not answer within {}s ({last}); see `asdo logs {task}`",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_names_the_phase_and_asdo_logs() {
        let e = not_running("T1", "ns", Phase::Succeeded).to_string();
        assert!(
            e.contains("phase Succeeded") && e.contains("asdo logs T1 -n ns"),
            "{e}"
        );
        assert_eq!(not_running("T1", "ns", Phase::Pending).exit_code(), 1);
    }

    #[test]
    fn server_port_is_the_named_port_or_4096() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-t1"},
            "spec": {"containers": [{"name": "agent", "ports": [{"name": "opencode", "containerPort": 5000}]}]}
        }))
        .unwrap();
        assert_eq!(server_port(&pod), 5000);
        assert_eq!(server_port(&Pod::default()), OPENCODE_PORT);
    }
}
