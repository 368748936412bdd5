//! asdo, the Agentic SDLC Orchestrator. Where things live:
//! - `cli/`: one file per subcommand (flags, output, exit codes);
//! - `render`: values + task → Pod (pure); `values`: chart values and merging;
//! - `task`: names, labels and input validation; `validate`: the Kubernetes rules for names,
//!   selectors and pod values; `follow`: waiting and resumable log streaming;
//! - `cluster`: the thin kube-rs layer; `error`: the one error type;
//! - `existing`: what spawn does with an existing pod of the task (`--if-exists`);
//! - `marker`: the agent's progress lines, as `wait`/`status` read them;
//! - `agent`: `asdo agent`, the image's entrypoint (clone, opencode, commit, push).
//! - `opencode`: a small client for OpenCode's server API (sessions, prompts, `/event`).
//! - `speckit`: spec-kit's delegation files (feature directory, marker layout per version).

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod existing;
pub mod follow;
pub mod humantime;
pub mod marker;
pub mod opencode;
pub mod render;
pub mod speckit;
pub mod task;
pub mod validate;
pub mod values;
