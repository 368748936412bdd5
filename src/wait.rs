//! `asdo wait` below the verb, for both runtimes: which tasks are waited for, each verdict
//! reported as it comes (the verb's line or object, spec-kit's record, the hooks), and
//! the conclusion at the end or at `--timeout`. Where the verdicts come from (a pod watch,
//! or the local tasks' state files) is the runtime's part (`Runtime::watch_until_done`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::hooks::Hooks;
use crate::humantime;
use crate::runtime::Runtime;
use crate::speckit;
use crate::task::{self, SELECTOR};
use crate::taskpod::{TaskPod, TaskState};
use crate::verdict::Verdict;

/// What to wait for and what to do with each verdict.
pub struct Request {
    /// Pod name → the task id as the user spelled it (see [`named`]); empty with `all`, or
    /// with `any` alone (every task still running).
    pub wanted: BTreeMap<String, String>,
    pub all: bool,
    pub any: bool,
    /// A hard bound on the whole command.
    pub timeout: Duration,
    /// spec-kit's record of each verdict.
    pub report_dir: Option<PathBuf>,
    pub hooks: Hooks,
}

/// How long, past `--timeout`, the last look at the unfinished tasks may take.
const LAST_LOOK: Duration = Duration::from_secs(1);

/// The tasks as typed (ids or pod names) by pod name, checked before any call.
pub fn named(tasks: &[String]) -> Result<BTreeMap<String, String>> {
    tasks
        .iter()
        .map(|t| Ok((task::pod_name_for(t)?, t.clone())))
        .collect()
}

/// Waits, hands each verdict to `say` (the verb prints it), records it and fires the
/// hooks, and returns the exit code: 0 all succeeded, 1 a task failed or vanished or a
/// record could not be written, 124 the timeout passed first.
pub async fn run(
    rt: &Runtime,
    req: Request,
    mut say: impl FnMut(&Verdict) -> Result<()>,
) -> Result<i32> {
    let Request {
        mut wanted,
        all,
        any,
        timeout,
        report_dir,
        mut hooks,
    } = req;
    // --timeout is a hard bound on the whole command: every call below runs inside it
    // (or, for the last look after it, inside a short grace), so a server that accepts
    // and never answers cannot stretch it by a request timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    if all || (any && wanted.is_empty()) {
        let what = format!("list task pods in {}", rt.place(false));
        let pods = tokio::time::timeout_at(deadline, rt.pods(SELECTOR, None))
            .await
            .map_err(|_| {
                Error::Cluster(format!(
                    "cannot {what}: no answer from the API server {} within {} (--timeout)",
                    cluster::server_url(),
                    humantime::short(timeout)
                ))
            })??;
        wanted = pods
            .iter()
            // --any without ids: a task that has already ended is not what is waited for
            // (it frees no quota slot and would answer at once).
            .filter(|p| !any || !TaskPod(p).is_finished())
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                Some((name, TaskPod(p).task_id().to_string()))
            })
            .collect();
        if wanted.is_empty() {
            let which = if any { "running " } else { "" };
            eprintln!("No {which}{} in {}.", rt.tasks_noun(), rt.place(false));
            return Ok(exit::OK);
        }
    }
    if let Some(dir) = &report_dir {
        speckit::check_reports_writable(dir)?;
    }

    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut write_failed = false;
    let watch = rt.watch_until_done(&wanted, any, |v| {
        if let Err(e) = conclude(
            v,
            &mut verdicts,
            report_dir.as_deref(),
            &mut hooks,
            &mut say,
        ) {
            // Every task still gets its outcome; the exit code says a report is missing.
            eprintln!("error: {e}");
            write_failed = true;
        }
    });
    let timed_out = match tokio::time::timeout_at(deadline, watch).await {
        Ok(Ok(())) => false,
        // 400/401/403, a watch that cannot go on, a task that is not there: the answer.
        Ok(Err(e)) => return Err(e),
        Err(_) => true,
    };

    let mut code = exit::OK;
    if verdicts.values().any(|v| !v.succeeded()) || write_failed {
        code = exit::FAILURE;
    }
    if timed_out {
        // One last look at the tasks still waited for, all at once and within a short
        // grace: the deadline has passed, so a server that does not answer gets no more.
        let left: Vec<(&String, &String)> = wanted
            .iter()
            .filter(|(p, _)| !verdicts.contains_key(*p))
            .collect();
        let looks = futures::future::join_all(
            left.iter()
                .map(|(pod, _)| async { rt.pod(pod).await.ok().flatten() }),
        );
        let current_pods = tokio::time::timeout(LAST_LOOK, looks)
            .await
            .unwrap_or_else(|_| vec![None; left.len()]);
        for ((pod, id), current) in left.into_iter().zip(current_pods) {
            let v = timed_out_verdict(pod, id, rt.namespace(), current.as_ref(), timeout);
            // Its line, its report and its hooks, as an ended task gets them.
            say(&v)?;
            if let Some(Err(e)) = report_dir.as_deref().map(|dir| speckit::complete(dir, &v)) {
                eprintln!("error: {e}");
                code = exit::FAILURE;
            }
            hooks.fire(&v.outcome());
        }
        if code == exit::OK {
            code = exit::TIMEOUT;
        }
    }
    hooks.finish().await;
    if write_failed {
        eprintln!(
            "error: some reports could not be written (see above); spec-kit will not see those tasks' results"
        );
    }
    Ok(code)
}

/// An ended task: said, recorded, hooks fired, kept. The outcome counts even when its
/// record cannot be written.
fn conclude(
    v: Verdict,
    verdicts: &mut BTreeMap<String, Verdict>,
    report_dir: Option<&Path>,
    hooks: &mut Hooks,
    say: &mut impl FnMut(&Verdict) -> Result<()>,
) -> Result<()> {
    say(&v)?;
    let written = report_dir.map_or(Ok(()), |dir| speckit::complete(dir, &v));
    hooks.fire(&v.outcome());
    verdicts.insert(v.task.pod.clone(), v);
    written
}

/// The verdict of a task still not ended at --timeout: `TimedOut(<what it is doing>)`.
fn timed_out_verdict(
    pod: &str,
    id: &str,
    ns: &str,
    current: Option<&Pod>,
    timeout: Duration,
) -> Verdict {
    // `Pending: CreateContainerError: …`: a stuck pod says why, not just "Pending".
    let phase = current.map_or("Unknown".into(), |p| TaskPod(p).describe());
    let words = format!("still {phase} after {}", humantime::short(timeout));
    let task = match current {
        Some(p) => TaskState::new(p, None, Timestamp::now()),
        None => TaskState::vanished(id, pod, ns, "timed-out", &words),
    };
    Verdict::unknown(task, &format!("TimedOut({phase})"), format!("{words}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks;
    use crate::runtime::local::{RunState, Store, logfile};

    /// A local task as its runner leaves it: ended with `exit` and a log ending in `last`,
    /// or (None) created and never started (Queued).
    fn task(store: &Store, id: &str, exit: Option<i32>, last: &str) {
        let t = store.task(id);
        std::fs::create_dir_all(&t.dir).unwrap();
        let spec = serde_json::json!({"id": id, "uid": format!("uid-{id}"), "branch": "b",
            "repo": "file:///r.git", "createdAt": "2026-11-24T10:00:00Z", "env": [],
            "sandbox": true, "maxParallel": 1, "asdo": "/a"});
        std::fs::write(t.spec_file(), spec.to_string()).unwrap();
        if let Some(code) = exit {
            std::fs::write(t.log(), logfile::stamped(last.as_bytes())).unwrap();
            t.write_state(&RunState {
                exit_code: Some(code),
                ..Default::default()
            })
            .unwrap();
        }
    }

    fn request(tasks: &[&str], timeout: Duration, report_dir: Option<PathBuf>) -> Request {
        let tasks: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
        Request {
            wanted: named(&tasks).unwrap(),
            all: tasks.is_empty(),
            any: false,
            timeout,
            report_dir,
            hooks: Hooks::new(hooks::Config {
                on_done: None,
                webhook: None,
                timeout: Duration::from_secs(1),
            }),
        }
    }

    /// The engine without a cluster: each verdict said and recorded as it comes, the exit
    /// code from all of them, a task still queued at --timeout concluded as TimedOut with
    /// 124, and a task that is not there the command's answer.
    #[tokio::test]
    async fn verdicts_records_and_the_timeout_on_the_local_runtime() {
        let root = std::env::temp_dir().join(format!("asdo-wait-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store { root: root.clone() };
        task(&store, "T1", Some(0), "asdo: done 0123abcd\n");
        task(
            &store,
            "T2",
            Some(12),
            "asdo: failed agent: opencode exited 1\n",
        );
        task(&store, "T3", None, "");
        let rt = Runtime::Local(store);
        let reports = root.join("reports");
        let long = Duration::from_secs(600);

        let mut said = Vec::new();
        let req = request(&["T1", "T2"], long, Some(reports.clone()));
        let code = run(&rt, req, |v| {
            said.push(v.line());
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(code, exit::FAILURE, "{said:?}");
        said.sort();
        assert!(said[0].starts_with("T1 Succeeded exit=0 "), "{said:?}");
        assert!(said[0].ends_with("commit=0123abcd"), "{said:?}");
        assert!(said[1].starts_with("T2 Failed exit=12 "), "{said:?}");
        assert!(reports.join("delegation_completed/T1.txt").exists());
        assert!(reports.join("delegation_errors/T2.txt").exists());

        let mut said = Vec::new();
        let req = request(&["T1", "T3"], Duration::from_secs(1), None);
        let code = run(&rt, req, |v| {
            said.push((v.task.id.clone(), v.ending.clone()));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(code, exit::TIMEOUT, "{said:?}");
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0], ("T1".into(), "Succeeded".into()));
        assert!(
            said[1].1.starts_with("TimedOut(Pending: Queued"),
            "{said:?}"
        );

        let req = request(&["T9"], long, None);
        let e = run(&rt, req, |_| Ok(())).await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(e.to_string().contains("asdo --runtime local list"), "{e}");

        std::fs::remove_dir_all(&root).unwrap();
    }
}
