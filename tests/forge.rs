//! The agent's pull/merge request step against the project's fake forge (GitHub and
//! GitLab REST endpoints): open a draft, update it on a re-run, refusals as one line,
//! and the token only ever in the auth header.

#[path = "support/fake_forge.rs"]
mod fake_forge;

use asdo::agent::forge::{self, Request};
use fake_forge::FakeForge;

const TOKEN: &str = "glpat-tok-9f8e7d-never-print-me";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn req(base: &str) -> Request {
    let (title, body) = forge::describe(
        "T001",
        "Add the login endpoint",
        "specs/1/T001-async",
        base,
        &["src/login.rs".into()],
        None,
    );
    Request {
        branch: "specs/1/T001-async".into(),
        base: base.into(),
        title,
        body,
    }
}

#[test]
fn github_opens_a_draft_then_updates_it() {
    let fake = FakeForge::start(TOKEN);
    let f = forge::resolve("git@github.com:org/app.git", None, Some(&fake.url), None).unwrap();
    let rt = rt();
    let url = rt
        .block_on(forge::open_or_update(&f, TOKEN, &req("main")))
        .unwrap();
    assert_eq!(url, format!("{}/pull/1", fake.url));
    // A second run of the same task updates the open pull request instead of failing.
    let again = rt
        .block_on(forge::open_or_update(&f, TOKEN, &req("main")))
        .unwrap();
    assert_eq!(again, url);
    let seen = fake.seen();
    let calls: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /repos/org/app/pulls",
            "POST /repos/org/app/pulls",
            "GET /repos/org/app/pulls?state=open&head=org%3Aspecs%2F1%2FT001-async",
            "PATCH /repos/org/app/pulls/1",
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(first["draft"], true);
    assert_eq!(first["base"], "main");
    assert_eq!(first["head"], "specs/1/T001-async");
    assert!(first["body"].as_str().unwrap().contains("src/login.rs"));
    assert!(
        seen.iter()
            .all(|s| s.authorized && !s.body.contains(TOKEN) && !s.path.contains(TOKEN))
    );
}

#[test]
fn gitlab_opens_a_draft_merge_request_in_a_subgroup_then_updates_it() {
    let fake = FakeForge::start(TOKEN);
    let f = forge::resolve(
        "git@gitlab.com:g/sub/p.git",
        None,
        Some(&format!("{}/api/v4", fake.url)),
        None,
    )
    .unwrap();
    let rt = rt();
    let url = rt
        .block_on(forge::open_or_update(&f, TOKEN, &req("main")))
        .unwrap();
    assert_eq!(url, format!("{}/-/merge_requests/1", fake.url));
    assert_eq!(
        rt.block_on(forge::open_or_update(&f, TOKEN, &req("main")))
            .unwrap(),
        url
    );
    let calls: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(calls[0], "POST /api/v4/projects/g%2Fsub%2Fp/merge_requests");
    assert_eq!(
        calls[3],
        "PUT /api/v4/projects/g%2Fsub%2Fp/merge_requests/1"
    );
    let first: serde_json::Value = serde_json::from_str(&fake.seen()[0].body).unwrap();
    assert!(
        first["title"]
            .as_str()
            .unwrap()
            .starts_with("Draft: T001: ")
    );
    assert_eq!(first["target_branch"], "main");
}

#[test]
fn refusals_are_one_line_without_the_token() {
    let fake = FakeForge::start(TOKEN);
    let f = forge::resolve("git@github.com:org/app.git", None, Some(&fake.url), None).unwrap();
    let rt = rt();
    let e = rt
        .block_on(forge::open_or_update(&f, "wrong-token", &req("main")))
        .unwrap_err();
    assert!(
        e.contains("HTTP 401") && e.contains("invalid or expired"),
        "{e}"
    );
    let e = rt
        .block_on(forge::open_or_update(&f, TOKEN, &req("no-such-base")))
        .unwrap_err();
    assert!(e.contains("HTTP 422 Validation Failed"), "{e}");
    assert!(!e.contains(TOKEN) && !e.contains('\n'), "{e}");
    // Nothing listening: a network error, named by host only.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = forge::resolve(
        "git@github.com:org/app.git",
        None,
        Some(&format!("http://{dead}")),
        None,
    )
    .unwrap();
    let e = rt
        .block_on(forge::open_or_update(&f, TOKEN, &req("main")))
        .unwrap_err();
    assert!(e.starts_with(&format!("http://{dead}: ")), "{e}");
}
