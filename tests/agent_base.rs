//! `GIT_BASE` (`asdo spawn --base`): a new task branch starts from the given branch, tag or
//! commit; an existing task branch is continued, never reset; an unknown base fails the
//! clone step. The agent runs against a local bare repository with a stand-in opencode.

mod agent_fixture;

use agent_fixture::*;

fn with_base(f: &Fixture, base: &str) -> Vec<(String, String)> {
    let mut env = f.agent_env();
    env.retain(|(k, _)| k != "GIT_BASE");
    env.push(("GIT_BASE".into(), base.into()));
    env
}

fn parent(f: &Fixture, sha: &str) -> String {
    f.remote_git(&["log", "-1", "--format=%P", sha])
}

#[test]
fn a_new_branch_starts_from_the_base_branch_or_tag() {
    let f = Fixture::new("base-new");
    let release = f.remote_add_branch("release/1.2", "rel.txt", "r");
    f.opencode("printf 'hello\\n' > hello.txt");
    let r = f.run_agent(&with_base(&f, "release/1.2"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.markers().contains(&&*format!(
            "asdo: creating branch {BRANCH} from release/1.2"
        )),
        "{r:?}"
    );
    let sha = f.remote_branch(BRANCH).unwrap();
    assert_eq!(parent(&f, &sha), release, "one commit on top of the base");
    assert_eq!(f.remote_file(BRANCH, "rel.txt"), "r");

    // A tag works the same way.
    let g = Fixture::new("base-tag");
    let main = g.remote_branch("main").unwrap();
    g.remote_git(&["tag", "v1.0", &main]);
    g.opencode("printf 'hello\\n' > hello.txt");
    let r = g.run_agent(&with_base(&g, "v1.0"));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(parent(&g, &g.remote_branch(BRANCH).unwrap()), main);
}

#[test]
fn an_existing_task_branch_is_continued_not_reset() {
    let f = Fixture::new("base-existing");
    f.remote_add_branch("release/1.2", "rel.txt", "r");
    let earlier = f.remote_add_branch(BRANCH, "own.txt", "earlier run");
    f.opencode("printf 'more\\n' > more.txt");
    let r = f.run_agent(&with_base(&f, "release/1.2"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.markers().contains(&&*format!(
            "asdo: checking out {BRANCH} (it exists: continuing it, base release/1.2 not applied)"
        )),
        "{r:?}"
    );
    let sha = f.remote_branch(BRANCH).unwrap();
    assert_eq!(parent(&f, &sha), earlier);
    assert_eq!(f.remote_file(BRANCH, "own.txt"), "earlier run");
    assert!(
        f.remote_git(&["ls-tree", "--name-only", &sha])
            .lines()
            .all(|l| l != "rel.txt")
    );
}

#[test]
fn an_unknown_or_invalid_base_fails_before_opencode_runs() {
    let f = Fixture::new("base-unknown");
    f.opencode("printf x > x.txt");
    let r = f.run_agent(&with_base(&f, "no-such-ref"));
    assert_eq!(r.code, 11, "{r:?}");
    assert_eq!(
        r.last_marker(),
        "asdo: failed clone: base \"no-such-ref\" is not a branch, tag or commit of the repository"
    );
    assert!(f.remote_branch(BRANCH).is_none());
    let r = f.run_agent(&with_base(&f, "--upload-pack=x"));
    assert_eq!(r.code, 10, "{r:?}");
}
