//! Handing the work back: everything after the session that reaches the remote. Puts
//! back the `.git/config` saved before OpenCode ran, refuses a commit (or a commit
//! OpenCode made itself) that holds one of the run's secrets, commits what the work tree
//! holds (as work in progress after a failed or interrupted session) and pushes the
//! task branch.
//!
//! An `impl Agent` block above `workspace` (the git runners), `secrets` and `prompt`
//! (the commit messages); `mod.rs` decides when it runs, `pr` what follows a push.

use super::child::Output;
use super::{Agent, Failure, RunOutcome, Step, prompt, secrets};

impl Agent {
    pub(super) async fn commit_and_push(
        &mut self,
        base: Option<String>,
    ) -> Result<RunOutcome, Failure> {
        self.commit_and_push_as(base, None).await
    }

    /// `wip`: the commit is marked as work in progress, saying why (an interrupted or
    /// failed session). A WIP push is not cut short by a further signal: a second SIGTERM
    /// right after the first (kubectl delete, then the kubelet) must not lose the work;
    /// the pod's grace period still bounds it.
    pub(super) async fn commit_and_push_as(
        &mut self,
        base: Option<String>,
        wip: Option<&str>,
    ) -> Result<RunOutcome, Failure> {
        let shielded = self.runner.shielded;
        self.runner.shielded = wip.is_some();
        let r = self.commit_and_push_inner(base, wip).await;
        self.runner.shielded = shielded;
        r
    }

    async fn commit_and_push_inner(
        &mut self,
        base: Option<String>,
        wip: Option<&str>,
    ) -> Result<RunOutcome, Failure> {
        self.restore_git_config()?;
        let dirty = !self
            .git(
                Step::Commit,
                &["status", "--porcelain", "--untracked-files=all"],
                Output::Capture,
            )
            .await?
            .stdout
            .trim()
            .is_empty();
        let head_now = self
            .query(
                Step::Commit,
                &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            )
            .await?;
        let committed_by_agent = head_now.is_some() && head_now != base;
        if !dirty && !committed_by_agent {
            return Ok(RunOutcome::NoChanges);
        }
        let secrets = self.secrets();
        if head_now.is_some() {
            // Commits OpenCode made itself are pushed too: their diffs and messages first.
            self.scan(
                &secrets,
                &[
                    "log",
                    "-p",
                    "-U0",
                    "--text",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-renames",
                    "--format=%x01%H%n%B",
                    "HEAD",
                    "--not",
                    "--remotes=origin",
                ],
            )
            .await?;
        }
        if dirty {
            self.say("committing");
            self.git(Step::Commit, &["add", "--all"], Output::Stream)
                .await?;
            self.scan(
                &secrets,
                &[
                    "diff",
                    "--cached",
                    "-U0",
                    "--text",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-renames",
                ],
            )
            .await?;
            let message = if let Some(why) = wip {
                prompt::wip_message(&self.config, why)
            } else {
                prompt::commit_message(&self.config)
            };
            // Hooks would need the project's dev tooling, which the image does not have.
            self.git(
                Step::Commit,
                &["commit", "--quiet", "--no-verify", "-m", &message],
                Output::Stream,
            )
            .await?;
        } else {
            self.say("opencode committed its changes itself; nothing left to commit");
        }
        let branch = self.config.branch.clone();
        self.say(format!("pushing {branch}"));
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git(
            Step::Push,
            &["push", "--set-upstream", "--", "origin", &refspec],
            Output::Stream,
        )
        .await?;
        let sha = self
            .query(Step::Push, &["rev-parse", "--verify", "HEAD^{commit}"])
            .await?
            .ok_or_else(|| Failure::new(Step::Push, "pushed, but cannot read HEAD"))?;
        Ok(RunOutcome::Pushed(sha))
    }

    pub(super) fn git_config_path(&self) -> std::path::PathBuf {
        self.config.context.join(".git").join("config")
    }

    fn restore_git_config(&self) -> Result<(), Failure> {
        let Some(saved) = &self.git_config else {
            return Ok(());
        };
        let path = self.git_config_path();
        if std::fs::read(&path).ok().as_ref() == Some(saved) {
            return Ok(());
        }
        self.runner.relay.line(&format!(
            "{}.git/config was changed during the session; asdo's copy from before it is put back",
            crate::marker::STEP
        ));
        std::fs::write(&path, saved).map_err(|e| {
            Failure::new(
                Step::Commit,
                format!("cannot restore {}: {e}", path.display()),
            )
        })
    }

    /// The values to keep out of commits: every secret env var the agent was given.
    fn secrets(&self) -> Vec<secrets::Secret> {
        self.config
            .secret_env
            .iter()
            .filter_map(|name| {
                let value = if name == crate::contract::PASSWORD_ENV {
                    Some(self.password.clone())
                } else {
                    std::env::var(name).ok()
                };
                secrets::Secret::new(name, &value?)
            })
            .collect()
    }

    /// Runs a `git diff`/`git log -p` and refuses the commit when it holds a secret.
    async fn scan(&mut self, secrets: &[secrets::Secret], args: &[&str]) -> Result<(), Failure> {
        if secrets.is_empty() {
            return Ok(());
        }
        let out = self.git(Step::Commit, args, Output::Capture).await?;
        match secrets::scan_patch(out.stdout.as_bytes(), secrets) {
            Some(found) => Err(Failure::new(Step::Commit, found.reason())),
            None => Ok(()),
        }
    }
}
