//! Following task pods' logs to their end, one (`asdo logs T001`, `spawn --follow`) or
//! many at once (`logs --all`/`-l`, stern style: each line prefixed with its task id).
//! Below the verbs so `logs` and `spawn` share it instead of one verb borrowing the other.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster;
use crate::error::{Error, Result, exit};
use crate::follow::{self, LineSink, LogOptions};
use crate::taskpod::TaskPod;

/// Follow one pod to its end and return the task's exit code.
pub async fn follow_one(client: &Client, ns: &str, name: &str, opts: &LogOptions) -> Result<i32> {
    let api = cluster::pods(client, Some(ns))?;
    let pod = cluster::task_pod(&api, name, ns)
        .await
        .map_err(|e| match e {
            Error::NotFound(m) => Error::NotFound(format!("{m} (or -A for all namespaces)")),
            other => other,
        })?;
    let task_id = TaskPod(&pod).task_label().unwrap_or(name).to_string();
    let uid = pod.metadata.uid.clone();
    eprintln!("==> task {task_id}: pod {name} in namespace {ns}");
    if !opts.follow && !TaskPod(&pod).has_started() && !TaskPod(&pod).is_finished() {
        eprintln!("==> task {task_id}: {}", TaskPod(&pod).not_started());
        return Ok(exit::OK);
    }
    if opts.follow && !TaskPod(&pod).is_finished() {
        follow::wait_started(&api, name, uid.as_deref(), opts.start_bounds()).await?;
    }
    let mut sink = follow::Stdout::new(opts.timestamps);
    let pod = follow::stream_logs(&api, name, uid.as_deref(), opts, &mut sink).await?;
    if TaskPod(&pod).deleted_mid_run() && TaskPod(&pod).is_finished() {
        return Err(follow::gone(name));
    }
    if !opts.follow && !TaskPod(&pod).is_finished() {
        if !TaskPod(&pod).has_started() {
            eprintln!("==> task {task_id}: {}", TaskPod(&pod).not_started());
        }
        return Ok(exit::OK);
    }
    eprintln!("==> task {task_id}: {}", TaskPod(&pod).ending());
    Ok(TaskPod(&pod).outcome().1)
}

/// Lines from many pods, each whole and prefixed, through one locked writer.
pub struct Prefixed {
    pub out: Arc<Mutex<std::io::BufWriter<std::io::Stdout>>>,
    pub prefix: Vec<u8>,
    pub timestamps: bool,
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

pub fn colour_prefix(task: &str, colour: bool) -> Vec<u8> {
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
pub async fn follow_many(
    client: &Client,
    ns: &str,
    selector: &str,
    opts: &LogOptions,
    max_streams: Option<usize>,
) -> Result<i32> {
    let api = cluster::pods(client, Some(ns))?;
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let sink_for = |pod: &Pod| {
        let task = TaskPod(pod).task_id().to_string();
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
            if !TaskPod(pod).has_started() && !TaskPod(pod).is_finished() {
                eprintln!("==> {name}: {}", TaskPod(pod).not_started());
                continue;
            }
            let mut sink = sink_for(pod);
            match follow::stream_logs(&api, &name, pod.metadata.uid.as_deref(), opts, &mut sink)
                .await
            {
                Ok(p) if !TaskPod(&p).has_started() => {
                    eprintln!("==> {name}: {}", TaskPod(&p).not_started())
                }
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
    // Over HTTP/1.1 each open stream is a TCP connection, so 500 pods would be 500
    // connections: stern's --max-log-requests answer, cap them and queue the rest. Over
    // HTTP/2 (known after the list above) they share a few connections: no practical cap.
    let max_streams = max_streams.unwrap_or_else(crate::apiconn::default_log_streams);
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
                        if !TaskPod(&pod).is_finished()
                            && !TaskPod(&pod).has_started()
                            && let Err(e) = follow::wait_started(&api, &name, uid.as_deref(), opts.start_bounds()).await
                        {
                            eprintln!("{name}: {e}");
                            return;
                        }
                        match follow::stream_logs(&api, &name, uid.as_deref(), &opts, &mut sink).await {
                            Ok(p) if TaskPod(&p).deleted_mid_run() && TaskPod(&p).is_finished() => {
                                eprintln!("==> {}", follow::deleted_words(&name))
                            }
                            Ok(p) => eprintln!("==> {name}: {}", TaskPod(&p).ending()),
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
        assert_eq!(TaskPod(&pod).ending(), "Failed, exit code 137 (OOMKilled)");
        let deadline: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-k2"},
            "status": {"phase": "Failed", "reason": "DeadlineExceeded"}
        }))
        .unwrap();
        assert_eq!(
            TaskPod(&deadline).ending(),
            "Failed, no exit code (DeadlineExceeded)"
        );
    }
}
