//! `text/event-stream` framing: `data:` lines up to a blank line make one event.

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Error, Event};

/// One event larger than this is a broken stream, not a message to buffer.
pub(super) const MAX_EVENT: usize = 32 * 1024 * 1024;

/// The open `GET /event` stream.
pub struct EventStream {
    body: Incoming,
    parser: Parser,
}

impl EventStream {
    pub(super) fn new(body: Incoming) -> EventStream {
        EventStream {
            body,
            parser: Parser::default(),
        }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(ev) = self.parser.pop() {
                return Some(ev);
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(Error::Http(e.to_string()))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = self.parser.feed(data)
                    {
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

/// Bytes in, events out; split from the stream so it can be tested without a socket.
#[derive(Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    data: Vec<u8>,
    ready: std::collections::VecDeque<Result<Event, Error>>,
}

impl Parser {
    pub(crate) fn feed(&mut self, mut bytes: Bytes) -> Result<(), Error> {
        while bytes.has_remaining() {
            let chunk = bytes.chunk();
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    self.line.extend_from_slice(&chunk[..i]);
                    bytes.advance(i + 1);
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    let n = chunk.len();
                    bytes.advance(n);
                }
            }
            if self.line.len() + self.data.len() > MAX_EVENT {
                return Err(Error::Http(format!(
                    "an event over {} (asdo's cap on one event of GET /event)",
                    super::size(MAX_EVENT)
                )));
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = std::mem::take(&mut self.data);
                self.ready.push_back(
                    serde_json::from_slice(&data)
                        .map(Event::from_json)
                        .map_err(|e| Error::Http(format!("an event that is not JSON: {e}"))),
                );
            }
            return;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing OpenCode relies on.
    }

    pub(crate) fn pop(&mut self) -> Option<Result<Event, Error>> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut p = Parser::default();
        p.feed(Bytes::from_static(
            b"data: {\"type\":\"server.connected\",\"prop",
        ))
        .unwrap();
        assert!(p.pop().is_none());
        p.feed(Bytes::from_static(
            b"erties\":{}}\r\n\r\n: comment\n\ndata: {\"type\":\"session.idle\",\ndata: \"properties\":{\"sessionID\":\"ses_1\"}}\n\n",
        ))
        .unwrap();
        let a = p.pop().unwrap().unwrap();
        assert_eq!(a.kind, "server.connected");
        // Two `data:` lines are one event, joined by a newline.
        let b = p.pop().unwrap().unwrap();
        assert_eq!(
            (b.kind.as_str(), b.session_id()),
            ("session.idle", Some("ses_1"))
        );
        assert!(p.pop().is_none());
        p.feed(Bytes::from_static(b"data: not json\n\n")).unwrap();
        assert!(p.pop().unwrap().is_err());
    }
}
