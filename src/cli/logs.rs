//! `asdo logs`: follow one task (exit with its exit code) or every task pod at
//! once (stern style, prefixed lines). stdout carries only log lines; headers,
//! progress and the verdict go to stderr so pipes stay clean.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::{WatchStreamExt, watcher};

use super::Global;
use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::follow::{self, LineSink, LogOptions};
use crate::task::{self, LABEL_TASK_ID};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  asdo logs T001                 follow task T001 to its end; exit with its exit code
  asdo logs agent-t001 --tail 20 --no-follow
  asdo logs --all                every task pod, lines prefixed with the task id
  asdo logs -l task-id=T001 --since 10m --timestamps")]
pub struct LogsArgs {
    /// Task id (T001) or pod name (agent-t001).
    #[arg(required_unless_present_any = ["all", "selector"])]
    pub task: Option<String>,
    /// Follow every task pod in the namespace, picking up new ones as they appear.
    #[arg(long, conflicts_with = "task")]
    pub all: bool,
    /// Follow the task pods matching this label selector (added to app=agent-orchestrator).
    #[arg(short = 'l', long, conflicts_with = "task")]
    pub selector: Option<String>,
    /// Print what is there now and exit.
    #[arg(long)]
    pub no_follow: bool,
    /// Start with the last N lines (-1: all of them, as kubectl).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Start with lines newer than this, e.g. 10m.
    #[arg(long, value_parser = crate::humantime::parse)]
    pub since: Option<Duration>,
    /// Keep the kubelet's timestamp at the start of each line.
    #[arg(long)]
    pub timestamps: bool,
    /// Give up waiting for a pod that has not started after this long (image pulls,
    /// Secrets not yet synced and scheduling are waited through, with the reason on stderr).
    /// Not counted while the pod is queued (held by scheduling gates, e.g. in a Kueue queue).
    #[arg(long, default_value = "10m", value_parser = crate::humantime::parse)]
    pub start_timeout: Duration,
    /// Give up on a pod still queued (held by scheduling gates until Kueue admits it)
    /// after this long; none by default.
    #[arg(long, value_parser = crate::humantime::parse)]
    pub queue_timeout: Option<Duration>,
    /// Give up after this long without progress (server errors, unreachable API server);
    /// 0 retries forever.
    #[arg(long, default_value = "5m", value_parser = crate::humantime::parse)]
    pub retry_for: Duration,
    /// With --all/-l: at most this many log streams at once (one connection each over
    /// HTTP/1.1); further pods queue, and asdo says so.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_log_requests: u32,
    /// When the pod is replaced by another run under the same name, print a separator
    /// and follow the new run instead of stopping with exit 1.
    #[arg(long)]
    pub follow_replaced: bool,
}

/// What `asdo logs` alone is told (clap's "required <TASK>" does not say what else works).
pub const NEEDS_TASK: &str = "name a task (asdo logs T001), or pass --all (every task pod) or -l SELECTOR (the task pods it matches)";

pub async fn run(global: &Global, args: LogsArgs) -> Result<i32> {
    if args.task.is_none() && !args.all && args.selector.is_none() {
        return Err(Error::usage(NEEDS_TASK));
    }
    let scope = global.scope()?;
    let target = args.task.as_deref().map(task::pod_name_for).transpose()?;
    if let Some(t) = args.tail
        && t < -1
    {
        return Err(Error::usage(
            "--tail must be 0 or more, or -1 for all lines",
        ));
    }
    let opts = LogOptions {
        follow: !args.no_follow,
        timestamps: args.timestamps,
        tail: args.tail.filter(|t| *t >= 0),
        since: args.since,
        retry_for: args.retry_for,
        follow_replaced: args.follow_replaced,
        start_timeout: Some(args.start_timeout),
        queue_timeout: args.queue_timeout,
    };
    let selector = super::list::selector(args.selector.as_deref())?;
    let client = cluster::client(&scope.cluster).await?;
    match target {
        Some(name) => follow_one(&client, &scope.namespace, &name, &opts).await,
        None => {
            let cap = args.max_log_requests as usize;
            follow_many(&client, &scope.namespace, &selector, &opts, cap).await
        }
    }
}

/// Follow one pod to its end and return the task's exit code.
pub async fn follow_one(client: &Client, ns: &str, name: &str, opts: &LogOptions) -> Result<i32> {
    let api = cluster::pods(client, Some(ns))?;
    let Some(pod) = cluster::get_pod(&api, name, ns).await? else {
        return Err(Error::NotFound(format!(
            "no pod {name} in namespace {ns}; see the task pods with `asdo list -n {ns}` (or -A for all namespaces)"
        )));
    };
    let task_id = task_label(&pod).unwrap_or_else(|| name.to_string());
    let uid = pod.metadata.uid.clone();
    eprintln!("==> task {task_id}: pod {name} in namespace {ns}");
    if !opts.follow && !follow::has_started(&pod) && !follow::is_finished(&pod) {
        eprintln!("==> task {task_id}: {}", not_started(&pod));
        return Ok(exit::OK);
    }
    if opts.follow && !follow::is_finished(&pod) {
        follow::wait_started(&api, name, uid.as_deref(), opts.start_bounds()).await?;
    }
    let mut sink = follow::Stdout::new(opts.timestamps);
    let pod = follow::stream_logs(&api, name, uid.as_deref(), opts, &mut sink).await?;
    if follow::deleted_mid_run(&pod) && follow::is_finished(&pod) {
        return Err(follow::gone(name));
    }
    if !opts.follow && !follow::is_finished(&pod) {
        if !follow::has_started(&pod) {
            eprintln!("==> task {task_id}: {}", not_started(&pod));
        }
        return Ok(exit::OK);
    }
    eprintln!("==> task {task_id}: {}", ending(&pod));
    Ok(follow::outcome(&pod).1)
}

/// `Failed, exit code 137 (OOMKilled)`: the reason named, never a bare number.
pub fn ending(pod: &Pod) -> String {
    let (phase, code) = follow::outcome(pod);
    match follow::termination_reason(pod) {
        Some(r) => format!("{phase}, exit code {code} ({r})"),
        None => format!("{phase}, exit code {code}"),
    }
}

/// One line for `--no-follow` on a pod that has no log yet.
fn not_started(pod: &Pod) -> String {
    let why = follow::waiting_reason(pod)
        .map(|(r, m)| if m.is_empty() { r } else { format!("{r}: {m}") })
        .unwrap_or_else(|| follow::phase(pod).to_string());
    format!("not started yet ({why}); no log to show")
}

fn task_label(pod: &Pod) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(LABEL_TASK_ID).cloned()
}

/// Lines from many pods, each whole and prefixed, through one locked writer.
struct Prefixed {
    out: Arc<Mutex<std::io::BufWriter<std::io::Stdout>>>,
    prefix: Vec<u8>,
    timestamps: bool,
}

impl LineSink for Prefixed {
    fn line(&mut self, ts: Option<&[u8]>, line: &[u8]) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&self.prefix)?;
        if let (true, Some(ts)) = (self.timestamps, ts) {
            out.write_all(ts)?;
            out.write_all(b" ")?;
        }
        out.write_all(line)?;
        if !line.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

fn colour_prefix(task: &str, colour: bool) -> Vec<u8> {
    if !colour {
        return format!("[{task}] ").into_bytes();
    }
    const PALETTE: [u8; 6] = [31, 32, 33, 34, 35, 36];
    let hash = task
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let c = PALETTE[(hash % PALETTE.len() as u32) as usize];
    format!("\x1b[{c}m[{task}]\x1b[0m ").into_bytes()
}

/// Follow every matching pod, new ones included, until interrupted (or, without
/// follow, print each pod's current log once and exit).
async fn follow_many(
    client: &Client,
    ns: &str,
    selector: &str,
    opts: &LogOptions,
    max_streams: usize,
) -> Result<i32> {
    let api = cluster::pods(client, Some(ns))?;
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let sink_for = |pod: &Pod| {
        let task = task_label(pod).unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
        Prefixed {
            out: out.clone(),
            prefix: colour_prefix(&task, colour),
            timestamps: opts.timestamps,
        }
    };

    if !opts.follow {
        let lp = kube::api::ListParams::default().labels(selector);
        let pods = cluster::list_all(&api, &lp, &format!("list pods in namespace {ns}")).await?;
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            // A pod with no log yet is one line, never a wait that stalls the others.
            if !follow::has_started(pod) && !follow::is_finished(pod) {
                eprintln!("==> {name}: {}", not_started(pod));
                continue;
            }
            let mut sink = sink_for(pod);
            match follow::stream_logs(&api, &name, pod.metadata.uid.as_deref(), opts, &mut sink)
                .await
            {
                Ok(p) if !follow::has_started(&p) => eprintln!("==> {name}: {}", not_started(&p)),
                Ok(_) => {}
                Err(e) => eprintln!("{name}: {e}"),
            }
        }
        return Ok(exit::OK);
    }

    // One bounded list first: a refused selector, missing RBAC or a server that never
    // answers is one line and exit 1 here, not a watch retrying in silence.
    let probe = kube::api::ListParams::default().labels(selector).limit(1);
    cluster::bounded(
        &format!("list pods ({selector}) in namespace {ns}"),
        api.list(&probe),
    )
    .await
    .map_err(|e| match e {
        Error::Api(m) if m.contains(" 400 ") => {
            Error::Api(format!("{m}; check the label selector (-l)"))
        }
        other => other,
    })?;
    eprintln!("==> following task pods ({selector}) in namespace {ns}; Ctrl-C to stop");
    // kube-rs speaks HTTP/1.1: each open stream is a TCP connection, so 500 pods would be
    // 500 connections; stern's --max-log-requests answer: cap them and queue the rest.
    let streams = Arc::new(tokio::sync::Semaphore::new(max_streams));
    let mut followed = HashSet::new();
    let mut outage = follow::Outage::new(opts.retry_for, "the pod watch");
    let mut tasks = tokio::task::JoinSet::new();
    // One Ctrl-C listener for the whole loop: a listener made anew each turn would miss a
    // signal that lands between turns, and with tokio's handler installed the default
    // action is gone, so the command would run on.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let cfg = watcher::Config::default().labels(selector);
    let mut events = pin!(watcher(api.clone(), cfg).default_backoff());
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    outage.ok();
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if !followed.insert(uid) {
                        continue;
                    }
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let mut sink = sink_for(&pod);
                    let api = api.clone();
                    let opts = opts.clone();
                    let streams = streams.clone();
                    tasks.spawn(async move {
                        let uid = pod.metadata.uid.clone();
                        // One run per uid: a replaced pod is a new watch event and its own follow.
                        let opts = LogOptions { follow_replaced: false, ..opts };
                        // The permit covers the wait too: a watch is a connection as well.
                        let permit = match streams.clone().try_acquire_owned() {
                            Ok(p) => p,
                            Err(_) => {
                                eprintln!("==> {name}: queued, {max_streams} log streams already open (--max-log-requests)");
                                match streams.clone().acquire_owned().await {
                                    Ok(p) => p,
                                    Err(_) => return,
                                }
                            }
                        };
                        if !follow::is_finished(&pod)
                            && !follow::has_started(&pod)
                            && let Err(e) = follow::wait_started(&api, &name, uid.as_deref(), opts.start_bounds()).await
                        {
                            eprintln!("{name}: {e}");
                            return;
                        }
                        match follow::stream_logs(&api, &name, uid.as_deref(), &opts, &mut sink).await {
                            Ok(p) if follow::deleted_mid_run(&p) && follow::is_finished(&p) => {
                                eprintln!("==> {}", follow::deleted_words(&name))
                            }
                            Ok(p) => eprintln!("==> {name}: {}", ending(&p)),
                            Err(e) => eprintln!("{name}: {e}"),
                        }
                        drop(permit);
                    });
                }
                Some(Ok(_)) => outage.ok(),
                Some(Err(e)) => {
                    if let Some(fatal) = follow::fatal_watch_error(&e, &format!("watch pods ({selector}) in namespace {ns}")) {
                        return Err(fatal);
                    }
                    match outage.failed(&follow::describe_watch(&e)) {
                        Some(give_up) => return Err(give_up),
                        None => tracing::debug!("pod watch interrupted: {e}; resuming"),
                    }
                }
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            // Interrupted, as a shell counts it (kubectl and stern exit 130 too).
            _ = &mut interrupted => return Ok(exit::INTERRUPTED),
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_name_the_reason() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-k1"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        assert_eq!(ending(&pod), "Failed, exit code 137 (OOMKilled)");
        let deadline: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-k2"},
            "status": {"phase": "Failed", "reason": "DeadlineExceeded"}
        }))
        .unwrap();
        assert_eq!(ending(&deadline), "Failed, exit code 1 (DeadlineExceeded)");
    }
}
