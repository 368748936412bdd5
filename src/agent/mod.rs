//! `asdo agent`, the image's entrypoint: clone the task's repository, check out its
//! branch, start `opencode serve` in the work tree and drive one session through its
//! API (`session`), commit what it left, push, and say how it went in marker lines
//! (`crate::marker`) that `asdo wait`/`status` read back from the log.
//!
//! The outcome is judged from OpenCode's events, never from an exit status, and success
//! means only "the branch was pushed" (or "nothing to change").
//!
//! This file holds the order of the run (`run`, `Agent::steps`, what a failed or
//! interrupted session leaves behind) and its terms: `Step`, `Failure`, the exit codes,
//! `RunOutcome`, the final marker. Each step is an `impl Agent` block of its own file:
//! - `workspace`: clone, checkout, create the task branch, git credentials, the git runners;
//! - `opencode_step`: start `opencode serve`, drive the session, map how it ended;
//! - `commit`: restore `.git/config`, refuse secrets, commit (or WIP-commit) and push;
//! - `pr`: open or update the pull/merge request after the push.
//!
//! Below them, knowing nothing of `Agent`:
//! - `server`: starting and stopping `opencode serve`;
//! - `session`: one session from prompt to idle, the idle watchdog, signals;
//! - `events`: event → one readable log line, and the totals of the summary;
//! - `permissions`, `answers`: the `agent.permissions`/`agent.questions` policies, who
//!   answers a permission or question, and how a forged answer is caught;
//! - `budget`: the budgets and the empty-turn guard, checked after every model turn;
//! - `git` (env, credentials), `forge` (REST calls), `secrets`, `config`, `prompt`,
//!   `child` (running processes, the relay of their output).

pub mod answers;
pub mod budget;
pub mod child;
mod commit;
pub mod config;
pub mod events;
pub mod forge;
pub mod git;
mod opencode_step;
pub mod permissions;
mod pr;
pub mod prompt;
pub mod secrets;
pub mod server;
pub mod session;
mod workspace;

use std::sync::Arc;

use crate::marker::Marker;
use child::{Finished, Relay, RunError, Runner, Signals};
use config::Config;
use git::Git;

/// Exit codes of `asdo agent`, one per step that can fail (documented in docker/README.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const CONFIG: i32 = 10;
    pub const CLONE: i32 = 11;
    pub const AGENT: i32 = 12;
    pub const COMMIT: i32 = 13;
    pub const PUSH: i32 = 14;
    /// The branch was pushed but the forge refused the pull/merge request.
    pub const PR: i32 = 15;
    /// The run changed no file and `agent.allowNoChanges` is off.
    pub const NO_CHANGES: i32 = 16;
    /// A budget (`agent.maxTurns`, `maxTokens`, `maxCost`) was exceeded.
    pub const BUDGET: i32 = 17;
    /// 128 + the signal, as a shell reports it.
    pub const SIGINT: i32 = 130;
    pub const SIGTERM: i32 = 143;

    /// Every code with what it means, for `asdo agent --help` (and anyone reading a
    /// container's exit code back).
    pub const TABLE: &[(i32, &str)] = &[
        (OK, "pushed (or nothing to change)"),
        (CONFIG, "config"),
        (CLONE, "clone/checkout"),
        (AGENT, "agent"),
        (COMMIT, "commit"),
        (PUSH, "push"),
        (
            PR,
            "pr (pushed, but the forge refused the pull/merge request)",
        ),
        (NO_CHANGES, "no-changes (changed no file)"),
        (BUDGET, "budget (a budget was exceeded)"),
        (SIGINT, "SIGINT"),
        (SIGTERM, "SIGTERM"),
    ];
}

/// The steps named in `asdo: failed <step>: …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Config,
    Clone,
    Agent,
    Commit,
    Push,
    /// Opening the pull/merge request after a successful push.
    Pr,
    /// Stopped by SIGTERM mid-session (deletion, activeDeadlineSeconds), exit 143.
    Timeout,
    /// The session ended without changing a file (not allowed by `agent.allowNoChanges`).
    NoChanges,
    /// A budget was exceeded mid-run.
    Budget,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Config => "config",
            Step::Clone => "clone",
            Step::Agent => "agent",
            Step::Commit => "commit",
            Step::Push => "push",
            Step::Pr => "pr",
            Step::Timeout => "timeout",
            Step::NoChanges => "no-changes",
            Step::Budget => "budget",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Step::Config => exit::CONFIG,
            Step::Clone => exit::CLONE,
            Step::Agent => exit::AGENT,
            Step::Commit => exit::COMMIT,
            Step::Push => exit::PUSH,
            Step::Pr => exit::PR,
            Step::Timeout => exit::SIGTERM,
            Step::NoChanges => exit::NO_CHANGES,
            Step::Budget => exit::BUDGET,
        }
    }
}

/// Why the run stopped at `step`.
#[derive(Debug)]
pub struct Failure {
    pub step: Step,
    pub reason: String,
    pub code: i32,
}

impl Failure {
    fn new(step: Step, reason: impl Into<String>) -> Failure {
        Failure {
            step,
            reason: reason.into(),
            code: step.exit_code(),
        }
    }

    /// A child that could not start, or a signal that stopped it.
    fn run_error(step: Step, program: &str, e: RunError) -> Failure {
        match e {
            RunError::Signal(sig) => Failure {
                step,
                reason: format!("terminated by {}", child::signal_name(sig)),
                code: 128 + sig,
            },
            RunError::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Failure::new(step, format!("{program} not found on PATH"))
            }
            RunError::Spawn(e) => Failure::new(step, format!("cannot run {program}: {e}")),
        }
    }

    /// A child that ran and failed: its status plus git's most telling stderr line.
    fn finished(step: Step, what: &str, f: &Finished) -> Failure {
        let mut reason = format!("{what} {}", f.describe_status());
        if let Some(why) = git::reason(&f.stderr_tail) {
            reason.push_str(": ");
            reason.push_str(&why);
        }
        Failure::new(step, reason)
    }
}

/// Why the opencode step did not finish.
enum Stop {
    Failed(Failure),
    /// Failed with a work tree nobody may trust (a forged permission): no WIP push.
    Untrusted(Failure),
    Signal(i32),
}

/// 32 hex digits from the kernel's random source.
fn random_password() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How a run that did not fail ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Pushed(String),
    NoChanges,
}

/// Runs the agent to the end and returns the process exit code. `dry_run` prints the
/// resolved settings and the prompt instead of doing anything.
pub async fn run(dry_run: bool) -> i32 {
    let password = std::env::var(crate::contract::PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        // Never an open server, even on a laptop: a password only this run knows.
        .unwrap_or_else(random_password);
    // Only ever printed redacted: the token and the password must not reach the log even
    // if git or opencode echo them.
    // Provider keys too: every env var the render marked as taken from a Secret.
    let listed: Vec<String> = std::env::var(crate::contract::SECRET_ENV_LIST)
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| std::env::var(n.trim()).ok())
        .collect();
    let relay = Arc::new(Relay::new(
        std::env::var(crate::contract::GIT_TOKEN)
            .ok()
            .into_iter()
            .chain([password.clone()])
            .chain(listed),
    ));
    // Not dumpable: another process of the same user (anything the model runs) can no
    // longer read this one's /proc/<pid>/environ or memory, where GIT_TOKEN, the server
    // password and the provider keys are. Children are dumpable again after exec, so each
    // child gets only the variables it needs (git: an allow-list; opencode: no GIT_TOKEN).
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    // Installed first: from here on SIGTERM is ours to handle, not a silent death.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            return report(
                &relay,
                Err(Failure::new(
                    Step::Config,
                    format!("cannot catch signals: {e}"),
                )),
            );
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return report(&relay, Err(Failure::new(Step::Config, e.0))),
    };
    if dry_run {
        relay.write(child::Sink::Stdout, config.describe().as_bytes());
        relay.write(
            child::Sink::Stdout,
            format!("prompt:\n{}", prompt::build(&config)).as_bytes(),
        );
        return exit::OK;
    }
    let mut agent = Agent {
        runner: Runner {
            signals,
            relay: relay.clone(),
            grace: config.kill_grace,
            shielded: false,
        },
        git: Git {
            dir: config.context.clone(),
            env: vec![],
        },
        config,
        key_copy: None,
        password,
        git_config: None,
    };
    // Tools that daemonize (nohup, double fork) are re-parented to us, not to PID 1, so
    // they can be ended with the run. Best effort: without it only process groups are killed.
    let _ = child::become_subreaper();
    let outcome = agent.steps().await;
    // Nothing a tool started outlives the agent (a pod's container would keep running).
    child::kill_descendants();
    if let Some(key) = &agent.key_copy {
        // Only git needs the key; leave no copy for whatever runs in this HOME later.
        let _ = std::fs::remove_file(key);
    }
    report(&relay, outcome)
}

/// Prints the final marker and picks the exit code.
fn report(relay: &Relay, outcome: Result<RunOutcome, Failure>) -> i32 {
    let (marker, code) = match outcome {
        Ok(RunOutcome::Pushed(sha)) => (Marker::Done(sha), exit::OK),
        Ok(RunOutcome::NoChanges) => (Marker::NoChanges, exit::OK),
        Err(f) => (
            Marker::Failed {
                step: f.step.name().to_string(),
                reason: one_line(&f.reason),
            },
            f.code,
        ),
    };
    relay.marker(&marker);
    code
}

/// A reason fits on the marker line: one line, bounded.
fn one_line(s: &str) -> String {
    let flat: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(299).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

struct Agent {
    config: Config,
    runner: Runner,
    git: Git,
    /// The private copy of the SSH key, removed when the run ends.
    key_copy: Option<std::path::PathBuf>,
    /// OPENCODE_SERVER_PASSWORD (or one made up for this run).
    password: String,
    /// `.git/config` as it was before OpenCode ran: put back before asdo commits and
    /// pushes, so nothing the model wrote there (a remote URL, `insteadOf`, a credential
    /// helper, an include) steers asdo's own git.
    git_config: Option<Vec<u8>>,
}

impl Agent {
    fn say(&self, progress: impl Into<String>) {
        self.runner.relay.marker(&Marker::Progress(progress.into()));
    }

    async fn steps(&mut self) -> Result<RunOutcome, Failure> {
        let c = &self.config;
        self.say(format!(
            "starting task {} (asdo {})",
            c.task_id,
            env!("CARGO_PKG_VERSION")
        ));
        self.setup_credentials()?;
        self.clone_repo().await?;
        let base = self.checkout().await?;
        self.git_config = std::fs::read(self.git_config_path()).ok();
        match self.run_opencode().await {
            Ok((summary, answer)) => {
                self.runner.relay.marker(&summary.marker());
                let outcome = self.commit_and_push(base).await?;
                if let (RunOutcome::Pushed(sha), Some(forge)) =
                    (&outcome, self.config.forge.clone())
                {
                    self.pull_request(&forge, sha, &summary).await?;
                }
                if outcome == RunOutcome::NoChanges && !self.config.allow_no_changes {
                    return Err(Failure::new(
                        Step::NoChanges,
                        quote_answer(answer.as_deref()),
                    ));
                }
                Ok(outcome)
            }
            Err(Stop::Failed(f)) => Err(self.keep_work(f, base).await),
            Err(Stop::Untrusted(f)) => Err(f),
            Err(Stop::Signal(sig)) => Err(self.partial(sig, base).await),
        }
    }

    /// A session that failed after it may have written something: what the work tree
    /// holds is pushed as a `wip(<id>)` commit, so no written work is lost, and the
    /// failure says where it went.
    async fn keep_work(&mut self, mut f: Failure, base: Option<String>) -> Failure {
        let why = match f.step {
            Step::Agent => "the session failed",
            Step::Budget => "a budget was exceeded",
            _ => return f,
        };
        // Nothing to keep unless the work tree (or HEAD) moved; a failure to even look
        // is reported as not pushed.
        match self.commit_and_push_as(base, Some(why)).await {
            Ok(RunOutcome::Pushed(sha)) => {
                f.reason.push_str(&format!("; partial work pushed {sha}"))
            }
            Ok(RunOutcome::NoChanges) => {}
            Err(e) => f
                .reason
                .push_str(&format!("; the partial work was not pushed: {}", e.reason)),
        }
        f
    }

    /// SIGTERM (pod deletion, activeDeadlineSeconds) mid-session: what the work tree holds
    /// is committed as work in progress and pushed, so spawning the task again continues
    /// from it. SIGINT (a person at a terminal) only stops.
    async fn partial(&mut self, sig: i32, base: Option<String>) -> Failure {
        let stopped = Failure::run_error(Step::Agent, "opencode", RunError::Signal(sig));
        if sig != libc::SIGTERM {
            return stopped;
        }
        let timeout = |reason: String| Failure {
            step: Step::Timeout,
            reason,
            code: exit::SIGTERM,
        };
        match self
            .commit_and_push_as(base, Some("interrupted by SIGTERM"))
            .await
        {
            Ok(RunOutcome::Pushed(sha)) => timeout(format!("partial work pushed {sha}")),
            Ok(RunOutcome::NoChanges) => {
                timeout("terminated by SIGTERM; no changes to push".into())
            }
            Err(f) => timeout(format!(
                "terminated by SIGTERM; the partial work was not pushed: {}",
                f.reason
            )),
        }
    }
}

/// The start of the model's final answer, quoted, for `failed no-changes: "…"`.
fn quote_answer(answer: Option<&str>) -> String {
    const MAX: usize = 160;
    let Some(a) = answer.map(|a| a.split_whitespace().collect::<Vec<_>>().join(" ")) else {
        return "the model changed no file and gave no answer".into();
    };
    let cut = match a.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &a[..i]),
        None => a,
    };
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_per_step() {
        let codes: Vec<_> = [
            Step::Config,
            Step::Clone,
            Step::Agent,
            Step::Commit,
            Step::Push,
        ]
        .iter()
        .map(|s| (s.name(), s.exit_code()))
        .collect();
        assert_eq!(
            codes,
            [
                ("config", 10),
                ("clone", 11),
                ("agent", 12),
                ("commit", 13),
                ("push", 14)
            ]
        );
        let f = Failure::run_error(Step::Agent, "opencode", RunError::Signal(libc::SIGTERM));
        assert_eq!((f.code, f.reason.as_str()), (143, "terminated by SIGTERM"));
        let f = Failure::run_error(Step::Push, "git", RunError::Signal(libc::SIGINT));
        assert_eq!(f.code, 130);
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        let f = Failure::run_error(Step::Agent, "opencode", RunError::Spawn(nf));
        assert_eq!(
            (f.code, f.reason.as_str()),
            (12, "opencode not found on PATH")
        );
    }

    #[test]
    fn new_steps_have_their_own_exit_codes() {
        assert_eq!(
            (Step::NoChanges.name(), Step::NoChanges.exit_code()),
            ("no-changes", 16)
        );
        assert_eq!(
            (Step::Budget.name(), Step::Budget.exit_code()),
            ("budget", 17)
        );
    }

    #[test]
    fn the_final_answer_is_quoted_and_bounded() {
        assert_eq!(quote_answer(Some("Done!")), "\"Done!\"");
        assert_eq!(
            quote_answer(Some(" It \"works\"\n fine ")),
            r#""It \"works\" fine""#
        );
        let long = quote_answer(Some(&"é".repeat(500)));
        assert_eq!(long.chars().count(), 163, "{long}");
        assert!(long.ends_with("…\""));
        assert_eq!(
            quote_answer(None),
            "the model changed no file and gave no answer"
        );
    }

    #[test]
    fn reasons_fit_on_one_marker_line() {
        assert_eq!(one_line(" a\nb\tc "), "a b c");
        let long = one_line(&"x".repeat(1000));
        assert_eq!(long.chars().count(), 300);
        let m = Marker::Failed {
            step: "push".into(),
            reason: one_line("line one\nline two"),
        };
        assert_eq!(crate::marker::parse(&m.to_string()), Some(m));
    }
}
