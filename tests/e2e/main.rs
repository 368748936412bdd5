//! End-to-end tests: the real `asdo` binary against the project's fake API
//! server (tests/support), with kubectl as an independent client.

#[path = "../support/mod.rs"]
mod support;

#[path = "../agent_fixture/mod.rs"]
mod agent_fixture;

mod agent;
mod common;
mod completion;
mod list_cleanup;
mod logs;
mod plugin;
mod spawn;
mod speckit;
