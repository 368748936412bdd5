//! The `agent` step: start `opencode serve` in the work tree (with git's env, without the
//! push credentials), drive one session through it (`session`), stop the server and
//! whatever escaped its process group, and turn how the session ended into the run's
//! terms: the summary and final answer, or a `Stop` that `mod.rs` acts on (push the
//! work in progress, or not).
//!
//! An `impl Agent` block above `server`, `session`, `prompt` and `git`.

use super::child::{self, RunError};
use super::{Agent, Failure, Step, Stop, git, prompt, server, session};

impl Agent {
    /// The session's totals and the model's final answer, or why it stopped.
    pub(super) async fn run_opencode(
        &mut self,
    ) -> Result<(crate::marker::Summary, Option<String>), Stop> {
        let c = &self.config;
        self.say("running opencode");
        let options = server::Options {
            program: "opencode".into(),
            port: c.opencode_port,
            dir: c.context.clone(),
            env: [
                git::base_env(c),
                vec![("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into())],
            ]
            .concat(),
            // The agent needs no push rights: asdo pushes what it leaves behind.
            remove_env: vec![crate::contract::GIT_TOKEN, crate::contract::GIT_SSH_KEY_DIR],
            password: self.password.clone(),
            stop_grace: c.kill_grace.min(server::MAX_STOP_GRACE),
        };
        let relay = self.runner.relay.clone();
        let port = c.opencode_port;
        let mut server =
            match server::Server::start(&options, &relay, &mut self.runner.signals).await {
                Ok(s) => s,
                Err(server::StartError::Signal(sig)) => {
                    return Err(Stop::Failed(Failure::run_error(
                        Step::Agent,
                        "opencode",
                        RunError::Signal(sig),
                    )));
                }
                Err(server::StartError::Spawn(e)) => {
                    return Err(Stop::Failed(Failure::run_error(
                        Step::Agent,
                        "opencode",
                        RunError::Spawn(e),
                    )));
                }
                Err(server::StartError::Exited(why)) => {
                    return Err(Stop::Failed(Failure::new(
                        Step::Agent,
                        server::explain_exit(&why, port),
                    )));
                }
                Err(server::StartError::Timeout) => {
                    return Err(Stop::Failed(Failure::new(
                        Step::Agent,
                        format!(
                            "opencode serve did not listen within {}s",
                            server::START_TIMEOUT.as_secs()
                        ),
                    )));
                }
            };
        let c = &self.config;
        let settings = session::Settings {
            title: prompt::title(c),
            prompt: prompt::build(c),
            model: c.model.clone(),
            policy: c.permissions,
            questions: c.questions,
            answers_file: c.answers_file.clone(),
            task_id: c.task_id.clone(),
            idle: c.idle_timeout,
            tool_timeout: c.tool_timeout,
            budgets: c.budgets,
            root: c.context.clone(),
        };
        let end = session::drive(&mut server, &settings, &relay, &mut self.runner.signals).await;
        server.stop().await;
        // What escaped the server's process group (a `nohup` job) goes with it, before
        // the work tree is committed.
        child::kill_descendants();
        match end {
            session::End::Finished(t) => Ok((t.summary(), t.final_text.clone())),
            session::End::Failed(why, t) => {
                relay.marker(&t.summary().marker());
                Err(Stop::Failed(Failure::new(Step::Agent, why)))
            }
            session::End::Untrusted(why, t) => {
                relay.marker(&t.summary().marker());
                Err(Stop::Untrusted(Failure::new(Step::Agent, why)))
            }
            session::End::Budget(over, t) => {
                relay.marker(&t.summary().marker());
                Err(Stop::Failed(Failure::new(Step::Budget, over.to_string())))
            }
            session::End::Signal(sig, t) => {
                relay.marker(&t.summary().marker());
                Err(Stop::Signal(sig))
            }
        }
    }
}
