//! Where tasks run. `local`: on this machine, one detached `asdo agent` per task in a
//! bubblewrap sandbox, its state and log under the user's XDG state directory. (The
//! Kubernetes runtime is the rest of the crate: `cluster`, `render`, `follow`.)

pub mod local;

/// `--runtime` / `ASDO_RUNTIME`: where tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// Pods in a cluster (the kubeconfig's, or in-cluster).
    #[default]
    Kubernetes,
    /// This machine: a detached `asdo agent` per task in bubblewrap, state under
    /// $XDG_STATE_HOME/asdo.
    Local,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kubernetes => "kubernetes",
            Kind::Local => "local",
        }
    }
}
