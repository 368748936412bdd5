//! The work tree: getting the task's repository ready for OpenCode. Clones it (or reuses
//! a kept clone), checks out the task branch or creates it from `GIT_BASE` or the remote's
//! default branch, and sets up how git authenticates. Also the two git runners every
//! other step uses (`git`, `query`), each handing the token to git only for the one
//! command that talks to the remote.
//!
//! An `impl Agent` block: it stands above `git` (env, credentials), `config` and `child`
//! and below `mod.rs`, which only calls these in the run's order. Committing and pushing
//! the result is `commit`; the pull request is `pr`.

use std::path::Path;

use super::child::{Finished, Output};
use super::git;
use super::{Agent, Failure, Step};

impl Agent {
    /// A git command whose failure ends the run at `step`.
    pub(super) async fn git(
        &mut self,
        step: Step,
        args: &[&str],
        output: Output,
    ) -> Result<Finished, Failure> {
        let cmd = self.git.cmd(args);
        let _token = self.token_file(step, args)?;
        let f = self
            .runner
            .run(cmd, output)
            .await
            .map_err(|e| Failure::run_error(step, "git", e))?;
        if !f.success() {
            let what = format!("git {}", args.first().copied().unwrap_or(""));
            return Err(Failure::finished(step, &what, &f));
        }
        Ok(f)
    }

    /// A git query: Some(stdout) on success, None when git says no (e.g. a ref that does not exist).
    pub(super) async fn query(
        &mut self,
        step: Step,
        args: &[&str],
    ) -> Result<Option<String>, Failure> {
        let cmd = self.git.cmd(args);
        let _token = self.token_file(step, args)?;
        let f = self
            .runner
            .run(cmd, Output::Capture)
            .await
            .map_err(|e| Failure::run_error(step, "git", e))?;
        Ok(f.success().then(|| f.stdout.trim().to_string()))
    }

    /// The token file for a git command that talks to the remote, removed when dropped;
    /// git's credential helper reads it (no environment carries the token).
    pub(super) fn token_file(
        &self,
        step: Step,
        args: &[&str],
    ) -> Result<Option<git::TokenFile>, Failure> {
        if !self.config.credentials.token || !args.first().is_some_and(|a| git::NETWORK.contains(a))
        {
            return Ok(None);
        }
        let token = std::env::var(crate::contract::GIT_TOKEN).unwrap_or_default();
        let path = git::token_file_path(&self.config.home);
        git::TokenFile::write(&path, &token).map(Some).map_err(|e| {
            Failure::new(
                step,
                format!("cannot write the git token file {}: {e}", path.display()),
            )
        })
    }

    pub(super) fn setup_credentials(&mut self) -> Result<(), Failure> {
        let c = &self.config;
        let key_copy = match &c.credentials.ssh_key {
            Some(key) => Some(git::copy_ssh_key(key, &c.home).map_err(|e| {
                Failure::new(
                    Step::Config,
                    format!(
                        "cannot copy the SSH key {} to {}: {e}",
                        key.display(),
                        c.home.display()
                    ),
                )
            })?),
            None => None,
        };
        self.git.env = git::merged(&[
            &git::base_env(c),
            &git::credential_env(c, key_copy.as_deref()),
        ]);
        self.key_copy = key_copy;
        Ok(())
    }

    pub(super) async fn clone_repo(&mut self) -> Result<(), Failure> {
        let dir = self.config.context.clone();
        let shown = self.config.repo_for_display();
        if is_empty_or_absent(&dir).map_err(|e| {
            Failure::new(
                Step::Clone,
                format!("cannot read TASK_CONTEXT_PATH {}: {e}", dir.display()),
            )
        })? {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::new(Step::Clone, format!("cannot create {}: {e}", dir.display()))
            })?;
            self.say(format!("cloning {shown}"));
            let repo = self.config.repo.clone();
            self.git(Step::Clone, &["clone", "--", &repo, "."], Output::Stream)
                .await?;
            return Ok(());
        }
        // A kept volume (or a retried container) may hold the clone already.
        let origin = if dir.join(".git").exists() {
            self.query(Step::Clone, &["remote", "get-url", "origin"])
                .await?
        } else {
            None
        };
        if origin.as_deref() != Some(self.config.repo.as_str()) {
            return Err(Failure::new(
                Step::Clone,
                format!(
                    "TASK_CONTEXT_PATH {} is not empty and is not a clone of {shown}",
                    dir.display()
                ),
            ));
        }
        self.say(format!("reusing the clone of {shown} in {}", dir.display()));
        self.git(Step::Clone, &["fetch", "--prune", "origin"], Output::Stream)
            .await?;
        Ok(())
    }

    /// Checks out the task branch (tracking the remote's) or creates it from the
    /// remote's default branch. Returns the commit the agent starts from (None in an empty repository).
    pub(super) async fn checkout(&mut self) -> Result<Option<String>, Failure> {
        let branch = self.config.branch.clone();
        let remote_ref = format!("refs/remotes/origin/{branch}");
        let local_ref = format!("refs/heads/{branch}");
        let on_remote = self
            .query(
                Step::Clone,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{remote_ref}^{{commit}}"),
                ],
            )
            .await?
            .is_some();
        // A kept work tree from an attempt that never pushed (it failed, or changed
        // nothing) still has the branch: continue it rather than fail to create it again.
        let local_only = !on_remote
            && self
                .query(
                    Step::Clone,
                    &["rev-parse", "--verify", "--quiet", &local_ref],
                )
                .await?
                .is_some();
        if on_remote {
            // An existing task branch is continued, never reset onto a base.
            match &self.config.base {
                Some(base) => self.say(format!(
                    "checking out {branch} (it exists: continuing it, base {base} not applied)"
                )),
                None => self.say(format!("checking out {branch}")),
            }
            let local = self
                .query(
                    Step::Clone,
                    &["rev-parse", "--verify", "--quiet", &local_ref],
                )
                .await?
                .is_some();
            if local {
                self.git(
                    Step::Clone,
                    &["checkout", "--quiet", &branch, "--"],
                    Output::Stream,
                )
                .await?;
                self.git(
                    Step::Clone,
                    &["merge", "--ff-only", "--quiet", &remote_ref],
                    Output::Stream,
                )
                .await?;
            } else {
                self.git(
                    Step::Clone,
                    &[
                        "checkout",
                        "--quiet",
                        "--track",
                        "-b",
                        &branch,
                        &remote_ref,
                        "--",
                    ],
                    Output::Stream,
                )
                .await?;
            }
        } else if local_only {
            self.say(format!(
                "checking out {branch} (from an earlier attempt, not pushed yet)"
            ));
            self.git(
                Step::Clone,
                &["checkout", "--quiet", &branch, "--"],
                Output::Stream,
            )
            .await?;
        } else if let Some(base) = self.config.base.clone() {
            let start = self.resolve_base(&base).await?;
            self.create_branch(&branch, &base, &start).await?;
        } else {
            match self.default_branch().await? {
                Some(default) => {
                    let start = format!("refs/remotes/origin/{default}");
                    self.create_branch(&branch, &default, &start).await?;
                }
                None => {
                    self.say(format!("creating branch {branch} in an empty repository"));
                    self.git(
                        Step::Clone,
                        &["symbolic-ref", "HEAD", &local_ref],
                        Output::Stream,
                    )
                    .await?;
                }
            }
        }
        self.query(
            Step::Clone,
            &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        )
        .await
    }

    /// A new task branch at `start` (not tracking it: the push sets the upstream).
    pub(super) async fn create_branch(
        &mut self,
        branch: &str,
        from: &str,
        start: &str,
    ) -> Result<(), Failure> {
        self.say(format!("creating branch {branch} from {from}"));
        self.git(
            Step::Clone,
            &[
                "checkout",
                "--quiet",
                "--no-track",
                "-b",
                branch,
                start,
                "--",
            ],
            Output::Stream,
        )
        .await?;
        Ok(())
    }

    /// GIT_BASE as a commit: a branch of the remote, a tag, or a commit the clone has.
    pub(super) async fn resolve_base(&mut self, base: &str) -> Result<String, Failure> {
        for candidate in [
            format!("refs/remotes/origin/{base}"),
            format!("refs/tags/{base}"),
            base.to_string(),
        ] {
            let rev = format!("{candidate}^{{commit}}");
            if let Some(sha) = self
                .query(Step::Clone, &["rev-parse", "--verify", "--quiet", &rev])
                .await?
            {
                return Ok(sha);
            }
        }
        Err(Failure::new(
            Step::Clone,
            format!("base {base:?} is not a branch, tag or commit of the repository"),
        ))
    }

    /// The remote's HEAD branch; None when the remote has no branches at all.
    pub(super) async fn default_branch(&mut self) -> Result<Option<String>, Failure> {
        let head = [
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ];
        let mut found = self.query(Step::Clone, &head).await?;
        if found.is_none() {
            // A reused clone may predate the remote's HEAD; ask the remote.
            let _ = self
                .query(Step::Clone, &["remote", "set-head", "origin", "--auto"])
                .await?;
            found = self.query(Step::Clone, &head).await?;
        }
        if let Some(name) = found {
            return Ok(Some(
                name.strip_prefix("origin/").unwrap_or(&name).to_string(),
            ));
        }
        let any = self
            .query(
                Step::Clone,
                &["for-each-ref", "--count=1", "refs/remotes/origin/"],
            )
            .await?
            .unwrap_or_default();
        if any.is_empty() {
            Ok(None)
        } else {
            Err(Failure::new(
                Step::Clone,
                "cannot tell the remote's default branch (origin/HEAD is not set)",
            ))
        }
    }
}

fn is_empty_or_absent(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}
