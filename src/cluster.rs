//! The thin Kubernetes layer: client construction the kubectl way, and the few
//! calls asdo makes, each turning kube errors into messages that say what to do.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, ObjectList, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Error, Result};

/// Where the cluster is, as kubectl takes it.
#[derive(Debug, Clone, Default)]
pub struct ClusterArgs {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// How long to wait for a TCP/TLS connection before saying the cluster is unreachable.
    pub connect_timeout: Duration,
    /// How long any single request (not a stream or watch) may take; zero means no bound.
    pub request_timeout: Duration,
}

/// The bound on single requests and the server they go to, set once per process by
/// [`client`]: every call below goes through [`bounded`], so no command can hang on an
/// API server that accepts connections and never answers.
static REQUEST_BOUND: OnceLock<(Duration, String)> = OnceLock::new();

/// `--connect-timeout`, for the message of a connection that did not come up in time.
static CONNECT_TIMEOUT: OnceLock<Duration> = OnceLock::new();

pub fn connect_timeout() -> Option<Duration> {
    CONNECT_TIMEOUT.get().copied()
}

/// kube-rs prints paths with Debug inside quotes (`'"/home/u/.kube/config"'`): one pair.
fn unquote(msg: &str) -> String {
    msg.replace("'\"", "'").replace("\"'", "'")
}

/// Run one non-stream request under `--request-timeout`.
pub async fn bounded<T>(
    what: &str,
    fut: impl Future<Output = std::result::Result<T, kube::Error>>,
) -> Result<T> {
    within_timeout(what, fut)
        .await?
        .map_err(|e| Error::from_kube(what, e))
}

/// Only the timeout: the kube error is left to the caller (retry loops look at its code).
pub async fn within_timeout<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    let (limit, server) = REQUEST_BOUND
        .get()
        .cloned()
        .unwrap_or((Duration::ZERO, String::new()));
    if limit.is_zero() {
        return Ok(fut.await);
    }
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| timed_out(what, limit, &server))
}

/// The one message for a request the server did not answer in time.
pub fn timed_out(what: &str, limit: Duration, server: &str) -> Error {
    Error::Cluster(format!(
        "cannot {what}: the API server {server} did not answer within {} (--request-timeout); check that the cluster is healthy, or raise --request-timeout",
        crate::humantime::short(limit)
    ))
}

/// The API server's URL, for messages.
pub fn server_url() -> String {
    REQUEST_BOUND
        .get()
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

/// Build a client: `--kubeconfig` file, else KUBECONFIG / ~/.kube/config, else in-cluster.
pub async fn client(args: &ClusterArgs) -> Result<Client> {
    let opts = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Error::Cluster(format!(
                    "cannot read kubeconfig {}: {}; pass a valid --kubeconfig",
                    path.display(),
                    unquote(&e.to_string())
                ))
            })?;
            Config::from_custom_kubeconfig(kc, &opts).await
        }
        None => match Config::from_kubeconfig(&opts).await {
            Ok(c) => Ok(c),
            // No kubeconfig at all: we may be running inside a pod.
            Err(kerr) if args.context.is_none() => Config::incluster().map_err(|_| kerr),
            Err(kerr) => Err(kerr),
        },
    }
    .map_err(|e| {
        let why = unquote(&e.to_string());
        let nothing_configured = args.kubeconfig.is_none()
            && args.context.is_none()
            && std::env::var_os("KUBECONFIG").is_none()
            && why.contains("No such file");
        if nothing_configured {
            Error::Cluster(format!(
                "no cluster configured ({why}, and not running in a pod); set KUBECONFIG or pass --kubeconfig/--context (e.g. a kind or k3d cluster). To try asdo without a cluster, run the project's fake API server: `cargo run --example fake-apiserver -- --port 18081 --kubeconfig /tmp/fake.kubeconfig`, then `export KUBECONFIG=/tmp/fake.kubeconfig` (README: \"Try it without a cluster\"). Or run the tasks on this machine: `asdo --runtime local …` (or ASDO_RUNTIME=local)"
            ))
        } else {
            Error::Cluster(format!(
                "no usable cluster configuration: {why}; set KUBECONFIG or pass --kubeconfig/--context (e.g. a kind or k3d cluster)"
            ))
        }
    })?;
    config.connect_timeout = Some(args.connect_timeout);
    // kube's retry outlasts any --request-timeout; ours is short and says what answered.
    config.default_retry = false;
    let _ = CONNECT_TIMEOUT.set(args.connect_timeout);
    let _ = REQUEST_BOUND.set((args.request_timeout, config.cluster_url.to_string()));
    let cannot =
        |e: kube::Error| Error::Cluster(format!("cannot build a client for the cluster: {e}"));
    // https without a proxy: HTTP/2 by ALPN over a few multiplexed connections
    // (src/apiconn.rs). Plain http:// and proxies: kube's own HTTP/1.1 stack.
    let builder = if config.cluster_url.scheme_str() == Some("https") && config.proxy_url.is_none()
    {
        multiplexed(&config).map_err(cannot)?
    } else {
        kube::client::ClientBuilder::try_from(config).map_err(cannot)?
    };
    Ok(builder
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(
            crate::apiretry::Retry::default(),
        ))
        .build())
}

/// kube's layers (base URL, auth: token, exec or client certificate; extra headers) on the
/// HTTP/2 pool of src/apiconn.rs instead of kube's HTTP/1.1-only hyper client.
fn multiplexed(
    config: &Config,
) -> std::result::Result<kube::client::ClientBuilder<GenericService>, kube::Error> {
    use kube::client::ConfigExt;
    use tower::ServiceExt;
    let connector = |h2: bool| -> std::result::Result<_, kube::Error> {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(config.connect_timeout);
        http.set_nodelay(true);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config.rustls_client_config()?)
            .https_only();
        let tls = match &config.tls_server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
                })?;
                tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => tls,
        };
        // The builder sets ALPN from what is enabled: "h2, http/1.1" or "http/1.1".
        Ok(if h2 {
            tls.enable_http1()
                .enable_http2()
                .wrap_connector(crate::apiconn::Tcp(http))
        } else {
            tls.enable_http1().wrap_connector(crate::apiconn::Tcp(http))
        })
    };
    let pool = crate::apiconn::Pool::new(
        connector(true)?,
        connector(false)?,
        config.cluster_url.clone(),
        config.connect_timeout,
    );
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(pool)
        .map_err(tower::BoxError::from)
        .map_response(|r: http::Response<crate::apiconn::ApiBody>| {
            r.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(
                    body,
                    tower::BoxError::from,
                )) as Box<kube::client::DynBody>
            })
        })
        .boxed();
    Ok(kube::client::ClientBuilder::new(
        service,
        config.default_namespace.clone(),
    ))
}

type GenericService = tower::util::BoxService<
    http::Request<kube::client::Body>,
    http::Response<Box<kube::client::DynBody>>,
    tower::BoxError,
>;

/// The pods of one namespace (or all). kube-rs formats the namespace into the path
/// without encoding it, so it is checked here again, right where the path is built,
/// whatever the caller already did.
pub fn pods(client: &Client, namespace: Option<&str>) -> Result<Api<Pod>> {
    Ok(match namespace {
        Some(ns) => {
            crate::validate::namespace(ns)?;
            Api::namespaced(client.clone(), ns)
        }
        None => Api::all(client.clone()),
    })
}

fn check_pod_name(name: &str) -> Result<()> {
    if crate::validate::is_dns_label(name) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid pod name {name:?}: a DNS-1123 label"
        )))
    }
}

pub async fn create_pod(api: &Api<Pod>, pod: &Pod, ns: &str) -> Result<Pod> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    check_pod_name(name)?;
    let what = format!("create pod {name} in namespace {ns}");
    let answer = within_timeout(&what, api.create(&PostParams::default(), pod)).await?;
    answer.map_err(|e| {
        // A ResourceQuota cap gets its own one-line answer (src/quota.rs).
        crate::quota::refusal(&e, name, ns).unwrap_or_else(|| create_error(e, name, ns))
    })
}

fn create_error(e: kube::Error, name: &str, ns: &str) -> Error {
    match Error::from_kube(&format!("create pod {name} in namespace {ns}"), e) {
        Error::AlreadyExists(_) => Error::AlreadyExists(format!(
            "pod {name} already exists in namespace {ns}: follow it with `asdo logs {name} -n {ns}`, or pass --replace to delete it (once finished) and spawn again"
        )),
        Error::NotFound(m) => Error::NotFound(format!(
            "{m}; install the chart for this environment (helm upgrade --install …) or pick the namespace with -n"
        )),
        other => other,
    }
}

/// Creates `cm` owned by `pod` (controller reference), so it is deleted with the pod.
pub async fn create_owned_config_map(
    pods: &Api<Pod>,
    pod: &Pod,
    mut cm: k8s_openapi::api::core::v1::ConfigMap,
    ns: &str,
) -> Result<()> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    cm.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod_name.clone(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(false),
    }]);
    let name = cm.metadata.name.clone().unwrap_or_default();
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(pods.clone().into_client(), ns);
    let what = format!("create configmap {name} (the prompt of pod {pod_name}) in namespace {ns}");
    let get = format!("get configmap {name} in namespace {ns}");
    let ours = |c: &k8s_openapi::api::core::v1::ConfigMap| {
        c.metadata
            .owner_references
            .iter()
            .flatten()
            .next()
            .is_some_and(|o| Some(&o.uid) == pod.metadata.uid.as_ref())
    };
    match bounded(&what, api.create(&PostParams::default(), &cm)).await {
        Ok(_) => Ok(()),
        // No answer (or a failing one) may still have stored it: the pod's own ConfigMap
        // there is this create's, and the spawn is whole. Else the caller undoes the pod.
        Err(e @ (Error::Cluster(_) | Error::Api(_))) => {
            match bounded(&get, api.get_opt(&name)).await {
                Ok(Some(c)) if ours(&c) => Ok(()),
                _ => Err(e),
            }
        }
        // One of this name is there: ours (a create whose answer was lost), or the prompt
        // of an earlier run of the task whose pod is gone and whose garbage collection
        // has not come yet. The stale one goes (by uid) and ours is created once more.
        Err(Error::AlreadyExists(m)) => {
            let Some(old) = bounded(&get, api.get_opt(&name)).await? else {
                return bounded(&what, api.create(&PostParams::default(), &cm))
                    .await
                    .map(drop);
            };
            if ours(&old) {
                return Ok(());
            }
            let owner = old.metadata.owner_references.iter().flatten().next();
            let stale_owner = owner.map(|o| o.name.clone());
            if stale_owner.as_deref() != Some(pod_name.as_str()) || old.metadata.uid.is_none() {
                return Err(Error::AlreadyExists(format!(
                    "{m}; it is not the prompt of an earlier run of this task, so it was left alone"
                )));
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: old.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let del = format!("delete the stale configmap {name} in namespace {ns}");
            match bounded(&del, api.delete(&name, &dp)).await {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            bounded(&what, api.create(&PostParams::default(), &cm))
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    }
}

/// The end of a task pod's agent log: where the agent's last marker (`asdo: done …`,
/// `asdo: pr …`, its summary) and the reason of a failure are. Read by `wait`/`status`
/// for a verdict and by `diff`/`apply` for the commit a task reported. Logs are bytes,
/// not UTF-8: one stray byte (a tool's binary output) must not hide the marker after it,
/// so the bytes are read as they are and decoded lossily.
pub async fn agent_log_tail(api: &Api<Pod>, name: &str) -> Result<String> {
    let lp = LogParams {
        container: Some(crate::task::CONTAINER.into()),
        tail_lines: Some(crate::marker::TAIL_LINES),
        ..Default::default()
    };
    let bytes = log_bytes(api, name, &lp, Keep::Last(LOG_TAIL_MAX)).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The session the agent announced (`asdo: opencode session ses_… on …`), from the first
/// bytes of its log. The agent announces it once, early (after the clone, as the server
/// starts), so a long run's tail ([`agent_log_tail`]) no longer holds it; the head always
/// does. The newest announcement there counts. The log is data anyone with a shell in the
/// pod (or a model's tool) can write to, so one without OpenCode's shape
/// ([`crate::marker::is_session_id`]) is refused, never skipped for an older one; `task`
/// names the task in that refusal. One reader for `attach`/`send` and the task object.
pub async fn agent_session(
    api: &Api<Pod>,
    name: &str,
    task: &str,
    logs: &str,
) -> Result<Option<String>> {
    let lp = LogParams {
        container: Some(crate::task::CONTAINER.into()),
        limit_bytes: Some(LOG_TAIL_MAX as i64),
        ..Default::default()
    };
    let bytes = log_bytes(api, name, &lp, Keep::First(LOG_TAIL_MAX)).await?;
    crate::marker::session_in_log(&String::from_utf8_lossy(&bytes), task, logs)
}

/// A task pod's agent log as the task object needs it: the tail, and the session.
#[derive(Debug, Clone)]
pub struct AgentLog {
    /// [`agent_log_tail`].
    pub tail: String,
    /// The session the tail announces, else the log's head ([`agent_session`]); None when
    /// neither does, or the head could not be read.
    pub session: Option<String>,
}

/// [`agent_log_tail`], plus the session for [`crate::taskpod::TaskState::session_id`]: a
/// second read (the head) only when the tail names none and is not the whole log.
pub async fn agent_log(api: &Api<Pod>, name: &str) -> Result<AgentLog> {
    let tail = agent_log_tail(api, name).await?;
    let mut session = crate::marker::last_session(&tail).map(str::to_string);
    if session.is_none() && tail.lines().count() >= crate::marker::TAIL_LINES as usize {
        // Best effort: the task object without a session still says everything else.
        session = agent_session(api, name, name, &format!("asdo logs {name}"))
            .await
            .unwrap_or_else(|e| {
                tracing::info!("{e}; the task object of {name} has no session");
                None
            });
    }
    Ok(AgentLog { tail, session })
}

/// Which part of a log read over its cap is kept.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// The first bytes (the rest is not read): where announcements are.
    First(usize),
    /// The last bytes (all is read, little is held): where the last marker is. A server
    /// applies `limitBytes` after `tailLines`, keeping the start of the tail, so the
    /// cut is made here instead.
    Last(usize),
}

/// At most this much of a log is read for markers (the tail, or the session announcement).
pub const LOG_TAIL_MAX: usize = 1 << 20;

/// A non-follow log read as raw bytes (kube's `logs` insists on UTF-8), at most the
/// `keep` cap held, under `--request-timeout` as a whole.
pub async fn log_bytes(api: &Api<Pod>, name: &str, lp: &LogParams, keep: Keep) -> Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let what = format!("read logs of pod {name}");
    let read = async {
        let reader = api.log_stream(name, lp).await?;
        let io = |e: std::io::Error| kube::Error::Service(e.into());
        let mut out = Vec::new();
        match keep {
            Keep::First(cap) => {
                reader
                    .take(cap as u64)
                    .read_to_end(&mut out)
                    .await
                    .map_err(io)?;
            }
            Keep::Last(cap) => {
                let mut reader = std::pin::pin!(reader);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = reader.read(&mut buf).await.map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > 2 * cap {
                        out.drain(..out.len() - cap);
                    }
                }
                if out.len() > cap {
                    out.drain(..out.len() - cap);
                }
            }
        }
        Ok(out)
    };
    bounded(&what, read).await
}

/// The task pod `name`, or NotFound with the hint every verb gives (`asdo list`).
pub async fn task_pod(api: &Api<Pod>, name: &str, ns: &str) -> Result<Pod> {
    get_pod(api, name, ns).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "no pod {name} in namespace {ns}; see the task pods with `asdo list -n {ns}`"
        ))
    })
}

pub async fn get_pod(api: &Api<Pod>, name: &str, ns: &str) -> Result<Option<Pod>> {
    check_pod_name(name)?;
    bounded(
        &format!("get pod {name} in namespace {ns}"),
        api.get_opt(name),
    )
    .await
}

/// Delete exactly the pod that was seen: with its uid as a precondition, a pod another
/// caller created under the same name meanwhile is left alone (the server answers 409).
/// Ok(false) when the pod is already gone.
pub async fn delete_pod_uid(api: &Api<Pod>, name: &str, uid: &str, ns: &str) -> Result<bool> {
    check_pod_name(name)?;
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match bounded(
        &format!("delete pod {name} in namespace {ns}"),
        api.delete(name, &dp),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(Error::AlreadyExists(m)) => Err(Error::AlreadyExists(format!(
            "{m}; pod {name} was replaced by another run meanwhile and was left alone"
        ))),
        Err(e) => Err(e),
    }
}

/// List every page: API servers cap a page, and 10,000 pods must not be one response.
pub async fn list_all(api: &Api<Pod>, lp: &ListParams, what: &str) -> Result<Vec<Pod>> {
    let mut out = Vec::new();
    for_each_page(api, lp, what, |page| out.extend(page)).await?;
    Ok(out)
}

/// Pages of 500, handed to `f` one at a time, so a caller that keeps only a summary of each
/// pod (`asdo list`'s table) never holds more than one page of full objects.
pub async fn for_each_page(
    api: &Api<Pod>,
    lp: &ListParams,
    what: &str,
    mut f: impl FnMut(Vec<Pod>),
) -> Result<()> {
    let mut lp = lp.clone().limit(500);
    loop {
        let page: ObjectList<Pod> = bounded(what, api.list(&lp)).await?;
        f(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// The chart's published values, if the chart is installed and we may read them.
/// Absent or forbidden is fine (the compiled-in values are a complete default);
/// an unreachable cluster is not.
pub async fn config_values(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>> {
    crate::validate::namespace(ns)?;
    crate::validate::object_name("ConfigMap", name)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let what = format!("read ConfigMap {name} in namespace {ns}");
    let forbidden_is_fine = async {
        match api.get_opt(name).await {
            Err(kube::Error::Api(s))
                if (s.code == 403 || s.code == 404) && crate::error::is_status(&s) =>
            {
                tracing::info!(
                    "cannot read ConfigMap {ns}/{name} ({}); using the values built into asdo",
                    s.message
                );
                Ok(None)
            }
            other => other,
        }
    };
    Ok(bounded(&what, forbidden_is_fine)
        .await?
        .and_then(|cm| cm.data.and_then(|mut d| d.remove(key))))
}
