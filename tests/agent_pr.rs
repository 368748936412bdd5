//! The agent's pull-request step end to end: the built `asdo agent` against a local bare
//! repository (stand-in opencode) and the project's fake forge. The PR comes after the
//! push; a refusal is its own step and exit code with the push already done; the token is
//! never printed.

mod agent_fixture;
#[path = "support/fake_forge.rs"]
mod fake_forge;

use agent_fixture::*;
use fake_forge::FakeForge;

const TOKEN: &str = "ghp_tok-5a4b3c-never-print-me";

fn pr_env(f: &Fixture, forge: &FakeForge, token: &str) -> Vec<(String, String)> {
    let mut env = f.agent_env();
    env.retain(|(k, _)| !k.starts_with("ASDO_FORGE") && k != "GIT_TOKEN");
    for (k, v) in [
        ("ASDO_PULL_REQUEST", "true"),
        ("ASDO_FORGE", "github"),
        ("ASDO_FORGE_API_URL", forge.url.as_str()),
        ("ASDO_FORGE_PROJECT", "org/app"),
        ("GIT_TOKEN", token),
    ] {
        env.push((k.into(), v.into()));
    }
    env
}

#[test]
fn opens_a_draft_pull_request_after_the_push() {
    let f = Fixture::new("pr-ok");
    let forge = FakeForge::start(TOKEN);
    f.opencode("printf 'hello\\n' > hello.txt");
    let r = f.run_agent(&pr_env(&f, &forge, TOKEN));
    assert_eq!(r.code, 0, "{r:?}");
    let sha = f.remote_branch(BRANCH).expect("pushed");
    let m = r.markers();
    let at = |l: &str| {
        m.iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("{l}: {r:?}"))
    };
    let pr = format!("asdo: pr {}/pull/1", forge.url);
    assert!(at(&format!("asdo: pushing {BRANCH}")) < at(&pr));
    assert_eq!(r.last_marker(), format!("asdo: done {sha}"));
    let seen = forge.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/repos/org/app/pulls")
    );
    assert!(seen[0].authorized);
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        (body["head"].as_str(), body["base"].as_str()),
        (Some(BRANCH), Some("main"))
    );
    assert_eq!(body["draft"], true);
    assert!(
        body["title"].as_str().unwrap().starts_with("T001: "),
        "{body}"
    );
    assert!(
        body["body"].as_str().unwrap().contains("- `hello.txt`"),
        "{body}"
    );
    for text in [&r.stdout, &r.stderr, &seen[0].body] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}

#[test]
fn a_refused_pull_request_fails_its_own_step_after_the_push() {
    let f = Fixture::new("pr-refused");
    let forge = FakeForge::start("the-right-token");
    f.opencode("printf 'hello\\n' > hello.txt");
    let r = f.run_agent(&pr_env(&f, &forge, TOKEN));
    assert_eq!(r.code, 15, "{r:?}");
    let sha = f.remote_branch(BRANCH).expect("the push happened first");
    assert_eq!(
        r.last_marker(),
        format!(
            "asdo: failed pr: opening the pull request: HTTP 401 Bad credentials (the token is invalid or expired); the branch was pushed ({sha}), open the request by hand"
        )
    );
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
}

#[test]
fn a_pull_request_without_a_token_is_refused_before_any_work() {
    let f = Fixture::new("pr-notoken");
    let forge = FakeForge::start(TOKEN);
    let mut env = pr_env(&f, &forge, TOKEN);
    env.retain(|(k, _)| k != "GIT_TOKEN");
    f.opencode("printf 'hello\\n' > hello.txt");
    let r = f.run_agent(&env);
    assert_eq!(r.code, 10, "{r:?}");
    assert!(
        r.last_marker()
            .contains("ASDO_PULL_REQUEST needs GIT_TOKEN"),
        "{r:?}"
    );
    assert!(f.remote_branch(BRANCH).is_none());
    assert!(forge.seen().is_empty());
}
