//! Retries of the API server's "try again" answers (429, 503, 504), few and short, so a
//! request that keeps getting them ends with what the server said instead of running
//! into `--request-timeout` as if nothing had answered. kube's own retry layer (15
//! retries, backoff up to 1000 s) is switched off for this one.

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// How many times one request is retried before its answer is the error.
pub const RETRIES: u32 = 4;
/// The first wait; it doubles per retry (0.2 + 0.4 + 0.8 + 1.6 s in all).
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// A server's `Retry-After` is honoured up to this long.
const MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct Retry {
    done: u32,
}

/// True for the statuses that mean "the request was not processed, try again".
pub fn retryable(code: u16) -> bool {
    matches!(code, 429 | 503 | 504)
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for Retry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let resp = result.as_ref().ok()?;
        if !retryable(resp.status().as_u16()) || self.done >= RETRIES {
            return None;
        }
        let mut delay = FIRST_DELAY * 2u32.pow(self.done);
        if let Some(after) = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            delay = delay.max(Duration::from_secs(after).min(MAX_DELAY));
        }
        self.done += 1;
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Streams (a request body sent in pieces) cannot be replayed: not retried.
        let body = req.body().try_clone()?;
        let mut new = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *new.headers_mut() = req.headers().clone();
        *new.extensions_mut() = req.extensions().clone();
        Some(new)
    }
}
