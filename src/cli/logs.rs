//! `asdo logs`: follow one task (exit with its exit code) or every task pod at
//! once (stern style, prefixed lines). stdout carries only log lines; headers,
//! progress and the verdict go to stderr so pipes stay clean.

use std::time::Duration;

use clap::Args;

use super::Global;
use crate::error::{Error, Result};
use crate::follow::LogOptions;
use crate::runtime::Runtime;
use crate::runtime::follow::Follow;
use crate::task;

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
    /// With --all/-l: at most this many log streams at once; further pods queue, and asdo
    /// says so. Default: 1000 over HTTP/2 (an https API server; streams share a few
    /// connections), 50 over HTTP/1.1 (one connection each).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_log_requests: Option<u32>,
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
    let selector = crate::task::selector(args.selector.as_deref())?;
    let which = match &target {
        Some(name) => Follow::One(name),
        None => Follow::Many {
            selector: &selector,
            cap: args.max_log_requests.map(|n| n as usize),
        },
    };
    Runtime::connect(&scope).await?.follow(which, &opts).await
}
