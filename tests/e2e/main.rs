//! End-to-end tests: the real `asdo` binary against the project's fake API
//! server (tests/support), with kubectl as an independent client.

#[path = "../support/mod.rs"]
mod support;

#[path = "../agent_fixture/mod.rs"]
mod agent_fixture;

mod agent;
mod archive;
mod common;
mod completion;
mod deadlines;
mod errors;
mod hooks;
mod hostile;
mod init;
mod list_cleanup;
mod logs;
mod mcp;
mod plugin;
mod queue;
mod quota;
mod readme;
mod results;
mod runtimes;
mod spawn;
mod speckit;
mod task_object;
mod traces;
mod ui;
mod visibility;
