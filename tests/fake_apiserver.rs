//! The fake API server's own tests. Everything is checked through two
//! independent clients: kube-rs (what asdo uses) and the installed kubectl.
//! Waits use the server's helpers or watches, never fixed sleeps.

mod support;

#[path = "fake_apiserver/portforward.rs"]
mod portforward;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use either::Either;
use futures::{AsyncBufReadExt, AsyncReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::{wait::await_condition, watcher};
use serde_json::json;
use support::FakeApiServer;

const NS: &str = "default";
const SECONDS: Duration = Duration::from_secs(10);

/// A server, a kubeconfig for it and a private kubectl cache, removed afterwards.
struct Fixture {
    server: FakeApiServer,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

/// `follow=true` and nothing else.
fn follow_params() -> LogParams {
    LogParams {
        follow: true,
        ..Default::default()
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_server(FakeApiServer::start())
    }

    fn with_server(server: FakeApiServer) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fake-apiserver-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let kubeconfig = server.write_kubeconfig(&dir, NS);
        Fixture {
            server,
            dir,
            kubeconfig,
        }
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client().await, NS)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .output()
            .expect("kubectl on PATH")
    }

    /// kubectl that must succeed; its stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// kubectl that must fail; its stderr.
    fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Create a pod running `script` and wait until its process runs.
    async fn running_script(&self, pods: &Api<Pod>, name: &str, script: &str) {
        pods.create(&PostParams::default(), &script_pod(name, json!({}), script))
            .await
            .unwrap();
        self.wait_phase(name, "Running");
    }

    fn wait_phase(&self, name: &str, phase: &str) {
        assert!(
            self.server.wait_for_phase(NS, name, phase, SECONDS),
            "{name} never reached {phase}: {:?}",
            self.server.pod(NS, name).and_then(|p| p.status)
        );
    }

    /// Polls the stored pod until `f` holds.
    fn wait_pod(&self, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
        let end = Instant::now() + SECONDS;
        loop {
            if let Some(p) = self.server.pod(NS, name).filter(|p| f(p)) {
                return p;
            }
            assert!(
                Instant::now() < end,
                "{name}: never {what}: {:?}",
                self.server.pod(NS, name).and_then(|p| p.status)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod running `script` with sh; never restarted.
fn script_pod(name: &str, labels: serde_json::Value, script: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}
    }))
    .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn waiting_reason(p: &Pod) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

fn exit_code(p: &Pod) -> Option<(i32, String)> {
    let t = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

/// One plain HTTP/1.1 exchange, to see the wire: status line, headers and raw (possibly chunked) body.
fn raw_get(server: &FakeApiServer, path: &str) -> (u16, String, Vec<u8>) {
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(SECONDS)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer fake-token\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = vec![];
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

#[test]
fn discovery_and_namespaces_for_both_clients() {
    let f = Fixture::new();
    let out = f.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    assert!(
        out.contains("namespace/default\n") && out.contains("namespace/kube-system\n"),
        "{out}"
    );
    let version = f.kubectl_ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert!(
        v["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.0-fake"),
        "{version}"
    );
    let resources = f.kubectl_ok(&["api-resources", "--api-group="]);
    for r in [
        "pods",
        "secrets",
        "configmaps",
        "namespaces",
        "events",
        "nodes",
    ] {
        assert!(
            resources.lines().any(|l| l.starts_with(r)),
            "{r} missing: {resources}"
        );
    }
    f.server.create_namespace("team-a");
    assert_eq!(
        f.kubectl_ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );

    let (code, _, body) = raw_get(&f.server, "/api/v1/widgets");
    assert_eq!(code, 404);
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            status["kind"].as_str(),
            status["reason"].as_str(),
            status["code"].as_u64()
        ),
        (Some("Status"), Some("NotFound"), Some(404))
    );

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = f.client().await;
        let info = client.apiserver_version().await.unwrap();
        assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
        let ns: Api<Namespace> = Api::all(client);
        let list = ns.list(&ListParams::default()).await.unwrap();
        assert!(names_of(&list.items).contains(&"team-a".to_string()));
    });
}

fn names_of<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_list_by_label_and_field_selectors() {
    let f = Fixture::new();
    f.server.set_schedule_delay(Duration::from_secs(3600));
    let pods = f.pods().await;
    let pp = PostParams::default();
    pods.create(
        &pp,
        &script_pod("web-1", json!({"app": "web", "tier": "front"}), "true"),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &script_pod("web-2", json!({"app": "web", "tier": "back"}), "true"),
    )
    .await
    .unwrap();
    pods.create(&pp, &script_pod("db-1", json!({"app": "db"}), "true"))
        .await
        .unwrap();
    let mut generated = script_pod("", json!({"app": "batch"}), "true");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("job-".into());
    let g = pods.create(&pp, &generated).await.unwrap();
    let gname = g.metadata.name.clone().unwrap();
    assert!(gname.starts_with("job-") && gname.len() == 9, "{gname}");
    assert!(g.metadata.uid.is_some() && g.metadata.creation_timestamp.is_some());
    let rv: u64 = g
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(phase(&g), "Pending");
    assert_eq!(
        g.status.as_ref().unwrap().qos_class.as_deref(),
        Some("BestEffort")
    );
    assert_eq!(
        g.spec.as_ref().unwrap().node_name,
        None,
        "not scheduled yet"
    );

    let got = pods.get("web-1").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["tier"], "front");

    let list = |sel: &'static str| {
        let pods = pods.clone();
        async move {
            names(
                &pods
                    .list(&ListParams::default().labels(sel))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(list("app=web").await, ["web-1", "web-2"]);
    assert_eq!(list("app==web,tier!=back").await, ["web-1"]);
    assert_eq!(list("app in (db, batch)").await, ["db-1", &gname]);
    assert_eq!(list("app notin (web),!tier").await, ["db-1", &gname]);
    assert_eq!(list("tier").await, ["web-1", "web-2"]);
    let by_field = pods
        .list(&ListParams::default().fields("metadata.name=db-1"))
        .await
        .unwrap();
    assert_eq!(names(&by_field.items), ["db-1"]);
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending,spec.nodeName="))
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 4);
    assert!(
        pending
            .metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= rv
    );
    let none = pods
        .list(&ListParams::default().fields("status.phase!=Pending"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let all: Api<Pod> = Api::all(f.client().await);
    assert_eq!(
        all.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // kubectl, the other client, agrees.
    assert_eq!(
        f.kubectl_ok(&["get", "pods", "-l", "app in (web),tier=back", "-o", "name"]),
        "pod/web-2\n"
    );
    assert_eq!(
        f.kubectl_ok(&[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=web-1",
            "-o",
            "name"
        ]),
        "pod/web-1\n"
    );
    let table = f.kubectl_ok(&["get", "pods", "-l", "app=db"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("db-1   0/1     Pending   0"),
        "{table}"
    );
    assert_eq!(
        f.kubectl_ok(&[
            "get",
            "pods",
            "-A",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[0].metadata.namespace}"
        ]),
        NS
    );

    // Bad selectors are a 400 Status.
    let e = api_error(
        pods.list(&ListParams::default().labels("app in ("))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"), "{e:?}");
    let e = api_error(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("field label not supported: spec.bogus"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_limit_and_continue() {
    let f = Fixture::new();
    f.server.set_schedule_delay(Duration::from_secs(3600));
    let pods = f.pods().await;
    for i in [3, 1, 5, 2, 4] {
        pods.create(
            &PostParams::default(),
            &script_pod(&format!("p{i}"), json!({"set": "paged"}), "true"),
        )
        .await
        .unwrap();
    }
    let mut seen = vec![];
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = pods.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(names(&page.items));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => {
                let left = page.metadata.remaining_item_count.unwrap();
                assert_eq!(left as usize, 5 - seen.len(), "remainingItemCount");
                lp = lp.continue_token(&c);
            }
            None => break,
        }
    }
    assert_eq!(
        (pages, seen),
        (
            3,
            vec!["p1", "p2", "p3", "p4", "p5"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    let e = api_error(
        pods.list(&ListParams::default().limit(2).continue_token("garbage"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    f.server.clear_requests();
    let out = f.kubectl_ok(&["get", "pods", "--chunk-size=2", "-o", "name"]);
    assert_eq!(out, "pod/p1\npod/p2\npod/p3\npod/p4\npod/p5\n");
    let lists: Vec<_> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/default/pods")
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(
        lists
            .iter()
            .all(|r| r.query.contains("limit=2") && r.status == 200)
    );
    assert!(lists[1].query.contains("continue="), "{lists:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_real_statuses() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let pp = PostParams::default();
    pods.create(&pp, &script_pod("dup", json!({}), "sleep 30"))
        .await
        .unwrap();

    let e = api_error(
        pods.create(&pp, &script_pod("dup", json!({}), "true"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (409, "AlreadyExists", "pods \"dup\" already exists")
    );
    let d = e.details.unwrap();
    assert_eq!((d.name.as_str(), d.kind.as_str()), ("dup", "pods"));

    let e = api_error(pods.get("nope").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "pods \"nope\" not found")
    );
    assert_eq!(e.details.unwrap().kind, "pods");

    let e = api_error(
        pods.create(&pp, &script_pod("Bad_Name", json!({}), "true"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of"),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(
        (causes[0].field.as_str(), causes[0].reason.as_str()),
        ("metadata.name", "FieldValueInvalid")
    );

    let mut no_image = script_pod("no-image", json!({"ok": "not ok!"}), "true");
    no_image.spec.as_mut().unwrap().containers[0].image = None;
    let e = api_error(pods.create(&pp, &no_image).await.unwrap_err());
    assert_eq!(e.code, 422);
    let fields: Vec<String> = e
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["metadata.labels", "spec.containers[0].image"]);
    let mut empty = script_pod("empty", json!({}), "true");
    empty.spec.as_mut().unwrap().containers.clear();
    let e = api_error(pods.create(&pp, &empty).await.unwrap_err());
    assert_eq!(
        e.message,
        "Pod \"empty\" is invalid: spec.containers: Required value"
    );

    let elsewhere: Api<Pod> = Api::namespaced(f.client().await, "missing-ns");
    let e = api_error(
        elsewhere
            .create(&pp, &script_pod("x", json!({}), "true"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"missing-ns\" not found")
    );

    // dryRun validates and answers, but stores nothing.
    let dry = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &script_pod("dry", json!({}), "true"),
        )
        .await
        .unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(f.server.pod(NS, "dry").is_none());

    // The same errors as kubectl shows them.
    let err = f.kubectl_err(&[
        "run",
        "dup",
        "--image=busybox",
        "--restart=Never",
        "--command",
        "--",
        "true",
    ]);
    assert!(
        err.contains("Error from server (AlreadyExists): pods \"dup\" already exists"),
        "{err}"
    );
    let err = f.kubectl_err(&["get", "pod", "nope"]);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let err = f.kubectl_err(&["delete", "pod", "nope"]);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let err = f.kubectl_err(&["get", "pods", "-l", "a in ("]);
    assert!(
        err.contains("unable to parse requirement") || err.contains("found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_added_modified_deleted() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let events = watcher(
        pods.clone(),
        watcher::Config::default().labels("app=watched"),
    )
    .boxed();
    // The watcher lists first; create once it is running.
    let creator = {
        let pods = pods.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pods.create(
                &PostParams::default(),
                &script_pod("w1", json!({"app": "watched"}), "echo hi"),
            )
            .await
            .unwrap();
            pods.create(
                &PostParams::default(),
                &script_pod("other", json!({"app": "other"}), "true"),
            )
            .await
            .unwrap();
        })
    };
    let mut phases = vec![];
    let mut events = events;
    let mut deleted = false;
    let end = Instant::now() + SECONDS;
    while let Some(ev) = tokio::time::timeout_at(end.into(), events.next())
        .await
        .expect("watch events in time")
    {
        match ev.unwrap() {
            watcher::Event::Apply(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("w1"), "selector honoured");
                if phases.last().map(String::as_str) != Some(phase(&p)) {
                    phases.push(phase(&p).to_string());
                }
                if phase(&p) == "Succeeded" {
                    pods.delete("w1", &DeleteParams::default()).await.unwrap();
                }
            }
            watcher::Event::Delete(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("w1"));
                assert!(p.metadata.deletion_timestamp.is_some());
                deleted = true;
                break;
            }
            _ => {}
        }
    }
    creator.await.unwrap();
    assert!(deleted);
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);

    // kube-runtime's streaming-list mode: initial ADDED events, then the initial-events-end bookmark.
    let cfg = watcher::Config::default()
        .fields("metadata.name=other")
        .streaming_lists();
    let mut stream = watcher(pods.clone(), cfg).boxed();
    let mut initial = vec![];
    while let Some(ev) = tokio::time::timeout(SECONDS, stream.next()).await.unwrap() {
        match ev.unwrap() {
            watcher::Event::InitApply(p) => initial.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["other"]);

    // Resuming from a resourceVersion replays what happened after it.
    let rv = pods
        .get("other")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    pods.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
    )
    .await
    .unwrap();
    let mut stream = pods
        .watch(
            &WatchParams::default()
                .fields("metadata.name=other")
                .timeout(5),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(p) => assert!(
            p.metadata.resource_version.unwrap().parse::<u64>().unwrap() > rv.parse().unwrap()
        ),
        other => panic!("expected MODIFIED after rv {rv}: {other:?}"),
    }

    // A resourceVersion older than the server's history is 410 Gone, in the stream.
    let cms: Api<ConfigMap> = Api::namespaced(f.client().await, NS);
    for i in 0..4100 {
        f.server
            .put_configmap(NS, "churn", &[("i", &i.to_string())]);
    }
    let mut stream = cms
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_condition_and_exit_codes() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let pp = PostParams::default();
    pods.create(&pp, &script_pod("ok", json!({}), "echo fine"))
        .await
        .unwrap();
    pods.create(&pp, &script_pod("bad", json!({}), "echo doomed; exit 3"))
        .await
        .unwrap();
    // Kubernetes reduces `$$` in commands to `$`, so the shell's own pid is `$$$$`.
    pods.create(&pp, &script_pod("killed", json!({}), "kill -9 $$$$"))
        .await
        .unwrap();
    let done = |want: &'static str| move |p: Option<&Pod>| p.is_some_and(|p| phase(p) == want);
    let ok = tokio::time::timeout(
        SECONDS,
        await_condition(pods.clone(), "ok", done("Succeeded")),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(exit_code(&ok), Some((0, "Completed".into())));
    let cs = &ok
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(cs.container_id.as_deref().unwrap().starts_with("fake://") && !cs.ready);
    let bad = tokio::time::timeout(
        SECONDS,
        await_condition(pods.clone(), "bad", done("Failed")),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(exit_code(&bad), Some((3, "Error".into())));
    let killed = tokio::time::timeout(
        SECONDS,
        await_condition(pods.clone(), "killed", done("Failed")),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(exit_code(&killed), Some((137, "Error".into())));
    let st = ok.status.unwrap();
    assert!(
        st.start_time.is_some()
            && st.pod_ip.unwrap().starts_with("10.0.")
            && st.host_ip.as_deref() == Some("127.0.0.1")
    );
    assert_eq!(ok.spec.unwrap().node_name.as_deref(), Some("fake-node"));

    let table = f.kubectl_ok(&["get", "pods"]);
    let status_of = |name: &str| {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    assert_eq!(
        (status_of("ok"), status_of("bad"), status_of("killed")),
        ("Completed".into(), "Error".into(), "Error".into()),
        "{table}"
    );
    assert_eq!(
        f.kubectl_ok(&[
            "get",
            "pod",
            "bad",
            "-o",
            "jsonpath={.status.phase} {..exitCode}"
        ]),
        "Failed 3"
    );

    // The kubelet's Events, listed by involved object as kubectl describe does.
    let events: Api<Event> = Api::namespaced(f.client().await, NS);
    let list = events
        .list(&ListParams::default().fields("involvedObject.name=ok"))
        .await
        .unwrap();
    let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
    for r in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(reasons.contains(&r.to_string()), "{r} in {reasons:?}");
    }
    let describe = f.kubectl_ok(&["describe", "pod", "bad"]);
    assert!(
        describe.contains("Successfully assigned default/bad to fake-node")
            && describe.contains("Exit Code:    3"),
        "{describe}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_while_the_process_runs() {
    let f = Fixture::new();
    let pods = f.pods().await;
    f.running_script(&pods, "talker", "echo a; sleep 0.5; echo b")
        .await;
    let lp = LogParams {
        timestamps: true,
        ..follow_params()
    };
    let mut lines = pods.log_stream("talker", &lp).await.unwrap().lines();
    let first = lines.try_next().await.unwrap().unwrap();
    assert!(first.ends_with(" a"), "{first}");
    assert_eq!(
        phase(&f.server.pod(NS, "talker").unwrap()),
        "Running",
        "line a arrived before the process ended"
    );
    let second = lines.try_next().await.unwrap().unwrap();
    assert!(second.ends_with(" b"), "{second}");
    assert!(
        lines.try_next().await.unwrap().is_none(),
        "the stream ends when the container does"
    );
    // Timestamps are when each line was written: RFC 3339 with nine fractional digits, ~0.5 s apart.
    let ts = |l: &str| {
        let t = l.split_once(' ').unwrap().0;
        assert!(
            t.len() == 30 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
            "{t}"
        );
        t.parse::<Timestamp>().unwrap()
    };
    let gap = ts(&second).duration_since(ts(&first));
    assert!(
        gap.as_secs_f64() >= 0.4,
        "lines written 0.5 s apart are stamped {gap:?} apart"
    );
    f.wait_phase("talker", "Succeeded");
    assert_eq!(
        pods.logs("talker", &LogParams::default()).await.unwrap(),
        "a\nb\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_since_limit_and_output_order() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let script = "echo one; echo two >&2; sleep 0.3; echo three; sleep 0.3; printf 'no newline'";
    pods.create(
        &PostParams::default(),
        &script_pod("lines", json!({}), script),
    )
    .await
    .unwrap();
    f.wait_phase("lines", "Succeeded");
    let get = |lp: LogParams| {
        let pods = pods.clone();
        async move { pods.logs("lines", &lp).await.unwrap() }
    };
    assert_eq!(
        get(LogParams::default()).await,
        "one\ntwo\nthree\nno newline\n",
        "stdout and stderr in write order"
    );
    assert_eq!(
        get(LogParams {
            tail_lines: Some(2),
            ..Default::default()
        })
        .await,
        "three\nno newline\n"
    );
    assert_eq!(
        get(LogParams {
            limit_bytes: Some(6),
            ..Default::default()
        })
        .await,
        "one\ntw"
    );
    assert_eq!(
        get(LogParams {
            since_seconds: Some(3600),
            ..Default::default()
        })
        .await
        .lines()
        .count(),
        4
    );
    let stamped = get(LogParams {
        timestamps: true,
        ..Default::default()
    })
    .await;
    let third: Timestamp = stamped
        .lines()
        .nth(2)
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0
        .parse()
        .unwrap();
    // sinceTime counts in whole seconds, as on a real cluster: a fraction is dropped on the way to the kubelet.
    let since = |t: &str| {
        let (code, _, body) = raw_get(
            &f.server,
            &format!("/api/v1/namespaces/default/pods/lines/log?sinceTime={t}"),
        );
        assert_eq!(code, 200);
        String::from_utf8(body).unwrap()
    };
    let floored = third
        .round(
            k8s_openapi::jiff::TimestampRound::new()
                .smallest(k8s_openapi::jiff::Unit::Second)
                .mode(k8s_openapi::jiff::RoundMode::Trunc),
        )
        .unwrap();
    assert_eq!(since(&third.to_string()), since(&floored.to_string()));
    assert!(since(&floored.to_string()).contains("three"));
    let future = third + k8s_openapi::jiff::SignedDuration::from_secs(60);
    assert_eq!(
        get(LogParams {
            since_time: Some(future),
            ..Default::default()
        })
        .await,
        ""
    );
    let tail_since = f.kubectl_ok(&["logs", "lines", "--tail=1"]);
    assert_eq!(tail_since, "no newline\n");
    let since = f.kubectl_ok(&["logs", "lines", "--since=1h"]);
    assert_eq!(since.lines().count(), 4);

    let e = api_error(
        pods.logs(
            "lines",
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "container nope is not valid for pod lines")
    );
    let e = api_error(
        pods.logs(
            "lines",
            &LogParams {
                tail_lines: Some(-1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
}

/// The raw-failure knob: an answer that is not a Status (an empty 404 from a proxy), as
/// kubectl sees it.
#[test]
fn raw_failures_are_not_a_status() {
    let f = Fixture::new();
    f.server.fail_next_raw(1, 404, "", Some("/pods"));
    let err = f.kubectl_err(&["get", "pods"]);
    assert!(
        err.contains("the server could not find the requested resource"),
        "{err}"
    );
    f.server
        .fail_next_raw(1, 502, "bad gateway from the proxy", Some("/pods"));
    let err = f.kubectl_err(&["get", "pods"]);
    assert!(err.contains("bad gateway from the proxy"), "{err}");
    // One answer each: the next request is served.
    f.kubectl_ok(&["get", "pods"]);
}

/// The whole-seconds knob: every stamp is truncated to its second (kubectl shows them),
/// and `sinceTime` on that second returns the whole burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_timestamps_whole_seconds_knob() {
    let f = Fixture::new();
    let pods = f.pods().await;
    pods.create(
        &PostParams::default(),
        &script_pod(
            "burst",
            json!({}),
            "for i in 1 2 3 4 5; do echo \"line $i\"; done",
        ),
    )
    .await
    .unwrap();
    f.wait_phase("burst", "Succeeded");
    f.server.set_log_timestamps_whole_seconds(true);
    let stamped = f.kubectl_ok(&["logs", "burst", "--timestamps"]);
    let stamps: Vec<Timestamp> = stamped
        .lines()
        .map(|l| l.split_once(' ').unwrap().0.parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), 5, "{stamped}");
    for t in &stamps {
        assert_eq!(t.subsec_nanosecond(), 0, "{stamped}");
    }
    let tail = f.kubectl_ok(&["logs", "burst", "--tail=2"]);
    assert_eq!(tail, "line 4\nline 5\n");
    let since = f.kubectl_ok(&["logs", "burst", &format!("--since-time={}", stamps[0])]);
    assert_eq!(since.lines().count(), 5, "{since}");
    f.server.set_log_timestamps_whole_seconds(false);
    let fine = f.kubectl_ok(&["logs", "burst", "--timestamps"]);
    assert!(
        fine.lines()
            .map(|l| l.split_once(' ').unwrap().0.parse::<Timestamp>().unwrap())
            .any(|t| t.subsec_nanosecond() != 0),
        "{fine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_before_the_container_starts() {
    let f = Fixture::new();
    let pods = f.pods().await;
    // Not scheduled yet: the apiserver has no node to ask and answers an empty 200.
    f.server.set_schedule_delay(Duration::from_secs(3600));
    pods.create(
        &PostParams::default(),
        &script_pod("unscheduled", json!({}), "echo x"),
    )
    .await
    .unwrap();
    assert_eq!(
        pods.logs("unscheduled", &LogParams::default())
            .await
            .unwrap(),
        ""
    );
    // Scheduled, but stuck ContainerCreating on a Secret volume that does not exist.
    f.server.set_schedule_delay(Duration::ZERO);
    let mut p = script_pod("creating", json!({}), "echo x");
    let spec = p.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(json!({"name": "creds", "secret": {"secretName": "later"}}))
            .unwrap(),
    ]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    f.wait_pod("creating", "scheduled", |p| {
        p.spec.as_ref().unwrap().node_name.is_some()
    });
    let e = api_error(
        pods.logs("creating", &LogParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (
            400,
            "BadRequest",
            "container \"main\" in pod \"creating\" is waiting to start: ContainerCreating"
        )
    );
    let err = f.kubectl_err(&["logs", "creating"]);
    assert!(err.contains("Error from server (BadRequest): container \"main\" in pod \"creating\" is waiting to start: ContainerCreating"), "{err}");
    let events = f.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=creating,reason=FailedMount",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert_eq!(
        events,
        "MountVolume.SetUp failed for volume \"creds\" : secret \"later\" not found"
    );
    // The Secret appears: the volume mounts and the container runs.
    f.server.put_secret(NS, "later", &[("k", "v")]);
    f.wait_phase("creating", "Succeeded");
    assert_eq!(
        pods.logs("creating", &LogParams::default()).await.unwrap(),
        "x\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_from_secrets_configmaps_and_the_downward_api() {
    let f = Fixture::new();
    f.server
        .put_secret(NS, "creds", &[("token", "s3cr3t value")]);
    f.server.put_configmap(NS, "settings", &[("mode", "fast")]);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "env", "labels": {"team": "blue"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo \"$TOKEN|$MODE|$POD|$NS|$TEAM|$GREETING|$0|$PWD\" ; test \"$HOME\" = \"$PWD\""],
            "args": ["$(MODE)-arg"],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
                {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                {"name": "GREETING", "value": "hello $(POD)"}
            ]}]}
    }))
    .unwrap();
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &pod).await.unwrap();
    f.wait_phase("env", "Succeeded");
    let out = pods.logs("env", &LogParams::default()).await.unwrap();
    let fields: Vec<&str> = out.trim_end().split('|').collect();
    assert_eq!(
        &fields[..7],
        [
            "s3cr3t value",
            "fast",
            "env",
            "default",
            "blue",
            "hello env",
            "fast-arg"
        ],
        "{out}"
    );
    assert!(
        fields[7].contains("fake-apiserver-"),
        "runs in a per-pod directory: {out}"
    );
}

/// A downwardAPI volume of the pod's annotations: written as the kubelet writes them
/// (mode 0444; a real pod mounts it read-only), and rewritten while the container runs when `kubectl annotate` changes them
/// (the path the agent reads a person's `asdo answer` from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downward_api_annotations_follow_kubectl_annotate() {
    let f = Fixture::new();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ann", "annotations": {"a": "one"}},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "answers", "downwardAPI": {"items": [
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}],
            "containers": [{
            "name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "cat \"$F\"; while ! grep -q answer \"$F\"; do sleep 0.1; done; echo ---; cat \"$F\""],
            "env": [{"name": "F", "value": "$(FAKE_KUBELET_VOLUME_ANSWERS)/annotations"}],
            "volumeMounts": [{"name": "answers", "mountPath": "/etc/asdo/answers", "readOnly": true}]}]}
    }))
    .unwrap();
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &pod).await.unwrap();
    f.wait_phase("ann", "Running");
    f.kubectl_ok(&[
        "annotate",
        "pod",
        "ann",
        "agentic-sdlc/answer.per_1={\"reply\":\"once\",\"by\":\"al\\nice\"}",
    ]);
    f.wait_phase("ann", "Succeeded");
    let out = pods.logs("ann", &LogParams::default()).await.unwrap();
    let (before, after) = out.split_once("---\n").unwrap();
    assert_eq!(before, "a=\"one\"\n", "{out}");
    assert_eq!(
        after,
        "a=\"one\"\nagentic-sdlc/answer.per_1=\"{\\\"reply\\\":\\\"once\\\",\\\"by\\\":\\\"al\\\\nice\\\"}\"\n",
        "{out}"
    );
    // What the agent's reader makes of it.
    let a = asdo::agent::answers::parse_answers_file(after);
    assert_eq!(a.len(), 1, "{out}");
    assert_eq!(
        (a[0].id.as_str(), a[0].reply.as_deref()),
        ("per_1", Some("once"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_blocks_until_it_exists() {
    let f = Fixture::new();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "needs-secret"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo got $PW"],
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "password"}}}]}]}
    }))
    .unwrap();
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = f.wait_pod("needs-secret", "blocked on the secret", |p| {
        waiting_reason(p).is_some_and(|w| w.0 == "CreateContainerConfigError")
    });
    assert_eq!(waiting_reason(&p).unwrap().1, "secret \"pw\" not found");
    assert_eq!(phase(&p), "Pending");
    let status = f.kubectl_ok(&["get", "pods", "needs-secret", "--no-headers"]);
    assert!(status.contains("CreateContainerConfigError"), "{status}");
    // The wrong key is its own message.
    f.server.put_secret(NS, "pw", &[("other", "x")]);
    f.wait_pod("needs-secret", "reporting the key", |p| {
        waiting_reason(p).is_some_and(|w| w.1 == "couldn't find key password in Secret default/pw")
    });
    f.server.put_secret(NS, "pw", &[("password", "hunter2")]);
    f.wait_phase("needs-secret", "Succeeded");
    assert_eq!(
        pods.logs("needs-secret", &LogParams::default())
            .await
            .unwrap(),
        "got hunter2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_failure_backs_off_and_never_runs() {
    let f = Fixture::new();
    f.server.set_schedule_delay(Duration::ZERO);
    let mut pod = script_pod("pull", json!({}), "echo should-not-run");
    pod.spec.as_mut().unwrap().containers[0].image =
        Some("registry.example/does-not-exist:1".into());
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = f.wait_pod("pull", "ErrImagePull", |p| {
        waiting_reason(p).is_some_and(|w| w.0 == "ErrImagePull")
    });
    assert!(waiting_reason(&p).unwrap().1.contains("not found"));
    let e = api_error(pods.logs("pull", &LogParams::default()).await.unwrap_err());
    assert_eq!(
        e.message,
        "container \"main\" in pod \"pull\" is waiting to start: image can't be pulled"
    );
    let p = f.wait_pod("pull", "ImagePullBackOff", |p| {
        waiting_reason(p).is_some_and(|w| w.0 == "ImagePullBackOff")
    });
    assert_eq!(
        waiting_reason(&p).unwrap().1,
        "Back-off pulling image \"registry.example/does-not-exist:1\""
    );
    assert_eq!(phase(&p), "Pending");
    let line = f.kubectl_ok(&["get", "pod", "pull", "--no-headers"]);
    assert!(line.contains("ImagePullBackOff"), "{line}");
    let e = api_error(pods.logs("pull", &LogParams::default()).await.unwrap_err());
    assert!(
        e.message.ends_with("trying and failing to pull image"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_returns_the_pod_and_kills_the_process() {
    let f = Fixture::new();
    let pods = f.pods().await;
    f.running_script(
        &pods,
        "sleeper",
        "echo $$$$ > \"$HOME/pid\"; echo up; exec sleep 60",
    )
    .await;
    let mut follow = pods
        .log_stream("sleeper", &follow_params())
        .await
        .unwrap()
        .lines();
    assert_eq!(follow.try_next().await.unwrap().unwrap(), "up");
    let pid_file = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("fake-apiserver-{}-", std::process::id()))
        })
        .map(|e| e.path().join(NS))
        .flat_map(|d| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("pid"))
        })
        .find(|p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sleeper-")
                && p.exists()
        })
        .expect("the pod wrote its pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let deleted = pods
        .delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    let Either::Left(pod) = deleted else {
        panic!("a pod delete returns the pod")
    };
    assert_eq!(pod.metadata.name.as_deref(), Some("sleeper"));
    assert!(pod.metadata.deletion_timestamp.is_some());
    // SIGTERM ends `sleep` at once; the open log stream then ends too.
    let end = tokio::time::timeout(SECONDS, follow.try_next())
        .await
        .expect("the log stream ends");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    let gone = Instant::now() + SECONDS;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < gone, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = api_error(pods.get("sleeper").await.unwrap_err());
    assert_eq!(e.code, 404);
    let e = api_error(
        pods.delete("sleeper", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"sleeper\" not found")
    );
    let events = f.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Killing",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert_eq!(events, "Stopping container main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletecollection_by_label_and_field_selector() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let pp = PostParams::default();
    pods.create(&pp, &script_pod("done-a", json!({"app": "c"}), "true"))
        .await
        .unwrap();
    pods.create(&pp, &script_pod("done-b", json!({"app": "c"}), "true"))
        .await
        .unwrap();
    pods.create(&pp, &script_pod("failed", json!({"app": "c"}), "exit 1"))
        .await
        .unwrap();
    pods.create(&pp, &script_pod("done-other", json!({"app": "d"}), "true"))
        .await
        .unwrap();
    for n in ["done-a", "done-b", "done-other"] {
        f.wait_phase(n, "Succeeded");
    }
    f.wait_phase("failed", "Failed");

    let lp = ListParams::default()
        .labels("app=c")
        .fields("status.phase=Succeeded");
    let dry = pods
        .delete_collection(
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
            &lp,
        )
        .await
        .unwrap();
    assert_eq!(names(&dry.left().unwrap().items), ["done-a", "done-b"]);
    assert_eq!(f.server.pods(NS).len(), 4, "dry run deletes nothing");
    let deleted = pods
        .delete_collection(&DeleteParams::default(), &lp)
        .await
        .unwrap();
    assert_eq!(
        names(&deleted.left().expect("a PodList").items),
        ["done-a", "done-b"]
    );
    assert_eq!(names(&f.server.pods(NS)), ["done-other", "failed"]);

    let out = f.kubectl_ok(&[
        "delete",
        "pods",
        "-l",
        "app",
        "--field-selector",
        "status.phase!=Failed",
    ]);
    assert_eq!(out, "pod \"done-other\" deleted\n");
    assert_eq!(f.kubectl_ok(&["get", "pods", "-o", "name"]), "pod/failed\n");
    let deletes = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert!(deletes >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_patch_labels_and_unsupported_patch_types() {
    let f = Fixture::new();
    f.server.set_schedule_delay(Duration::from_secs(3600));
    let pods = f.pods().await;
    let created = pods
        .create(
            &PostParams::default(),
            &script_pod("patched", json!({"a": "1"}), "true"),
        )
        .await
        .unwrap();
    let patch =
        json!({"metadata": {"labels": {"a": null, "b": "2"}, "annotations": {"note": "x"}}});
    let p = pods
        .patch("patched", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        p.metadata.labels.unwrap(),
        [("b".to_string(), "2".to_string())].into()
    );
    assert_eq!(p.metadata.uid, created.metadata.uid);
    assert_ne!(
        p.metadata.resource_version,
        created.metadata.resource_version
    );
    let e = api_error(
        pods.patch(
            "patched",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Always"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "pod spec is immutable: {e:?}");
    let err = f.kubectl_err(&[
        "patch",
        "pod",
        "patched",
        "--type=json",
        "-p",
        "[{\"op\":\"remove\",\"path\":\"/metadata/labels/b\"}]",
    ]);
    assert!(
        err.contains("application/json-patch+json is not supported"),
        "{err}"
    );
    f.kubectl_ok(&["label", "pod", "patched", "c=3"]);
    assert_eq!(
        f.kubectl_ok(&["get", "pods", "-l", "c=3", "-o", "name"]),
        "pod/patched\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_then_success() {
    let f = Fixture::new();
    let pods = f.pods().await;
    f.server.fail_next(1, 500);
    let e = api_error(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(
        pods.list(&ListParams::default()).await.is_ok(),
        "only the next request fails"
    );

    f.server.fail_next_matching(1, 500, "POST", "/pods");
    assert!(
        pods.list(&ListParams::default()).await.is_ok(),
        "a GET does not match"
    );
    let e = api_error(
        pods.create(
            &PostParams::default(),
            &script_pod("retry", json!({}), "true"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    // kube-rs retries 503 (and 429, 504) on its own: two failures, then the create goes through.
    f.server.fail_next_matching(2, 503, "POST", "/pods");
    pods.create(
        &PostParams::default(),
        &script_pod("retry", json!({}), "true"),
    )
    .await
    .unwrap();
    f.server.fail_next(1, 429);
    let (code, head, _) = raw_get(&f.server, "/api/v1/namespaces/default/pods");
    assert_eq!(code, 429);
    assert!(head.to_lowercase().contains("retry-after: 1"), "{head}");
    let statuses: Vec<u16> = f
        .server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 200, 200, 500, 503, 503, 201, 429]);

    f.server.set_response_delay(Duration::from_millis(300));
    let t = Instant::now();
    pods.get("retry").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    f.server.set_response_delay(Duration::ZERO);
    let err = {
        f.server.fail_next_matching(1, 500, "GET", "/pods/retry");
        f.kubectl_err(&["get", "pod", "retry"])
    };
    assert!(err.contains("(InternalError)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_namespace_is_rbac_403() {
    let f = Fixture::new();
    f.server.create_namespace("locked");
    f.server.forbid_namespace("locked");
    let client = f.client().await;
    let locked: Api<Pod> = Api::namespaced(client.clone(), "locked");
    let e = api_error(locked.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "pods is forbidden: User \"fake\" cannot list resource \"pods\" in API group \"\" in the namespace \"locked\""
    );
    let e = api_error(
        locked
            .create(&PostParams::default(), &script_pod("x", json!({}), "true"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("cannot create resource \"pods\""),
        "{e:?}"
    );
    let e = api_error(locked.logs("x", &LogParams::default()).await.unwrap_err());
    assert!(
        e.message.starts_with("pods \"x\" is forbidden") && e.message.contains("\"pods/log\""),
        "{e:?}"
    );

    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let ask = |ns: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some("create".into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = PostParams::default();
    assert!(
        !reviews
            .create(&pp, &ask("locked"))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    assert!(
        reviews
            .create(&pp, &ask(NS))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );

    let err = f.kubectl_err(&["get", "pods", "-n", "locked"]);
    assert!(err.contains("Error from server (Forbidden): pods is forbidden: User \"fake\" cannot list resource \"pods\""), "{err}");
    assert_eq!(
        f.kubectl(&["auth", "can-i", "create", "pods", "-n", "locked"])
            .stdout,
        b"no\n"
    );
    assert_eq!(f.kubectl_ok(&["auth", "can-i", "create", "pods"]), "yes\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_streams_cut_without_the_terminating_chunk() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let script = "i=0; while [ $i -lt 20 ]; do echo \"line number $i\"; i=$((i+1)); done";
    pods.create(
        &PostParams::default(),
        &script_pod("chatty", json!({}), script),
    )
    .await
    .unwrap();
    f.wait_phase("chatty", "Succeeded");
    f.server.set_log_drop_after_bytes(Some(50));
    // On the wire: 50 bytes of chunked body, then the connection closes without the final 0-length chunk.
    let (code, _, raw) = raw_get(&f.server, "/api/v1/namespaces/default/pods/chatty/log");
    assert_eq!(code, 200);
    let raw = String::from_utf8(raw).unwrap();
    let first_50 = "line number 0\nline number 1\nline number 2\nline num";
    assert_eq!(
        raw,
        format!("32\r\n{first_50}\r\n"),
        "one 0x32-byte chunk, then no terminating chunk"
    );
    // kube-rs sees a body error after exactly those bytes, each time it asks.
    for _ in 0..2 {
        let mut body = pods.log_stream("chatty", &follow_params()).await.unwrap();
        let mut got = vec![];
        let result = body.read_to_end(&mut got).await;
        assert_eq!(got.len(), 50);
        assert!(result.is_err(), "a cut is an error, not EOF");
    }
    f.server.set_log_drop_after_bytes(None);
    assert_eq!(
        pods.logs("chatty", &LogParams::default())
            .await
            .unwrap()
            .lines()
            .count(),
        20
    );

    // drop_log_streams_now cuts streams that are open right now.
    f.running_script(&pods, "quiet", "echo first; exec sleep 60")
        .await;
    let mut lines = pods
        .log_stream("quiet", &follow_params())
        .await
        .unwrap()
        .lines();
    assert_eq!(lines.try_next().await.unwrap().unwrap(), "first");
    f.server.drop_log_streams_now();
    let next = tokio::time::timeout(SECONDS, lines.try_next())
        .await
        .expect("cut promptly");
    assert!(next.is_err(), "{next:?}");
    // A new stream works again (and starts over).
    let mut lines = pods
        .log_stream("quiet", &follow_params())
        .await
        .unwrap()
        .lines();
    assert_eq!(lines.try_next().await.unwrap().unwrap(), "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_and_deadline_exceeded() {
    let f = Fixture::new();
    f.server
        .set_unschedulable(Some("0/1 nodes are available: 1 Insufficient cpu."));
    let pods = f.pods().await;
    pods.create(
        &PostParams::default(),
        &script_pod("stuck", json!({}), "echo ran"),
    )
    .await
    .unwrap();
    let p = f.wait_pod("stuck", "unschedulable", |p| {
        p.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
    });
    let c = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        c.message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient cpu.")
    );
    let describe = f.kubectl_ok(&["describe", "pod", "stuck"]);
    assert!(
        describe.contains("FailedScheduling") && describe.contains("Insufficient cpu"),
        "{describe}"
    );
    f.server.set_unschedulable(None);
    f.wait_phase("stuck", "Succeeded");

    let mut p = script_pod("slow", json!({}), "sleep 60");
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    f.server.set_schedule_delay(Duration::ZERO);
    pods.create(&PostParams::default(), &p).await.unwrap();
    f.wait_phase("slow", "Failed");
    let p = f.server.pod(NS, "slow").unwrap();
    let st = p.status.as_ref().unwrap();
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert_eq!(exit_code(&p), Some((143, "Error".into())), "SIGTERM");
}

#[test]
fn inserted_pods_are_stored_as_given() {
    let f = Fixture::new();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "old", "namespace": NS, "creationTimestamp": "2020-01-01T00:00:00Z", "labels": {"app": "x"}},
        "spec": {"nodeName": "fake-node", "containers": [{"name": "main", "image": "busybox", "command": ["false"]}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed", "containerID": "fake://old"}}}]}
    }))
    .unwrap();
    f.server.insert_pod(pod);
    let stored = f.server.pod(NS, "old").unwrap();
    assert!(stored.metadata.uid.is_some() && stored.metadata.resource_version.is_some());
    assert_eq!(
        stored.metadata.creation_timestamp.unwrap().0.to_string(),
        "2020-01-01T00:00:00Z"
    );
    let line = f.kubectl_ok(&["get", "pods", "old", "--no-headers"]);
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[..4], ["old", "0/1", "Completed", "0"], "{line}");
    assert!(
        cols[4].ends_with('y') || cols[4].contains('y'),
        "years old: {line}"
    );
    assert_eq!(
        f.kubectl_ok(&["logs", "old"]),
        "",
        "a container the fake never ran has an empty log"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        phase(&f.server.pod(NS, "old").unwrap()),
        "Succeeded",
        "not run by the kubelet"
    );

    // Without a phase, the kubelet runs it.
    f.server
        .insert_pod(script_pod("fresh", json!({}), "echo hi"));
    f.wait_phase("fresh", "Succeeded");
    assert_eq!(f.kubectl_ok(&["logs", "fresh"]), "hi\n");
}

#[test]
fn kubectl_run_logs_get_delete() {
    let f = Fixture::new();
    let out = f.kubectl_ok(&[
        "run",
        "k1",
        "--image=busybox",
        "--labels=app=k",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo hello; sleep 0.3; echo world >&2; exit 3",
    ]);
    assert_eq!(out, "pod/k1 created\n");
    f.wait_phase("k1", "Running");
    assert_eq!(f.kubectl_ok(&["logs", "-f", "k1"]), "hello\nworld\n");
    f.wait_phase("k1", "Failed");
    let line = f.kubectl_ok(&["get", "pods", "-l", "app=k", "--no-headers"]);
    assert_eq!(
        line.split_whitespace().take(4).collect::<Vec<_>>(),
        ["k1", "0/1", "Error", "0"],
        "{line}"
    );
    let wide = f.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("fake-node") && wide.contains("10.0."),
        "{wide}"
    );
    assert_eq!(
        f.kubectl_ok(&[
            "get",
            "pod",
            "k1",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}"
        ]),
        "3"
    );

    // create -f and apply -f with server-side field validation.
    let manifest = f.dir.join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: k2\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    comand: [x]\n").unwrap();
    let err = f.kubectl_err(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].comand\""),
        "{err}"
    );
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("comand: [x]", "command: [\"true\"]"),
    )
    .unwrap();
    assert_eq!(
        f.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]),
        "pod/k2 created\n"
    );
    f.kubectl_ok(&["create", "secret", "generic", "s", "--from-literal=k=v"]);
    assert_eq!(
        f.kubectl_ok(&["get", "secret", "s", "-o", "jsonpath={.data.k}"]),
        "dg=="
    );

    assert_eq!(
        f.kubectl_ok(&["delete", "pod", "k1"]),
        "pod \"k1\" deleted\n"
    );
    let err = f.kubectl_err(&["delete", "pod", "k1"]);
    assert!(
        err.contains("Error from server (NotFound): pods \"k1\" not found"),
        "{err}"
    );
}

/// The fault knobs asdo's reliability tests use, seen by kubectl as an independent client.
#[test]
fn fault_knobs_as_kubectl_sees_them() {
    let f = Fixture::new();
    // Accept and never answer: kubectl's own --request-timeout fires.
    f.server.hang_next_matching(1, Some("GET"), Some("/pods"));
    let err = f.kubectl_err(&["get", "pods", "--request-timeout=1s"]);
    let e = err.to_lowercase();
    assert!(e.contains("timeout") || e.contains("deadline"), "{err}");
    // The fake notices the client gave up and frees the hung connection.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.server.connections().0 > 0 && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(f.server.connections().0, 0);
    f.kubectl_ok(&["get", "pods", "--request-timeout=5s"]);

    // A connection reset once the head of a create is read: kubectl (which retries no
    // POST) reports the connection lost; nothing was stored; the next create works.
    f.server.reset_next_matching(1, "POST", "/configmaps");
    let err = f.kubectl_err(&["create", "configmap", "cut", "--from-literal=a=b"]);
    let e = err.to_lowercase();
    assert!(e.contains("connection reset") || e.contains("eof"), "{err}");
    assert_eq!(
        f.kubectl(&["get", "configmap", "cut"]).status.code(),
        Some(1),
        "not stored"
    );
    f.kubectl_ok(&["create", "configmap", "cut", "--from-literal=a=b"]);

    // A create stored, then answered 504: kubectl reports the 504, the pod is there.
    f.server.fail_next_after_handling(1, 504, "POST", "/pods");
    let out = f.kubectl(&[
        "run",
        "k504",
        "--image=busybox",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "true",
    ]);
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stdout).contains("created"));
    assert_eq!(
        f.kubectl_ok(&["get", "pod", "k504", "-o", "name"]),
        "pod/k504\n",
        "stored although the answer was an error"
    );

    // A pull that fails for a while, then starts.
    f.kubectl_ok(&[
        "run",
        "slow",
        "--image=registry.example/slow-pull:1",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo pulled",
    ]);
    let mut seen_backoff = false;
    for _ in 0..200 {
        let reason = f.kubectl_ok(&[
            "get",
            "pod",
            "slow",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ]);
        seen_backoff |= reason == "ImagePullBackOff" || reason == "ErrImagePull";
        if f.kubectl_ok(&["get", "pod", "slow", "-o", "jsonpath={.status.phase}"]) == "Succeeded" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(seen_backoff, "the pull failed first");
    assert_eq!(f.kubectl_ok(&["logs", "slow"]), "pulled\n");

    // A restart that keeps the revision: a watch from before resumes, not 410.
    let rv = f.server.resource_version();
    let other = FakeApiServer::start();
    other.advance_resource_version(rv);
    assert!(other.resource_version() >= rv);
}

/// Knobs used by asdo's hostile-input tests, as kubectl sees them: a 503 answered
/// exactly N times, and a container log that is not UTF-8, served byte for byte.
#[test]
fn n_503s_and_log_bytes_that_are_not_utf8_for_kubectl() {
    let f = Fixture::new();
    f.server.fail_next_matching(2, 503, "GET", "/pods");
    for _ in 0..2 {
        let err = f.kubectl_err(&["get", "pods"]);
        let e = err.to_lowercase();
        assert!(
            e.contains("503") || e.contains("unavailable") || e.contains("try again"),
            "{err}"
        );
    }
    f.kubectl_ok(&["get", "pods"]);

    let script = r"printf 'asdo: cloning\n\377\376 binary \200\nasdo: done abc123\n'";
    f.server.insert_pod(script_pod("bytes", json!({}), script));
    f.wait_phase("bytes", "Succeeded");
    let out = f.kubectl(&["logs", "bytes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout,
        b"asdo: cloning\n\xff\xfe binary \x80\nasdo: done abc123\n".to_vec()
    );
}

/// The TLS mode as kubectl sees it: kubectl verifies the test CA, negotiates h2 in ALPN
/// and multiplexes its requests as HTTP/2 streams; with the stream limit at 2, kubectl
/// (Go's HTTP/2 transport) opens a second connection for its third concurrent log stream.
#[test]
fn kubectl_negotiates_h2_over_tls_and_the_stream_limit_holds() {
    let f = Fixture::with_server(FakeApiServer::start_tls(Some(2)));
    assert!(f.server.url().starts_with("https://127.0.0.1:"));
    assert_eq!(
        f.kubectl_ok(&["get", "ns", "default", "-o", "name"]),
        "namespace/default\n"
    );
    let (h2_conns, h2_streams) = f.server.h2_counts();
    assert!(
        h2_conns >= 1 && h2_streams >= 1,
        "{:?}",
        f.server.h2_counts()
    );
    assert_eq!(
        h2_conns,
        f.server.accepted_connections(),
        "every connection kubectl made negotiated h2"
    );

    // Three pods that print, then wait for the test's go before they end.
    let go = f.dir.join("go");
    for i in 0..3 {
        let script = format!(
            "echo start-{i}; while [ ! -e {} ]; do sleep 0.05; done; echo end-{i}",
            go.display()
        );
        f.kubectl_ok(&[
            "run",
            &format!("h{i}"),
            "--image=busybox",
            "--labels=app=h",
            "--restart=Never",
            "--command",
            "--",
            "sh",
            "-c",
            &script,
        ]);
    }
    for i in 0..3 {
        f.wait_phase(&format!("h{i}"), "Running");
    }
    let before = f.server.accepted_connections();
    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&f.kubeconfig)
        .arg("--cache-dir")
        .arg(f.dir.join("kubectl-cache"))
        .args([
            "logs",
            "-f",
            "-l",
            "app=h",
            "--prefix",
            "--max-log-requests=3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    let mut out = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut lines = vec![];
    // All three streams are open at once before any pod may end.
    while lines
        .iter()
        .filter(|l: &&String| l.contains("start-"))
        .count()
        < 3
    {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "kubectl ended: {lines:?}"
        );
        lines.push(line);
    }
    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(follow.wait().unwrap().success());
    lines.extend(rest.lines().map(|l| format!("{l}\n")));
    for i in 0..3 {
        let prefix = format!("[pod/h{i}/h{i}] ");
        assert!(lines.contains(&format!("{prefix}start-{i}\n")), "{lines:?}");
        assert!(lines.contains(&format!("{prefix}end-{i}\n")), "{lines:?}");
    }
    let (h2_conns, _) = f.server.h2_counts();
    assert!(
        f.server.accepted_connections() - before >= 2,
        "3 streams over connections of at most 2: a second connection ({} accepted, {h2_conns} h2)",
        f.server.accepted_connections()
    );
    assert_eq!(h2_conns, f.server.accepted_connections());
}

/// Scheduling gates, seen by kubectl: a gated pod stays Pending and unscheduled
/// (`kubectl get` prints SchedulingGated, as against a real cluster) until its gates
/// are removed; gates can only be removed; Kueue's pod webhook mode gates the pods
/// that carry the queue-name label and nothing else.
#[test]
fn scheduling_gates_hold_a_pod_until_removed() {
    let f = Fixture::new();
    f.server.set_schedule_delay(Duration::ZERO);
    let manifest = f.dir.join("gated.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gated\nspec:\n  restartPolicy: Never\n  schedulingGates:\n  - name: example.com/hold\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo released']\n",
    )
    .unwrap();
    assert_eq!(
        f.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]),
        "pod/gated created\n"
    );
    let gated = |p: &Pod| {
        p.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("SchedulingGated")
                    && c.message.as_deref()
                        == Some("Scheduling is blocked due to non-empty scheduling gates")
            })
    };
    let p = f.wait_pod("gated", "SchedulingGated", gated);
    assert_eq!(phase(&p), "Pending");
    assert!(
        p.spec.as_ref().unwrap().node_name.is_none(),
        "not scheduled"
    );
    assert!(
        p.status.as_ref().unwrap().start_time.is_none(),
        "the kubelet never saw it"
    );
    let line = f.kubectl_ok(&["get", "pod", "gated", "--no-headers"]);
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..4],
        ["gated", "0/1", "SchedulingGated", "0"],
        "{line}"
    );
    // Gates can be removed, never added (and not with nodeName set on create).
    let err = f.kubectl_err(&[
        "patch",
        "pod",
        "gated",
        "--type=merge",
        "-p",
        r#"{"spec":{"schedulingGates":[{"name":"example.com/hold"},{"name":"example.com/more"}]}}"#,
    ]);
    assert!(
        err.contains("only deletion is allowed, but found new scheduling gate 'example.com/more'"),
        "{err}"
    );
    std::fs::write(
        f.dir.join("bound.yaml"),
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("name: gated", "name: bound")
            .replace(
                "  schedulingGates:",
                "  nodeName: fake-node\n  schedulingGates:",
            ),
    )
    .unwrap();
    let err = f.kubectl_err(&["apply", "-f", f.dir.join("bound.yaml").to_str().unwrap()]);
    assert!(
        err.contains(
            "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"
        ),
        "{err}"
    );
    // kubectl's default (strategic merge) patch removing the gates releases the pod.
    f.kubectl_ok(&[
        "patch",
        "pod",
        "gated",
        "-p",
        r#"{"spec":{"schedulingGates":null}}"#,
    ]);
    f.wait_phase("gated", "Succeeded");
    assert_eq!(f.kubectl_ok(&["logs", "gated"]), "released\n");
    let p = f.server.pod(NS, "gated").unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("fake-node"));

    // Kueue's pod webhook: the queue-name label gets the admission gate and the managed label.
    f.server.set_kueue_pod_webhook(true);
    let run = |name: &str, labels: &str| {
        f.kubectl_ok(&[
            "run",
            name,
            "--image=busybox",
            "--restart=Never",
            &format!("--labels={labels}"),
            "--command",
            "--",
            "sh",
            "-c",
            "echo admitted",
        ])
    };
    run("queued", "kueue.x-k8s.io/queue-name=team-a,app=x");
    run("plain", "app=x");
    assert_eq!(
        f.kubectl_ok(&[
            "get",
            "pod",
            "queued",
            "-o",
            "jsonpath={.spec.schedulingGates[*].name} {.metadata.labels.kueue\\.x-k8s\\.io/managed}"
        ]),
        "kueue.x-k8s.io/admission true"
    );
    f.wait_pod("queued", "SchedulingGated", gated);
    f.wait_phase("plain", "Succeeded");
    let table = f.kubectl_ok(&["get", "pods", "-l", "app=x", "--no-headers"]);
    let status: Vec<(&str, &str)> = table
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[0], c[2])
        })
        .collect();
    assert_eq!(
        status,
        [("plain", "Completed"), ("queued", "SchedulingGated")],
        "{table}"
    );
    assert!(f.server.release_scheduling_gates(NS, "queued"));
    assert!(
        !f.server.release_scheduling_gates(NS, "queued"),
        "no gates left to release"
    );
    f.wait_phase("queued", "Succeeded");
    assert_eq!(f.kubectl_ok(&["logs", "queued"]), "admitted\n");
    // Admission never gated the pod without the label, nor is there any Event about gating.
    let events = f.kubectl_ok(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=queued",
    ]);
    assert!(!events.contains("FailedScheduling"), "{events}");
}
