//! Where tasks run. `local`: on this machine, one detached `asdo agent` per task in a
//! bubblewrap sandbox, its state and log under the user's XDG state directory. (The
//! Kubernetes runtime is the rest of the crate: `cluster`, `render`, `follow`.)

pub mod local;
