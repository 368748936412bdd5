//! Test support shared by integration tests, examples and benches
//! (`mod support;`, or `#[path = "../tests/support/mod.rs"] mod support;`).
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod model_server;
pub mod task_schema;

#[allow(unused_imports)]
pub use fake_apiserver::{FakeApiServer, RecordedRequest};
