//! pods/portforward: kube-rs (`Api::<Pod>::portforward`, what asdo uses) and an
//! independent client, the PyPI `websockets` library (ws_portforward.py), both
//! reach an HTTP server that a pod's process runs on its mapped containerPort.
//!
//! kubectl is not a client here: kubectl 1.32 speaks SPDY (tunnelled over
//! WebSocket, or a SPDY upgrade), which the fake does not serve; the last test
//! pins that down so the docs stay honest.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POD_PORT: u16 = 8080;
const PAGE: &str = "hello through the forward\n";

/// A pod whose process serves `index.html` over HTTP on its containerPort's local port.
fn http_pod(name: &str) -> Pod {
    let script = format!(
        "printf '{}' > index.html && exec python3 -m http.server --bind 127.0.0.1 \"$FAKE_KUBELET_PORT_{POD_PORT}\"",
        PAGE.trim_end().to_owned() + "\\n"
    );
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "python:3", "command": ["sh", "-c", script],
            "ports": [{"name": "http", "containerPort": POD_PORT}]}]}
    }))
    .unwrap()
}

const REQUEST: &[u8] = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n";

/// Running is not listening: retry the request until python has bound its port.
async fn get_through_kube(pods: &Api<Pod>, name: &str) -> String {
    let end = Instant::now() + SECONDS;
    loop {
        let mut pf = pods.portforward(name, &[POD_PORT]).await.unwrap();
        let mut stream = pf.take_stream(POD_PORT).unwrap();
        let error = pf.take_error(POD_PORT).unwrap();
        stream.write_all(REQUEST).await.unwrap();
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out).await;
        if out.contains("200 OK") {
            return out;
        }
        let why = error.await;
        assert!(
            Instant::now() < end,
            "no answer through the forward: {out:?}, error channel {why:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_reaches_the_pods_port_with_kube_rs() {
    let f = Fixture::new();
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &http_pod("web"))
        .await
        .unwrap();
    f.wait_phase("web", "Running");
    let out = get_through_kube(&pods, "web").await;
    assert!(out.ends_with(PAGE), "{out:?}");

    // A port the container does not declare: the error channel says so.
    let mut pf = pods.portforward("web", &[9999]).await.unwrap();
    let err = pf.take_error(9999).unwrap().await.unwrap_or_default();
    assert!(err.contains("port 9999 is not a containerPort"), "{err:?}");

    let recorded = f.server.requests();
    let r = recorded
        .iter()
        .find(|r| r.path.ends_with("/pods/web/portforward"))
        .unwrap();
    assert_eq!((r.method.as_str(), r.status), ("GET", 101));
    assert!(r.query.contains("ports=8080"), "{}", r.query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_refuses_finished_missing_and_forbidden_pods() {
    let f = Fixture::new();
    let pods = f.pods().await;
    let status = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    };
    let (code, msg) = status(pods.portforward("nope", &[80]).await.err().unwrap());
    assert_eq!(code, 404, "{msg}");

    pods.create(
        &PostParams::default(),
        &script_pod("done", json!({}), "true"),
    )
    .await
    .unwrap();
    f.wait_phase("done", "Succeeded");
    let (code, msg) = status(pods.portforward("done", &[80]).await.err().unwrap());
    assert_eq!(code, 400);
    assert!(msg.contains("not running (phase Succeeded)"), "{msg}");

    f.server.create_namespace("locked");
    f.server.forbid_namespace("locked");
    let locked: Api<Pod> = Api::namespaced(f.client().await, "locked");
    let (code, msg) = status(locked.portforward("x", &[80]).await.err().unwrap());
    assert_eq!(code, 403);
    assert!(msg.contains("pods/portforward"), "{msg}");
}

/// The interpreter of .ci/py-tools.sh's venv (or $ASDO_TEST_PYTHON).
pub fn test_python() -> PathBuf {
    let p = std::env::var_os("ASDO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/py-tests/bin/python")
        });
    assert!(
        p.exists(),
        "{} is missing: run `bash .ci/py-tools.sh` (installs the PyPI clients the tests use)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_serves_an_independent_websocket_client() {
    let f = Fixture::new();
    let pods = f.pods().await;
    pods.create(&PostParams::default(), &http_pod("web"))
        .await
        .unwrap();
    f.wait_phase("web", "Running");
    // Wait until the pod listens, through kube-rs, so the Python run is one clean exchange.
    get_through_kube(&pods, "web").await;
    let request = f.dir.join("request.http");
    std::fs::create_dir_all(&f.dir).unwrap();
    std::fs::write(&request, REQUEST).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_apiserver/ws_portforward.py");
    let out = tokio::process::Command::new(test_python())
        .arg(&script)
        .args([&f.server.url(), NS, "web", &POD_PORT.to_string()])
        .arg(&request)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python websockets client: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("HTTP/1.0 200 OK"), "{stdout}");
    assert!(stdout.ends_with(PAGE), "{stdout}");

    // The error channel, seen by the same client.
    let out = tokio::process::Command::new(test_python())
        .arg(&script)
        .args([&f.server.url(), NS, "web", "9999"])
        .arg(&request)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port 9999 is not a containerPort"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubectl_port_forward_is_not_served() {
    let f = Fixture::new();
    f.server.insert_pod(http_pod("web"));
    f.wait_phase("web", "Running");
    // kubectl tries SPDY over WebSocket, then a SPDY upgrade: the fake refuses both.
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&f.kubeconfig)
        .args([
            "port-forward",
            "pod/web",
            ":8080",
            "--pod-running-timeout=5s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + SECONDS * 3;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("kubectl port-forward kept running against the fake");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    let tried: Vec<_> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/portforward"))
        .map(|r| (r.method, r.status))
        .collect();
    // First the WebSocket (SPDY/3.1+portforward.k8s.io), then the SPDY upgrade.
    let want = [("GET".to_string(), 400), ("POST".to_string(), 400)];
    assert_eq!(tried, want, "{err}");
    assert!(err.contains("over WebSocket only"), "{err}");
}

/// The fault knobs reach the subresource: 403 on pods/portforward, as kubectl sees it
/// (its WebSocket try and its SPDY fallback both refused, RBAC-style).
#[test]
fn an_injected_403_on_portforward_is_what_kubectl_sees() {
    let f = Fixture::new();
    f.server.insert_pod(http_pod("web"));
    f.wait_phase("web", "Running");
    f.server
        .fail_next_matching(1, 403, "GET", "/pods/web/portforward");
    f.server
        .fail_next_matching(1, 403, "POST", "/pods/web/portforward");
    let out = f.kubectl(&[
        "port-forward",
        "pod/web",
        ":8080",
        "--pod-running-timeout=5s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("forbidden"), "{err}");
    let statuses: Vec<u16> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/portforward"))
        .map(|r| r.status)
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 403),
        "{statuses:?}"
    );
}
