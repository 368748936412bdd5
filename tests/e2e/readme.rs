//! The README's "Try it without a cluster" walkthrough, run as written: the lines
//! between the `try-it` markers, in one bash, with `asdo` on PATH. Three substitutions
//! keep parallel runs apart and need no cargo inside cargo: the example's binary for
//! `cargo run --example fake-apiserver --` (cargo test builds it), a private directory
//! for `/tmp/`, a free port for 18081.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn walkthrough() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- try-it:begin")
        .expect("the try-it begin marker");
    let end = readme
        .find("<!-- try-it:end -->")
        .expect("the try-it end marker");
    let block = &readme[start..end];
    let body = block.split("```sh\n").nth(1).expect("a sh block");
    body.split("```").next().unwrap().to_string()
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let asdo = PathBuf::from(env!("CARGO_BIN_EXE_asdo"));
    let bin_dir = asdo.parent().unwrap();
    let example = bin_dir.join("examples").join("fake-apiserver");
    assert!(
        example.exists(),
        "{} is missing: `cargo test` builds it; alone, run `cargo build --example fake-apiserver` first",
        example.display()
    );
    let dir = TempDir::new("readme");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = walkthrough();
    assert!(
        script.contains("asdo spawn") && script.contains("asdo wait"),
        "{script}"
    );
    let script = script
        .replace(
            "cargo run --example fake-apiserver --",
            example.to_str().unwrap(),
        )
        .replace("/tmp/", &format!("{}/", dir.0.display()))
        .replace("18081", &port.to_string());
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    // Stop at the first failing line, and never leave the background server behind.
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null' EXIT\n{script}");
    c.arg("-e").arg("-c").arg(&script);
    isolate(&mut c);
    c.env("PATH", path).current_dir(&dir.0).process_group(0);
    let child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id();
    let r = wait_output(child, Duration::from_secs(120));
    // Whatever happened, the server started in the background goes too.
    let _ = Command::new("kill")
        .arg("--")
        .arg(format!("-{pgid}"))
        .status();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod/agent-t001 created"), "{r:?}");
    assert!(
        r.stdout
            .contains("fake agent (no image runs here): task T001"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("T001 Succeeded exit=0") && r.stdout.contains("commit=none (no changes)"),
        "{r:?}"
    );
    assert!(r.stdout.contains("pod/agent-t001 deleted"), "{r:?}");
}
