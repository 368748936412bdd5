//! `?watch=true`: newline-delimited JSON events over a chunked response, with
//! resourceVersion resume from a bounded history, synthetic ADDED events for
//! "start at most recent", selectors, timeoutSeconds and Table rows for kubectl.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::resources::{AnyObject, Kind};
use super::selectors::Selectors;
use super::server::{self, Request, Resp};
use super::status::ApiError;
use super::store::{Change, ChangeType};
use super::table;
use super::util;

/// Turns changes into the lines one watch sends.
struct Encoder {
    resource: &'static str,
    namespace: Option<String>,
    selectors: Selectors,
    /// `includeObject` when the client asked for Table rows.
    table: Option<String>,
    columns_sent: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: &dyn AnyObject) -> Bytes {
        let object = match &self.table {
            None => obj.to_json(),
            Some(include) => {
                // Column definitions come once, with the first event.
                let columns = (!self.columns_sent).then(|| obj.columns());
                self.columns_sent = true;
                let rv = obj.meta().resource_version.clone();
                table::table(
                    columns,
                    vec![obj.table_row(util::now(), include)],
                    json!({"resourceVersion": rv}),
                )
            }
        };
        event_line(kind, object)
    }

    fn in_scope(&self, obj: &dyn AnyObject) -> bool {
        obj.resource() == self.resource
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| obj.meta().namespace.as_deref() == Some(ns))
    }

    /// What this watch sees of a change: selectors turn entering and leaving the
    /// selection into ADDED and DELETED.
    fn view(&mut self, change: &Change) -> Option<Bytes> {
        if !self.in_scope(&*change.object) {
            return None;
        }
        let now = self.selectors.matches(&*change.object);
        let before = change
            .previous
            .as_ref()
            .map(|p| self.selectors.matches(&**p));
        let kind = match (change.kind, before, now) {
            (ChangeType::Modified, Some(true), true) => "MODIFIED",
            (ChangeType::Modified, Some(true), false) => "DELETED",
            (_, _, false) => return None,
            (ChangeType::Deleted, _, true) => "DELETED",
            (_, _, true) => "ADDED",
        };
        Some(self.line(kind, &*change.object))
    }
}

fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    line.into()
}

pub(crate) fn serve<K: Kind>(
    shared: &Arc<Shared>,
    req: &Request,
    ns: Option<&str>,
) -> Result<Resp, ApiError> {
    let selectors = Selectors::from_query(&req.query, K::FIELDS)?;
    let timeout = req
        .int_param("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let send_initial = req.flag("sendInitialEvents");
    let rv = req.param("resourceVersion").unwrap_or("");
    let mut enc = Encoder {
        resource: K::URL_PATH_SEGMENT,
        namespace: ns.map(str::to_string),
        selectors,
        table: table::wants_table(&req.accept)
            .then(|| req.param("includeObject").unwrap_or("Metadata").to_string()),
        columns_sent: false,
    };
    let mut lines = vec![];
    let mut store = shared.store();
    // Subscribing under the same lock as the snapshot: nothing is missed or doubled.
    let mut changes = store.subscribe();
    if send_initial || rv.is_empty() || rv == "0" {
        for obj in store.page::<K>(ns, &enc.selectors, None, None).items {
            lines.push(enc.line("ADDED", &obj));
        }
        if send_initial {
            let mark = json!({
                "kind": K::KIND, "apiVersion": K::API_VERSION,
                "metadata": {"resourceVersion": store.resource_version().to_string(),
                             "annotations": {"k8s.io/initial-events-end": "true"}},
            });
            lines.push(event_line("BOOKMARK", mark));
        }
    } else {
        let from: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        match store.history_after(from) {
            Ok(replay) => lines.extend(replay.iter().filter_map(|c| enc.view(c))),
            Err(oldest) => {
                let gone = ApiError::gone(format!("too old resource version: {from} ({oldest})"));
                let status = serde_json::to_value(gone.to_status()).unwrap();
                drop(store);
                let (tx, resp) = server::streamed(200, "application/json");
                tokio::spawn(async move {
                    let _ = tx.send(Ok(event_line("ERROR", status))).await;
                });
                return Ok(resp);
            }
        }
    }
    drop(store);
    let (tx, resp) = server::streamed(200, "application/json");
    tokio::spawn(async move {
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let change = tokio::select! {
                c = changes.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
                _ = &mut expired => return,
                _ = tx.closed() => return,
            };
            if let Some(line) = enc.view(&change)
                && tx.send(Ok(line)).await.is_err()
            {
                return;
            }
        }
    });
    Ok(resp)
}
