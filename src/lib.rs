//! asdo, the Agentic SDLC Orchestrator. Where things live:
//! - `cli/`: one file per subcommand (flags → request → one call → output, exit codes);
//!   the engines they call live below: `spawn` (plan, render, create), `verdict` (how a task
//!   ended, the watch until done), `wait`, `cleanup` and `doctor` (those verbs for both runtimes),
//!   `follow::many` (one or many pods' logs), `scope` (environment, release and namespace
//!   resolved from the global flags);
//! - `runtime`: where tasks run (a cluster, or `local`: this machine), behind one seam the
//!   verbs call: tasks, logs, spawn, wait's verdicts, cleanup's deletes, answers, a task's
//!   OpenCode server (attach, send), the web page's watch;
//! - `render`: values + task → Pod (pure); `values`: chart values and merging;
//! - `task`: names, labels and input validation; `validate`: the Kubernetes rules for names,
//!   selectors and pod values; `follow`: waiting and resumable log streaming;
//! - `cluster`: the thin kube-rs layer (`apiretry`: its few retries of 429/503/504); `error`: the one error type;
//! - `existing`: what spawn does with an existing pod of the task (`--if-exists`);
//! - `marker`: the agent's progress lines, as `wait`/`status` read them;
//! - `fsutil`: the one atomic file write (keeps mode and owner, writes through symlinks);
//! - `quota`: a ResourceQuota's refusal of a task pod, said in one line;
//! - `archive`: `cleanup --save-logs`, a finished pod's log and summary kept before deletion;
//! - `results` + `localgit`: a task's result read back and fetched/diffed/merged in the user's clone;
//! - `agent`: `asdo agent`, the image's entrypoint (clone, opencode, commit, push).
//! - `opencode`: a small client for OpenCode's server API (sessions, prompts, `/event`).
//! - `portforward`: a local port forwarded to a pod's; `remote`: a task's OpenCode server
//!   reached through it (password, session, follow-up messages), for attach/send/mcp.
//! - `mcp`: `asdo mcp`, the verbs as MCP tools (rmcp), each run through the CLI itself;
//!   `argv`: those children's command lines, where no tool argument can become a flag.
//! - `speckit`: spec-kit's delegation files (feature directory, marker layout per version).
//! - `output`: `-o json|yaml` for every verb (the task object; `wait`: JSON Lines).
//! - `taskpod`: THE task model: a view of a task pod, and `TaskState` (pod + log tail),
//!   the task object every `-o json|yaml` prints (schema: `src/task.schema.json`).
//! - `ui`: `asdo ui`, the local web page (guard, one watch, routes, embedded assets).

pub mod agent;
pub mod apiconn;
pub mod apiretry;
pub mod archive;
pub mod argv;
pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod contract;
pub mod doctor;
pub mod error;
pub mod existing;
pub mod follow;
pub mod fsutil;
pub mod hooks;
pub mod http;
pub mod humantime;
pub mod localgit;
pub mod logging;
pub mod marker;
pub mod mcp;
pub mod opencode;
pub mod output;
pub mod portforward;
pub mod quota;
pub mod remote;
pub mod render;
pub mod results;
pub mod runtime;
pub mod scope;
pub mod send;
pub mod spawn;
pub mod speckit;
pub mod task;
pub mod taskpod;
pub mod ui;
pub mod validate;
pub mod values;
pub mod verdict;
pub mod wait;
