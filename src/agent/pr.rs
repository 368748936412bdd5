//! After the push: the draft pull/merge request. Picks the branch it targets (`GIT_BASE`
//! when it is a branch of the remote, else the remote's default branch), describes the
//! change from the files the branch touches and the session's summary, and opens or
//! updates the request through `forge`. A refusal fails only the `pr` step: the branch
//! is pushed already, and the failure says so.
//!
//! An `impl Agent` block above `forge` (the REST calls) and `workspace` (git queries).

use super::{Agent, Failure, Step, forge};
use crate::marker::Marker;

impl Agent {
    /// After the push: open (or update) the draft pull/merge request and say where it is.
    pub(super) async fn pull_request(
        &mut self,
        forge: &forge::Forge,
        sha: &str,
        summary: &crate::marker::Summary,
    ) -> Result<(), Failure> {
        let pushed = |why: String| {
            Failure::new(
                Step::Pr,
                format!("{why}; the branch was pushed ({sha}), open the request by hand"),
            )
        };
        // A PR targets a branch: the base if it is one of the remote's, else the default branch.
        let as_branch = match self.config.base.clone() {
            Some(b) => {
                let r = format!("refs/remotes/origin/{b}");
                self.query(Step::Pr, &["rev-parse", "--verify", "--quiet", &r])
                    .await?
                    .map(|_| b)
            }
            None => None,
        };
        let base = match as_branch {
            Some(b) => b,
            None => self
                .default_branch()
                .await
                .map_err(|f| pushed(f.reason))?
                .ok_or_else(|| pushed("the remote has no default branch to target".into()))?,
        };
        let range = format!("refs/remotes/origin/{base}...HEAD");
        let files: Vec<String> = self
            .query(Step::Pr, &["diff", "--name-only", &range])
            .await?
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let c = &self.config;
        let (title, body) = forge::describe(
            &c.task_id,
            c.prompt
                .as_deref()
                .unwrap_or("Implement the task from its spec"),
            &c.branch,
            &base,
            &files,
            Some(&summary.to_string()),
        );
        self.say(format!("opening a pull request {} -> {base}", c.branch));
        // Read here, used once in a header, dropped: never stored, printed or passed on.
        let token = std::env::var(crate::contract::GIT_TOKEN).unwrap_or_default();
        let req = forge::Request {
            branch: c.branch.clone(),
            base,
            title,
            body,
        };
        let url = forge::open_or_update(forge, &token, &req)
            .await
            .map_err(pushed)?;
        self.runner.relay.marker(&Marker::Pr(url));
        Ok(())
    }
}
