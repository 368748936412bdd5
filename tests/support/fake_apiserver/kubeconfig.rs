//! A kubeconfig pointing kubectl and kube-rs at the fake API server.

use std::path::{Path, PathBuf};

pub(crate) fn write(dir: &Path, server_url: &str, namespace: &str, ca: Option<&Path>) -> PathBuf {
    let ca = ca
        .map(|file| format!("\n    certificate-authority: {}", file.display()))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake-apiserver
  cluster:
    server: {server_url}{ca}
contexts:
- name: fake
  context:
    cluster: fake-apiserver
    user: fake
    namespace: {namespace}
current-context: fake
users:
- name: fake
  user:
    token: fake-token
preferences: {{}}
"
    );
    std::fs::create_dir_all(dir).expect("create kubeconfig directory");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}
