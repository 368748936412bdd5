//! A fake Kubernetes API server for tests: an in-memory store served over
//! plain HTTP/1.1 in the real server's JSON wire format, with a fake scheduler
//! and kubelet that run each pod's first container as a local process.
//! kube-rs and kubectl both work against it; tests/fake_apiserver.rs checks
//! that with both clients.
//!
//! It runs on its own thread with its own tokio runtime, so plain `#[test]`
//! functions can use it and run binaries against it.
//!
//! Served: discovery (`/version`, `/api`, `/api/v1`, `/apis`, a skeleton
//! `/openapi/v3`), pods (create, get, list, watch, delete, deletecollection,
//! merge-patch, `log`, `portforward` over WebSocket: see portforward.rs for how a
//! pod's containerPort maps to a local port), secrets, configmaps, events, namespaces, the node
//! `fake-node`, and SelfSubjectAccessReview.
//!
//! Not served, or not like a real cluster (tests must not rely on these):
//! - no authentication or RBAC: any token works; only `forbid_namespace` denies;
//! - no PUT (update), server-side apply, JSON patch, or strategic merge patch
//!   beyond plain metadata maps (what `kubectl label`/`annotate` send) and
//!   `spec.schedulingGates: null`; protobuf
//!   only for the few bodies kubectl sends that way (secret, configmap,
//!   namespace, SelfSubjectAccessReview); responses are always JSON;
//! - deletion is immediate (no Terminating phase, finalizers or owner
//!   references); namespaces cannot be deleted;
//! - no admission, quotas, resources or real scheduling; defaulting covers the
//!   common pod fields only; a pod with `spec.schedulingGates` stays Pending
//!   (PodScheduled=False, SchedulingGated) until its gates are removed (merge
//!   patch, `kubectl patch -p '{"spec":{"schedulingGates":null}}'`, or
//!   `release_scheduling_gates`); `set_kueue_pod_webhook` gates pods that carry
//!   Kueue's queue-name label, as Kueue's pod webhook does;
//! - the kubelet runs only the first container, never restarts it, ignores
//!   init containers, probes, volumes' contents (missing Secret/ConfigMap
//!   volumes do block the pod; downwardAPI files of the pod's annotations and
//!   labels are written and kept current, in a directory named by
//!   `FAKE_KUBELET_VOLUME_<NAME>`, see downward.rs), images (a name containing `does-not-exist`
//!   fails to pull; one containing `slow-pull` fails for 3 s, then starts) and security contexts; the process runs on this machine;
//! - watches send no periodic BOOKMARKs; history holds the last 4096 changes
//!   (older resourceVersions get 410 Gone);
//! - logs: no `previous`, one log per pod; `sinceTime` counts in whole seconds
//!   as on a real cluster; `kubectl explain` has no schemas.

mod container_env;
mod discovery;
mod downward;
mod events;
mod faults;
mod handlers;
mod kubeconfig;
mod kubelet;
mod logs;
mod openapi;
mod pod;
mod portforward;
mod process;
mod protobuf;
mod resources;
mod routes;
mod selectors;
mod server;
mod status;
mod store;
mod table;
mod tls;
mod util;
mod validation;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::oneshot;

use self::faults::Faults;
use self::store::Store;

/// One request as the server saw it. `status` is 0 while the response is not yet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    pub status: u16,
}

/// Requests in arrival order, each completed with its status once answered.
#[derive(Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<(u64, RecordedRequest)>>,
    next: AtomicU64,
}

impl RequestLog {
    pub fn start(&self, method: &str, path: &str, query: &str) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let r = RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status: 0,
        };
        self.entries.lock().unwrap().push((id, r));
        id
    }

    pub fn finish(&self, id: u64, status: u16) {
        let mut entries = self.entries.lock().unwrap();
        if let Some((_, r)) = entries.iter_mut().rev().find(|(i, _)| *i == id) {
            r.status = status;
        }
    }
}

/// State shared by the HTTP handlers, the kubelet and the test-facing handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    pub faults: Faults,
    pub requests: RequestLog,
    /// TCP connections open now, and the most ever open at once.
    pub connections: (AtomicUsize, AtomicUsize),
    pub logs: logs::Registry,
    pub kubelet: kubelet::Registry,
    /// Where each running pod's containerPorts live on this machine (see portforward.rs).
    pub ports: portforward::Ports,
    pub events: events::Recorder,
    /// Per-pod working directories live under here; removed on drop.
    pub work_root: PathBuf,
    pub port: u16,
    pub runtime: tokio::runtime::Handle,
    /// Some: TLS, with h2 and http/1.1 offered in ALPN (see tls.rs).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of each HTTP/2 connection (None: hyper's default).
    pub max_streams: Option<u32>,
    pub counters: tls::Counters,
}

/// How the fake API server listens.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub port: u16,
    /// Serve https (a test CA made with openssl; HTTP/2 or HTTP/1.1 by ALPN) instead of
    /// plain HTTP/1.1.
    pub tls: bool,
    /// With `tls`: the most streams one HTTP/2 connection may carry at once (the knob for a
    /// client's overflow path; kube-apiserver's `--http2-max-streams-per-connection`).
    pub max_concurrent_streams: Option<u32>,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake API server. Dropping it stops the server and kills every container process.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// On an ephemeral port of 127.0.0.1.
    pub fn start() -> FakeApiServer {
        FakeApiServer::start_on(0)
    }

    pub fn start_on(port: u16) -> FakeApiServer {
        FakeApiServer::start_with(Options {
            port,
            ..Options::default()
        })
    }

    /// Over TLS, HTTP/2 by ALPN, on an ephemeral port.
    pub fn start_tls(max_concurrent_streams: Option<u32>) -> FakeApiServer {
        FakeApiServer::start_with(Options {
            tls: true,
            max_concurrent_streams,
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> FakeApiServer {
        let port = options.port;
        static INSTANCE: AtomicUsize = AtomicUsize::new(0);
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the fake API server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()
            .expect("tokio runtime for the fake API server");
        let work_root = std::env::temp_dir().join(format!(
            "fake-apiserver-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        let tls = options
            .tls
            .then(|| tls::acceptor(&tls::make_pki(&work_root.join("tls"))));
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            faults: Faults::new(),
            requests: RequestLog::default(),
            connections: Default::default(),
            logs: logs::Registry::default(),
            kubelet: kubelet::Registry::default(),
            ports: portforward::Ports::default(),
            events: events::Recorder::default(),
            work_root,
            port: addr.port(),
            runtime: runtime.handle().clone(),
            tls,
            max_streams: options.max_concurrent_streams,
            counters: Default::default(),
        });
        kubelet::start(&shared);
        let (tx, rx) = oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-apiserver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(server::serve(listener, s, rx));
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the fake API server thread");
        FakeApiServer {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The test CA's certificate (PEM) in TLS mode.
    pub fn ca_file(&self) -> Option<PathBuf> {
        let ca = self.shared.work_root.join("tls").join("ca.pem");
        self.shared.tls.is_some().then_some(ca)
    }

    /// Writes `dir/kubeconfig`: context "fake", cluster "fake-apiserver", token "fake-token"
    /// (and in TLS mode the test CA's file, as `certificate-authority`).
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        kubeconfig::write(dir, &self.url(), namespace, self.ca_file().as_deref())
    }

    /// TCP connections accepted since the start (over TLS: handshakes begun).
    pub fn accepted_connections(&self) -> usize {
        self.shared.counters.accepted.load(Ordering::SeqCst)
    }

    /// (connections that negotiated h2, requests that came as HTTP/2 streams).
    pub fn h2_counts(&self) -> (usize, usize) {
        let c = &self.shared.counters;
        (
            c.h2_connections.load(Ordering::SeqCst),
            c.h2_streams.load(Ordering::SeqCst),
        )
    }

    pub fn create_namespace(&self, ns: &str) {
        let mut store = self.shared.store();
        if !store.has_namespace(ns) {
            store.put(resources::namespace(ns));
        }
    }

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        }
    }

    /// Creates or replaces a Secret; values are plain strings, stored as bytes (base64 on the wire).
    pub fn put_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        let secret = Secret {
            metadata: FakeApiServer::meta(ns, name),
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        self.put_keeping_identity(secret);
    }

    pub fn put_configmap(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cm = ConfigMap {
            metadata: FakeApiServer::meta(ns, name),
            data: Some(data),
            ..Default::default()
        };
        self.put_keeping_identity(cm);
    }

    fn assert_namespace(store: &Store, ns: &str, what: &str) {
        assert!(
            store.has_namespace(ns),
            "{what}: namespace {ns:?} does not exist; create_namespace first"
        );
    }

    /// A replaced object keeps its uid and creationTimestamp, as an update would.
    fn put_keeping_identity<K: resources::Kind>(&self, mut obj: K) {
        let mut store = self.shared.store();
        let (ns, name) = store::key_of(&obj);
        FakeApiServer::assert_namespace(&store, &ns, K::KIND);
        if let Some(old) = store.get::<K>(&ns, &name) {
            let m = obj.metadata_mut();
            m.uid = old.metadata().uid.clone();
            m.creation_timestamp = old.metadata().creation_timestamp.clone();
        }
        store.put(obj);
    }

    /// Stores the pod as given (status included); fills a missing uid and
    /// creationTimestamp and sets resourceVersion. Only a pod without status.phase
    /// is run by the kubelet. A pod of the same name is deleted first.
    pub fn insert_pod(&self, mut pod: Pod) {
        let ns = pod
            .metadata
            .namespace
            .get_or_insert_with(|| "default".into())
            .clone();
        let name = pod
            .metadata
            .name
            .clone()
            .expect("insert_pod needs metadata.name");
        let run = pod.status.as_ref().and_then(|s| s.phase.as_ref()).is_none();
        let stored = {
            let mut store = self.shared.store();
            FakeApiServer::assert_namespace(&store, &ns, "insert_pod");
            store.remove::<Pod>(&ns, &name, |_| {});
            store.put(pod)
        };
        if run {
            kubelet::admit(&self.shared, &stored);
        }
    }

    /// The namespace's pods, by name.
    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.shared
            .store()
            .page::<Pod>(Some(ns), &Default::default(), None, None)
            .items
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.shared.store().get::<Pod>(ns, name).cloned()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// (open now, most open at once) TCP connections from clients.
    pub fn connections(&self) -> (usize, usize) {
        let (open, max) = &self.shared.connections;
        (open.load(Ordering::SeqCst), max.load(Ordering::SeqCst))
    }

    /// Starts a new high-water mark of open connections (from those open now), so one
    /// command's peak can be read on its own (benches/compare.rs).
    pub fn reset_peak_connections(&self) {
        let (open, max) = &self.shared.connections;
        max.store(open.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub fn clear_requests(&self) {
        self.shared.requests.entries.lock().unwrap().clear();
    }

    /// Polls until the pod's status.phase is `phase`; false on timeout.
    pub fn wait_for_phase(&self, ns: &str, name: &str, phase: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let current = self.pod(ns, name).and_then(|p| p.status?.phase);
            if current.as_deref() == Some(phase) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Cuts every pods/log response (follow or not) after `n` body bytes, without
    /// the terminating chunk, like a proxy's idle cut. Applies to each new stream.
    pub fn set_log_drop_after_bytes(&self, n: Option<usize>) {
        self.shared.faults.set_log_drop_after(n);
    }

    /// Log timestamps truncated to whole seconds from now on (a runtime with a coarse
    /// clock): every line of a burst shares one stamp, as `sinceTime` counts.
    pub fn set_log_timestamps_whole_seconds(&self, on: bool) {
        self.shared.faults.set_log_stamps_whole_seconds(on);
    }

    /// Cuts every log stream open right now.
    pub fn drop_log_streams_now(&self) {
        self.shared.faults.cut_log_streams();
    }

    /// The next `n` requests whose path contains `path_contains` (any, for None) answer
    /// `code` with `body` as text/plain, not a Status: a proxy, an ingress, the wrong port
    /// (an empty body is what a bare 404 from many proxies looks like).
    pub fn fail_next_raw(&self, n: usize, code: u16, body: &str, path_contains: Option<&str>) {
        self.shared
            .faults
            .add_raw_failure(n, code, body, path_contains);
    }

    /// The next `n` requests, whatever the path, answer a Status with `code`.
    pub fn fail_next(&self, n: usize, code: u16) {
        self.shared.faults.add_failure(n, code, None, None);
    }

    /// The next `n` requests with this method whose path contains `path_contains` fail with `code`
    /// (pods/portforward included: `fail_next_matching(n, 403, "GET", "/portforward")` is RBAC
    /// refusing the forward).
    pub fn fail_next_matching(&self, n: usize, code: u16, method: &str, path_contains: &str) {
        self.shared
            .faults
            .add_failure(n, code, Some(method), Some(path_contains));
    }

    /// The store's current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Number new changes after `rv`, as a server restarted on the same etcd would.
    pub fn advance_resource_version(&self, rv: u64) {
        self.shared.store().advance_resource_version(rv);
    }

    /// Forgets every injected failure and hang still pending.
    pub fn clear_failures(&self) {
        self.shared.faults.clear();
    }

    /// The next `n` matching requests are handled as usual (a create stores its object),
    /// then answered with `code`, as a proxy's 504 after the API server did the work.
    pub fn fail_next_after_handling(&self, n: usize, code: u16, method: &str, path_contains: &str) {
        self.shared
            .faults
            .add_failure_after(n, code, method, path_contains);
    }

    /// The next `n` matching requests are handled (a create stores its object), then never answered.
    pub fn hang_next_after_handling(&self, n: usize, method: &str, path_contains: &str) {
        self.shared.faults.add_hang_after(n, method, path_contains);
    }

    /// The connection of the next `n` matching requests is reset (a TCP RST, SO_LINGER 0)
    /// as soon as the request's head is read, its body unread and no answer sent: a load
    /// balancer or an API server dropping a connection while the client is still writing.
    pub fn reset_next_matching(&self, n: usize, method: &str, path_contains: &str) {
        self.shared.faults.add_reset(n, method, path_contains);
    }

    /// The next `n` requests with this method (any if None) whose path contains
    /// `path_contains` (any if None) are accepted and never answered (pods/portforward too).
    pub fn hang_next_matching(&self, n: usize, method: Option<&str>, path_contains: Option<&str>) {
        self.shared.faults.add_hang(n, method, path_contains);
    }

    pub fn set_response_delay(&self, d: Duration) {
        self.shared.faults.set_response_delay(d);
    }

    /// How long a new pod waits before it is scheduled (default 200ms).
    pub fn set_schedule_delay(&self, d: Duration) {
        self.shared.faults.set_schedule_delay(d);
    }

    /// A ResourceQuota `name` with `count/pods: limit` in `ns` (None removes it): creating a
    /// pod while `limit` non-terminal pods exist gets quota admission's 403.
    pub fn set_pod_quota(&self, ns: &str, quota: Option<(&str, usize)>) {
        self.shared.faults.set_pod_quota(ns, quota);
    }

    /// Every request in `ns` gets RBAC's 403.
    pub fn forbid_namespace(&self, ns: &str) {
        self.shared.faults.forbid(ns);
    }

    /// Acts like Kueue's pod webhook (plain-pod integration) while on: a pod created with
    /// the `kueue.x-k8s.io/queue-name` label gets the `kueue.x-k8s.io/managed=true` label
    /// and the `kueue.x-k8s.io/admission` scheduling gate. Nothing admits it: a test
    /// releases it with [`FakeApiServer::release_scheduling_gates`], as Kueue would.
    pub fn set_kueue_pod_webhook(&self, on: bool) {
        self.shared.faults.set_kueue_pod_webhook(on);
    }

    /// Removes every scheduling gate of the pod (what Kueue does when it admits it):
    /// the fake scheduler then schedules it and the kubelet runs it. False when the pod
    /// does not exist or has no gates.
    pub fn release_scheduling_gates(&self, ns: &str, name: &str) -> bool {
        let mut released = false;
        self.shared.store().update::<Pod>(ns, name, None, |p| {
            let spec = p.spec.get_or_insert_with(Default::default);
            released = spec.scheduling_gates.take().is_some_and(|g| !g.is_empty());
            released
        });
        released
    }

    /// While set, pods stay Pending with PodScheduled=False, reason Unschedulable, this message.
    pub fn set_unschedulable(&self, reason_message: Option<&str>) {
        self.shared.faults.set_unschedulable(reason_message);
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.kubelet.kill_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.shared.work_root);
    }
}
