//! A task's OpenCode server, reached from this machine: the running task, where its
//! server answers (a pod's `opencode` port forwarded to 127.0.0.1, or a local task's own
//! 127.0.0.1 port), the server password, and the session the agent drives. Shared by
//! `asdo attach`, `asdo send` (whose talk is in `crate::send`) and the web page; the
//! cluster's opener is here, the local runtime's in `runtime::local::remote`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::LogParams;
use kube::{Api, Client};

use crate::contract::{OPENCODE_PORT, OPENCODE_PORT_NAME, PASSWORD_ENV};
use crate::error::{Error, Result};
use crate::opencode;
use crate::portforward::{self, Forward};
use crate::task::{self, CONTAINER};
use crate::taskpod::{Phase, TaskPod};

/// How long to wait for the task's server to answer (it starts with the task).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The password given on this side, first match wins: `--password-file`, then
/// `OPENCODE_SERVER_PASSWORD` in asdo's own environment; None means "the runtime's own":
/// the pod's Secret, or a local task's 0600 password file. The file is read now, so bad
/// input fails before any call.
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

/// Where a task's server answers on this machine.
pub enum Endpoint {
    /// A port-forward to the pod (the cluster): open while this value lives.
    Forward(Forward),
    /// The task's own server on 127.0.0.1 (a local task): nothing to keep open.
    Direct(std::net::SocketAddr),
}

impl Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// `127.0.0.1:<port>`, what the OpenCode client takes.
    pub fn authority(&self) -> String {
        match self {
            Endpoint::Forward(f) => f.authority(),
            Endpoint::Direct(a) => a.to_string(),
        }
    }

    /// Whether this is a port-forward (words for messages: "the forward is closed").
    pub fn is_forward(&self) -> bool {
        matches!(self, Endpoint::Forward(_))
    }
}

/// A reachable task server.
pub struct Remote {
    pub task: String,
    pub pod: String,
    /// The task's server port: the pod's (behind the forward), or the local task's.
    pub port: u16,
    pub endpoint: Endpoint,
    /// `asdo logs <task> …` as the user would type it for this runtime, for messages.
    pub logs: String,
    pub client: opencode::Client,
    /// The agent's session, from its log; None before the agent has opened one.
    pub session: Option<String>,
    /// Where the password came from, for messages (never the value).
    pub password_from: String,
    /// Kept for `opencode attach`, which gets it through its environment.
    pub(crate) password: String,
}

impl Remote {
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The session, or a message saying why there is none yet.
    pub fn require_session(&self) -> Result<&str> {
        self.session.as_deref().ok_or_else(|| {
            Error::other(format!(
                "task {} has no OpenCode session yet (its log has no `{}{}…` line): wait until the agent has started it (`{}`)",
                self.task,
                crate::marker::PREFIX,
                crate::marker::SESSION.trim_end(),
                self.logs
            ))
        })
    }
}

/// The one line for a task whose pod is not running; `logs` is `asdo logs <task> …` for
/// its runtime.
pub fn not_running(task: &str, logs: &str, phase: Phase) -> Error {
    let why = match phase {
        Phase::Queued | Phase::Pending => {
            "not running yet: its OpenCode server is not up; follow it with"
        }
        _ => "finished: its OpenCode server is gone; read what it did with",
    };
    Error::other(format!(
        "task {task} is {why} `{logs}` (pod phase {})",
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
    let logs = format!("asdo logs {task} -n {ns}");
    let phase = TaskPod(&pod).phase();
    if phase != Phase::Running {
        return Err(not_running(&task, &logs, phase));
    }
    let port = server_port(&pod);
    let (password, password_from) = match password {
        Some(p) => (p, format!("--password-file or {PASSWORD_ENV}")),
        None => secret_password(client, ns, &pod).await?,
    };
    let forward = portforward::start(api.clone(), &name, port, local_port).await?;
    let oc = opencode::Client::new(forward.authority(), Some(&password));
    // A forward the API server refuses (RBAC) never starts working: say so at once.
    wait_ready(&oc, &task, &format!("pod port {port}"), &logs, || {
        forward.refused().map(|r| Error::Api(r.to_string()))
    })
    .await?;
    let session = session_from_log(&api, &name, &task, &logs).await?;
    Ok(Remote {
        task,
        pod: name,
        port,
        endpoint: Endpoint::Forward(forward),
        logs,
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

/// The server starts with the task: retry until it answers, but a refused password is
/// final, and so is what `give_up` reports (a refused forward, a local task that ended).
/// `where_` names the port for the message.
pub(crate) async fn wait_ready(
    oc: &opencode::Client,
    task: &str,
    where_: &str,
    logs: &str,
    give_up: impl Fn() -> Option<Error>,
) -> Result<()> {
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
        if let Some(e) = give_up() {
            return Err(e);
        }
        if tokio::time::Instant::now() >= end {
            return Err(Error::other(format!(
                "the OpenCode server of task {task} ({where_}) did not answer within {}s ({last}); see `{logs}`",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The last session the agent announced in the first MiB of its pod's log.
async fn session_from_log(
    api: &Api<Pod>,
    pod: &str,
    task: &str,
    logs: &str,
) -> Result<Option<String>> {
    let lp = LogParams {
        container: Some(CONTAINER.into()),
        limit_bytes: Some(crate::cluster::LOG_TAIL_MAX as i64),
        ..Default::default()
    };
    let bytes = crate::cluster::log_bytes(
        api,
        pod,
        &lp,
        crate::cluster::Keep::First(crate::cluster::LOG_TAIL_MAX),
    )
    .await?;
    session_in_log(&String::from_utf8_lossy(&bytes), task, logs)
}

/// The last session the agent announced in `log` (its lines without timestamps; the
/// first MiB is enough, the agent announces it early). The log is data anyone with a
/// shell in the task (or a model's tool) can write to, so an announced id is used only
/// when it has OpenCode's shape ([`crate::marker::is_session_id`]); a forged one is
/// refused, never skipped for an older one. Both runtimes read it here.
pub(crate) fn session_in_log(log: &str, task: &str, logs: &str) -> Result<Option<String>> {
    match crate::marker::session_announcement(log) {
        None => Ok(None),
        Some(Ok(id)) => Ok(Some(id)),
        Some(Err(forged)) => Err(Error::other(format!(
            "task {task}: its log names the session {forged:?}, which is not an OpenCode session id (ses_ and 1-{} letters or digits); refusing to use it (see `{logs}`)",
            crate::marker::SESSION_ID_MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_names_the_phase_and_asdo_logs() {
        let e = not_running("T1", "asdo logs T1 -n ns", Phase::Succeeded).to_string();
        assert!(
            e.contains("phase Succeeded") && e.contains("asdo logs T1 -n ns"),
            "{e}"
        );
        assert_eq!(
            not_running("T1", "asdo logs T1 -n ns", Phase::Pending).exit_code(),
            1
        );
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
