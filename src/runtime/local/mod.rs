//! The local runtime: a task on this machine, no cluster. Each task is a directory in
//! the user's state directory holding everything a pod would have (its clone, its HOME,
//! its log) plus what the kubelet would know (the process, its start and end, its exit
//! code). Who writes what, so no two processes write one file:
//!
//! - `spawn` creates the directory exclusively (the claim on the task id), writes
//!   `spec.json`, the 0600 `password`, the prompt under `input/`, starts the runner and
//!   records it in `launch.json` (pid + start time: a reused pid is not mistaken for it);
//! - the runner (`asdo local-runner <dir>`, detached in its own session) owns
//!   `state.json`: queued, started (port, agent pid), finished (exit code), each written
//!   atomically; and `log`, each line stamped as the kubelet stamps `timestamps=true`
//!   lines, so `logs` resumes and tails exactly as it does against the API server.
//!
//! A task whose runner is gone without an exit code is `Failed (lost)`: killed, or the
//! machine rebooted (the boot id is part of the process identity).

pub mod doctor;
pub mod logfile;
pub mod logs;
pub mod pod;
pub mod proc;
pub mod remote;
pub mod runner;
pub mod sandbox;
pub mod slots;
pub mod spawn;
// The store (state directory, selection) and one task (its directory, records, phase).
mod store;
mod task;

pub use spawn::{
    SpawnRequest, contract_env_from_pod, default_max_parallel, opencode_config_files,
    request_from_pod, spawn,
};
pub use store::{STATE_DIR_ENV, Store, selector_matches, state_dir};
pub use task::{
    Launch, LocalTask, Phase, ProcessId, RunState, Spec, TaskDir, now, phase, random_hex,
    rfc3339_nano,
};
use task::{uid, write_json};
