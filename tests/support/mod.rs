//! Test support shared by integration tests, examples and benches
//! (`mod support;`, or `#[path = "../tests/support/mod.rs"] mod support;`).
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod model_server;
pub mod task_schema;

/// A benchmark's size or count from its environment variable, else `default`; a value that
/// does not parse stops the bench (a typo must not silently run the default).
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

#[allow(unused_imports)]
pub use fake_apiserver::{FakeApiServer, RecordedRequest};
