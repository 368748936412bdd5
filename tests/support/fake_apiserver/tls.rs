//! The fake API server's TLS mode: a test CA and a server certificate for 127.0.0.1
//! made with the `openssl` CLI when the server starts, and a rustls acceptor that offers
//! h2 and http/1.1 in ALPN, as kube-apiserver does. What the client picked is counted
//! (see `Counters`), so tests can show that kubectl and asdo negotiate HTTP/2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Connection and stream counts, whatever the protocol.
#[derive(Default)]
pub struct Counters {
    /// TCP connections accepted since the start.
    pub accepted: AtomicUsize,
    /// Of those, connections that negotiated h2 in ALPN.
    pub h2_connections: AtomicUsize,
    /// Requests that came as HTTP/2 streams.
    pub h2_streams: AtomicUsize,
}

/// Files of the test PKI, under the server's work directory.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA, and a server certificate it signed for IP 127.0.0.1 and localhost.
pub fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).expect("create the TLS directory");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "3", "-subj", "/CN=fake-apiserver-ca"],
        ]
        .concat(),
        &[("-keyout", p("ca.key")), ("-out", p("ca.pem"))],
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=fake-apiserver"]].concat(),
        &[("-keyout", p("server.key")), ("-out", p("server.csr"))],
    );
    openssl(
        &["x509", "-req", "-days", "3", "-set_serial", "2"],
        &[
            ("-in", p("server.csr")),
            ("-CA", p("ca.pem")),
            ("-CAkey", p("ca.key")),
            ("-extfile", p("server.ext")),
            ("-out", p("server.pem")),
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

fn openssl(args: &[&str], files: &[(&str, String)]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    let out = cmd
        .output()
        .expect("run openssl (the fake API server's TLS mode needs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// h2 first, then http/1.1, as kube-apiserver offers them.
pub fn acceptor(pki: &Pki) -> TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .expect("read server.pem")
        .collect::<Result<_, _>>()
        .expect("parse server.pem");
    let key = PrivateKeyDer::from_pem_file(&pki.key).expect("read server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
