//! The task object (src/task.schema.json) checked by Python's `jsonschema` (an
//! independent validator from the test venv, see .ci/py-tools.sh), for every test binary
//! that reads `-o json` from a verb: the e2e suite (fake API server) and tests/local.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The test venv's Python (with `jsonschema`).
pub fn python() -> PathBuf {
    std::env::var_os("ASDO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/cache/py-tests/bin/python")
        })
}

/// Every document must be valid against the schema; the schema itself must be valid
/// draft 2020-12. `scratch` is a directory for the documents' file. Panics with
/// jsonschema's words otherwise.
pub fn assert_valid(scratch: &Path, what: &str, docs: &[Value]) {
    assert!(!docs.is_empty(), "{what}: nothing to check");
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/task.schema.json");
    let file = scratch.join(format!("docs-{}.json", what.replace([' ', '-'], "_")));
    std::fs::write(&file, Value::Array(docs.to_vec()).to_string()).unwrap();
    let check = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
docs = json.load(open(sys.argv[2]))
bad = [f"{d.get('id')}: {e.message} at {list(e.path)}" for d in docs for e in v.iter_errors(d)]
print("\n".join(bad) if bad else f"{len(docs)} valid")
sys.exit(1 if bad else 0)
"#;
    let out = Command::new(python())
        .args(["-c", check])
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("the test venv's python (.ci/py-tools.sh)");
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
