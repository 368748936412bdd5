//! asdo, the Agentic SDLC Orchestrator. Where things live:
//! - `cli/`: one file per subcommand (flags, output, exit codes);
//! - `render`: values + task → Pod (pure); `values`: chart values and merging;
//! - `task`: names, labels and input validation; `validate`: the Kubernetes rules for names,
//!   selectors and pod values; `follow`: waiting and resumable log streaming;
//! - `cluster`: the thin kube-rs layer; `error`: the one error type;
//! - `marker`: the agent's progress lines, as `wait`/`status` read them;
//! - `quota`: a ResourceQuota's refusal of a task pod, said in one line;
//! - `archive`: `cleanup --save-logs`, a finished pod's log and summary kept before deletion;
//! - `agent`: `asdo agent`, the image's entrypoint (clone, opencode, commit, push).

pub mod agent;
pub mod archive;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod follow;
pub mod humantime;
pub mod marker;
pub mod quota;
pub mod render;
pub mod task;
pub mod validate;
pub mod values;
