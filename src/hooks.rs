//! Completion hooks for `asdo wait`: a command run per finished task (`--on-done`) and a
//! JSON POST (`--webhook`, Slack-compatible `text`). Each runs in its own task with a
//! timeout and never changes wait's exit code or holds up another task's report: a
//! failing hook is one warning line on stderr.
//!
//! A webhook's answer is read only up to `MAX_WEBHOOK_ANSWER` (its status is what counts;
//! a receiver answering gigabytes must not take wait's memory with it), and a URL's
//! `user:password@` is sent as Basic auth (`http::send_capped`), never printed.

use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::http;
use crate::taskpod::TaskState;

/// What a hook is told about one finished task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub task_id: String,
    pub pod: String,
    pub phase: String,
    pub exit_code: Option<i32>,
    pub duration_seconds: Option<u64>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pr_url: Option<String>,
    pub failed_step: Option<String>,
    pub reason: Option<String>,
    /// wait's own line for the task, e.g. `T001 Succeeded exit=0 duration=3m commit=…`.
    pub text: String,
    /// Phase and reason as `list` shows them (`Failed (no-changes)`).
    pub status: String,
    /// The whole task object (`src/task.schema.json`), for a webhook receiver that wants
    /// more than the flat fields above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<TaskState>>,
}

impl Outcome {
    /// What hooks are told about `t`: a projection of the task object. `phase` is the word
    /// wait printed (a phase, or `NotFound`, `Deleted`, `Replaced`, `TimedOut(…)` for a
    /// task whose result is not known) and `text` wait's line.
    pub fn of(t: &TaskState, phase: &str, text: String) -> Outcome {
        Outcome {
            task_id: t.id.clone(),
            pod: t.pod.clone(),
            phase: phase.to_string(),
            exit_code: t.exit_code,
            duration_seconds: t.duration_seconds,
            branch: t.branch.clone(),
            commit: t.commit.clone(),
            pr_url: t.pr_url.clone(),
            failed_step: t.failed_step.clone(),
            // The agent's own words for its failure (the marker's reason).
            reason: t.failed_step.as_ref().and(t.message.clone()),
            text,
            status: t.status.clone(),
            task: Some(Box::new(t.clone())),
        }
    }
}

impl Outcome {
    /// The same facts as env vars for `--on-done` (empty when unknown).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        vec![
            ("ASDO_TASK_ID", self.task_id.clone()),
            ("ASDO_POD", self.pod.clone()),
            ("ASDO_PHASE", self.phase.clone()),
            (
                "ASDO_EXIT",
                self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            (
                "ASDO_DURATION_SECONDS",
                self.duration_seconds
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            ),
            ("ASDO_BRANCH", s(&self.branch)),
            ("ASDO_COMMIT", s(&self.commit)),
            ("ASDO_PR_URL", s(&self.pr_url)),
            ("ASDO_FAILED_STEP", s(&self.failed_step)),
            ("ASDO_REASON", s(&self.reason)),
            ("ASDO_STATUS", self.status.clone()),
            ("ASDO_LINE", self.text.clone()),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub on_done: Option<String>,
    pub webhook: Option<String>,
    /// Bound on each hook run (a webhook gets it per attempt).
    pub timeout: Duration,
}

/// Hooks in flight; `finish` waits for them, each already bounded by its timeout.
pub struct Hooks {
    cfg: Config,
    running: JoinSet<()>,
}

/// Wait between the two webhook attempts.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The most of a webhook's answer asdo reads: only its status matters (Slack answers `ok`).
pub const MAX_WEBHOOK_ANSWER: usize = 8 * 1024;

impl Config {
    /// Checked before any call: `--hook-timeout 0` would kill every hook at once.
    pub fn check(&self) -> Result<(), String> {
        if self.timeout.is_zero() && (self.on_done.is_some() || self.webhook.is_some()) {
            return Err(
                "--hook-timeout 0 would stop every hook as it starts: give how long a hook may run, e.g. 30s".into(),
            );
        }
        Ok(())
    }
}

impl Hooks {
    pub fn new(cfg: Config) -> Hooks {
        Hooks {
            cfg,
            running: JoinSet::new(),
        }
    }

    /// Start this task's hooks and return at once.
    pub fn fire(&mut self, o: &Outcome) {
        if let Some(cmd) = self.cfg.on_done.clone() {
            let (o, t) = (o.clone(), self.cfg.timeout);
            self.running.spawn(async move {
                if let Err(e) = run_command(&cmd, &o, t).await {
                    eprintln!("warning: --on-done for {}: {e}", o.task_id);
                }
            });
        }
        if let Some(url) = self.cfg.webhook.clone() {
            let (o, t) = (o.clone(), self.cfg.timeout);
            self.running.spawn(async move {
                if let Err(e) = post(&url, &o, t).await {
                    eprintln!("warning: --webhook for {}: {e}", o.task_id);
                }
            });
        }
    }

    /// Let every started hook end (each is bounded) so none is killed half-way.
    pub async fn finish(mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

async fn run_command(cmd: &str, o: &Outcome, timeout: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(o.env())
        .stdin(std::process::Stdio::null())
        // Its output is the user's; stdout stays wait's own report lines.
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        // Its own process group, so a timeout ends what it started too (a `sleep` holding
        // our stdout open would otherwise outlive asdo).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(format!("exited with {st}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the group we created; no memory is involved.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.kill().await;
            Err(format!(
                "still running after {}; killed",
                crate::humantime::short(timeout)
            ))
        }
    }
}

async fn post(url: &str, o: &Outcome, timeout: Duration) -> Result<(), String> {
    let body = serde_json::to_string(o).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(RETRY_AFTER).await;
        }
        match http::send_capped(
            hyper::Method::POST,
            url,
            &[("content-type", "application/json")],
            Some(body.clone()),
            timeout,
            MAX_WEBHOOK_ANSWER,
        )
        .await
        {
            // Delivered; an answer over the cap is said once, not read (nor retried).
            Ok(r) if r.ok() && r.cut => {
                return Err(format!(
                    "{} answered {} with more than {} (the most asdo reads of a webhook's answer); delivered, the rest was not read",
                    http::origin(url),
                    r.status,
                    http::size(MAX_WEBHOOK_ANSWER)
                ));
            }
            Ok(r) if r.ok() => return Ok(()),
            // A 4xx will not get better by asking again.
            Ok(r) if r.status < 500 => {
                return Err(format!("{} answered {}", http::origin(url), r.status));
            }
            Ok(r) => last = format!("{} answered {}", http::origin(url), r.status),
            Err(e) => last = e,
        }
    }
    Err(format!("{last} (tried twice)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hooks_env_is_a_projection_of_the_task() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-t1", "labels": {"task-id": "T1"},
                "annotations": {"agentic-sdlc/branch": "b1"}},
            "status": {"phase": "Failed", "startTime": "2026-01-01T00:00:00Z",
                "containerStatuses": [{"name": "agent", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 17, "reason": "Error",
                "finishedAt": "2026-01-01T00:01:40Z"}}}]}
        }))
        .unwrap();
        let tail = "asdo: summary: files 1, tokens 9 in / 3 out, cost $0.5000\n\
                    asdo: failed budget: cost $0.5000 > $0.4000\n";
        let t = TaskState::new(&pod, Some(tail), k8s_openapi::jiff::Timestamp::now());
        let o = Outcome::of(&t, "Failed", "T1 Failed exit=17".into());
        let env = o.env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ASDO_TASK_ID"), Some("T1"));
        assert_eq!(get("ASDO_EXIT"), Some("17"));
        assert_eq!(get("ASDO_DURATION_SECONDS"), Some("100"));
        assert_eq!(get("ASDO_FAILED_STEP"), Some("budget"));
        assert_eq!(get("ASDO_REASON"), Some("cost $0.5000 > $0.4000"));
        assert_eq!(get("ASDO_STATUS"), Some("Failed (budget)"));
        assert_eq!(get("ASDO_BRANCH"), Some("b1"));
        let body = serde_json::to_value(&o).unwrap();
        assert_eq!(body["task"]["status"], "Failed (budget)");
        assert_eq!(body["text"], "T1 Failed exit=17");
    }
}
