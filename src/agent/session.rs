//! One OpenCode session driven to its end through the server's API, judged from the
//! events rather than from any exit status (an attached OpenCode exits 0 on a model
//! error): `session.error` fails the task with the provider's own message, a refused
//! permission fails it, a session that stops mid-turn fails it, and a session with no
//! activity for the idle timeout is aborted and fails it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::answers::{Asks, QuestionPolicy};
use super::budget::{Budgets, Exceeded, MAX_EMPTY_TURNS};
use super::child::{Relay, Signals};
use super::events::Tracker;
use super::permissions::Policy;
use super::server::Server;
use crate::marker::STEP;
use crate::opencode::{Event, EventStream};

pub struct Settings {
    pub title: String,
    pub prompt: String,
    /// `provider/model`, or OpenCode's default.
    pub model: Option<String>,
    pub policy: Policy,
    /// `agent.questions`: the model's `question` tool.
    pub questions: QuestionPolicy,
    /// The person's channel (downwardAPI annotations file), if the pod has one.
    pub answers_file: Option<PathBuf>,
    pub task_id: String,
    pub idle: Duration,
    /// One tool call may run this long (it counts as activity for the idle watchdog).
    pub tool_timeout: Duration,
    pub budgets: Budgets,
    /// The work tree, for relative paths in the log.
    pub root: PathBuf,
}

/// How the session ended.
pub enum End {
    /// The model finished its turn; the totals are in the tracker.
    Finished(Tracker),
    /// Failed, in words for the `failed agent:` marker.
    Failed(String, Tracker),
    /// Failed in a way that leaves the work tree untrusted (a permission the model
    /// granted itself): nothing of it is pushed, not even as work in progress.
    Untrusted(String, Tracker),
    /// A budget was exceeded (`failed budget:`); the session was aborted.
    Budget(Exceeded, Tracker),
    /// SIGTERM/SIGINT arrived; the session was aborted.
    Signal(i32, Tracker),
}

/// How long the server gets to open the event stream and create the session.
const SETUP: Duration = Duration::from_secs(60);
const ABORT: Duration = Duration::from_secs(5);

pub async fn drive(
    server: &mut Server,
    s: &Settings,
    relay: &Arc<Relay>,
    signals: &mut Signals,
) -> End {
    let client = server.client.clone();
    let empty = || Tracker::new(&s.root, "");
    // Subscribed before the prompt is sent, so no event of the run is missed.
    let setup = async {
        let mut events = client.events().await?;
        // The first event (`server.connected`) says the subscription is live.
        let _ = events.next().await;
        let session = client.create_session(&s.title).await?;
        Ok::<_, crate::opencode::Error>((events, session))
    };
    let (mut events, session) = tokio::select! {
        r = tokio::time::timeout(SETUP, setup) => match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return End::Failed(e.to_string(), empty()),
            Err(_) => return End::Failed(format!("the opencode server did not open a session within {}s", SETUP.as_secs()), empty()),
        },
        sig = signals.recv() => return End::Signal(sig, empty()),
        status = server.exited() => {
            let _ = status;
            return End::Failed(format!("the opencode server {}", server.exit_reason().await), empty());
        }
    };
    // `send`/`attach` build URLs from this id: only OpenCode's own shape is announced.
    if !crate::marker::is_session_id(&session.id) {
        return End::Failed(
            format!(
                "the opencode server named its session {:?}, not an OpenCode session id (ses_…)",
                session.id.chars().take(80).collect::<String>()
            ),
            empty(),
        );
    }
    relay.marker(&crate::marker::Marker::Session {
        id: session.id.clone(),
        url: format!("http://{}", client.authority()),
    });
    let mut t = Tracker::new(&s.root, &session.id);
    if let Err(e) = client
        .prompt_async(&session.id, &s.prompt, s.model.as_deref())
        .await
    {
        return End::Failed(format!("sending the prompt: {e}"), t);
    }
    let mut last_activity = Instant::now();
    // Permissions and questions: who answers them, and which answers are forged.
    let mut asks = Asks::new(s.policy, s.questions, s.answers_file.clone(), &s.task_id);
    // How often the person's channel is read while something waits for a person.
    let mut person = tokio::time::interval(Duration::from_secs(1));
    loop {
        // A tool call in progress (a build, a test run) is activity however quiet it is;
        // its own bound is the tool timeout, which names it. Not while a permission or a
        // question waits for a person: the tool that asked is "running" then too, and the idle timeout
        // bounds the wait.
        let oldest_tool = t
            .running
            .values()
            .min_by_key(|(_, since)| *since)
            .filter(|_| !asks.waiting())
            .map(|(what, since)| (what.clone(), Instant::from_std(*since)));
        let deadline = match &oldest_tool {
            Some((_, since)) => *since + s.tool_timeout,
            None => last_activity + s.idle,
        };
        let ev = tokio::select! {
            ev = next(&mut events) => ev,
            _ = person.tick(), if asks.waiting() => {
                asks.check_person(&client, relay).await;
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {
                abort(&client, &session.id).await;
                if let Some((what, _)) = oldest_tool {
                    return End::Failed(format!(
                        "tool {what} still running after {} (agent.toolTimeout)",
                        crate::humantime::short(s.tool_timeout)
                    ), t);
                }
                let mut why = format!("stalled: no activity for {}", crate::humantime::short(s.idle));
                if let Some(note) = asks.waiting_note() {
                    why.push_str(&format!(" ({note})"));
                }
                return End::Failed(why, t);
            }
            sig = signals.recv() => {
                abort(&client, &session.id).await;
                return End::Signal(sig, t);
            }
            _ = server.exited() => {
                return End::Failed(format!("the opencode server {}", server.exit_reason().await), t);
            }
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // A server that died cuts the stream first: name its death, not the cut.
                if tokio::time::timeout(Duration::from_secs(2), server.exited())
                    .await
                    .is_ok()
                {
                    return End::Failed(
                        format!("the opencode server {}", server.exit_reason().await),
                        t,
                    );
                }
                // The server is still up: subscribe again.
                match client.events().await {
                    Ok(again) => {
                        relay.line(&format!("{STEP}event stream cut ({e}); resubscribed"));
                        events = again;
                        continue;
                    }
                    Err(e2) => {
                        return End::Failed(
                            format!("the opencode event stream ended: {e}; {e2}"),
                            t,
                        );
                    }
                }
            }
        };
        if !ev.is_heartbeat() {
            last_activity = Instant::now();
        }
        let turns = t.turns;
        for line in t.observe(&ev) {
            relay.line(&line);
        }
        if t.turns != turns {
            relay.marker(&t.summary().so_far());
            // Checked after every turn, so a run stops at the first one over a limit.
            if let Some(over) = s.budgets.check(&t.totals()) {
                abort(&client, &session.id).await;
                return End::Budget(over, t);
            }
            if t.looping {
                abort(&client, &session.id).await;
                let why = match server.last_error() {
                    Some(e) => format!(
                        "the model returned {MAX_EMPTY_TURNS} empty turns in a row (no tokens, no tool call); last provider error: {e}"
                    ),
                    None => format!(
                        "the model returned {MAX_EMPTY_TURNS} empty turns in a row (no tokens, no tool call)"
                    ),
                };
                return End::Failed(why, t);
            }
        }
        if let Some(why) = asks.observe(&ev, &client, relay).await {
            abort(&client, &session.id).await;
            if asks.forged {
                return End::Untrusted(why, t);
            }
            return End::Failed(why, t);
        }
        if t.idle {
            return judge(t);
        }
    }
}

async fn next(events: &mut EventStream) -> Result<Event, crate::opencode::Error> {
    match events.next().await {
        Some(r) => r,
        None => Err(crate::opencode::Error::Http("closed by the server".into())),
    }
}

/// The session went idle: did it finish its work?
fn judge(t: Tracker) -> End {
    if let Some(e) = t.error.clone() {
        return End::Failed(e, t);
    }
    if !t.rejected.is_empty() {
        return End::Failed(
            "a permission was refused and the session stopped before the task was done".into(),
            t,
        );
    }
    match t.last_finish.as_deref() {
        Some("stop") => End::Finished(t),
        None => End::Failed(
            "the session ended without an answer from the model".into(),
            t,
        ),
        Some("length") => End::Failed(
            "the model's answer was cut off at its output limit".into(),
            t,
        ),
        Some(other) => End::Failed(
            format!("the session stopped mid-turn (finish reason {other})"),
            t,
        ),
    }
}

async fn abort(client: &crate::opencode::Client, session: &str) {
    let _ = tokio::time::timeout(ABORT, client.abort(session)).await;
}
