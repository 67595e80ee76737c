//! Dividing a response body into messages, as bytes arrive. The runner stamps every message
//! decoded from one network read with that read's arrival time, so the decoder works on
//! reads, not on a stream that would hide their boundaries (which is why the SSE crates,
//! whose parsers only come as a `Stream` adapter, do not fit here).
//!
//! Server-Sent Events follow the WHATWG HTML specification, section 9.2.6 "Interpreting an
//! event stream": lines end in CRLF, LF or CR; a line starting with `:` is a comment (llama-server
//! pings); `field: value` drops one space after the colon; the `data` lines of one event are
//! joined with LF and the event is dispatched at the blank line that ends it. NDJSON (Ollama) is
//! one JSON value per LF-terminated line.

use super::{Protocol, StreamEvent};

/// The longest message a decoder takes. No token stream sends one near it: a token's event is
/// tens of bytes and a final one with timings a few kilobytes; Ollama's largest, a generate
/// stream's last line with its `context` ids, is under 1 MB at 128k tokens. Longer is a broken
/// or hostile server, and without a bound its line would be held in memory however long.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

fn too_long() -> String {
    format!(
        "the server sent a message of over {} MiB (no token stream sends one): the response was refused",
        MAX_MESSAGE_BYTES / (1024 * 1024)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Ndjson,
}

/// Turns reads of a response body into protocol events.
pub struct Decoder<'p> {
    protocol: &'p dyn Protocol,
    /// Bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// A CR ended the last line, so an LF right after it ends nothing more (CRLF split by a read).
    after_cr: bool,
    /// SSE: the data lines of the event being read, joined with LF.
    data: Option<String>,
}

impl<'p> Decoder<'p> {
    pub fn new(protocol: &'p dyn Protocol) -> Decoder<'p> {
        Decoder {
            protocol,
            line: Vec::new(),
            after_cr: false,
            data: None,
        }
    }

    /// Appends the events completed by one read to `events`. An `Err` is a message the
    /// protocol refuses (a server error, malformed JSON), and the stream should then be taken
    /// as failed; the events before it in the same read are in `events` all the same.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), String> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(end);
            let terminator = tail[0];
            rest = &tail[1..];
            if terminator == b'\n' && self.after_cr && head.is_empty() && self.line.is_empty() {
                // The LF of a CRLF whose CR ended the previous line.
                self.after_cr = false;
                continue;
            }
            self.after_cr = terminator == b'\r';
            if self.held() + head.len() > MAX_MESSAGE_BYTES {
                return Err(too_long());
            }
            self.line.extend_from_slice(head);
            let line = std::mem::take(&mut self.line);
            self.take_line(&String::from_utf8_lossy(&line), events)?;
        }
        if !rest.is_empty() {
            self.after_cr = false;
            self.line.extend_from_slice(rest);
        }
        if self.held() > MAX_MESSAGE_BYTES {
            return Err(too_long());
        }
        Ok(())
    }

    /// Bytes of the message being read: its line so far, and an SSE event's earlier lines.
    fn held(&self) -> usize {
        self.line.len() + self.data.as_ref().map_or(0, String::len)
    }

    /// The events left when the body ends: a last line without its terminator, and an SSE event
    /// without its blank line. The specification discards such an event; a measuring client
    /// keeps it, because a server that closes right after its last event has still sent it.
    /// A message that cannot be read here was cut off by the end of the body.
    pub fn finish(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        let cut = |e: String| format!("truncated stream: the body ended inside a message ({e})");
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&String::from_utf8_lossy(&line), events)
                .map_err(cut)?;
        }
        if let Some(data) = self.data.take() {
            events.extend(self.protocol.decode(&data).map_err(cut)?);
        }
        Ok(())
    }

    fn take_line(&mut self, line: &str, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self.protocol.framing() {
            Framing::Ndjson => {
                if !line.trim().is_empty() {
                    events.extend(self.protocol.decode(line)?);
                }
            }
            Framing::Sse => {
                if line.is_empty() {
                    if let Some(data) = self.data.take() {
                        events.extend(self.protocol.decode(&data)?);
                    }
                    return Ok(());
                }
                if line.starts_with(':') {
                    return Ok(());
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                // `event`, `id` and `retry` do not matter to a completion stream.
                if field == "data" {
                    match &mut self.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => self.data = Some(value.to_owned()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes each message back as content, to see the framing alone.
    struct Echo(Framing);

    impl Protocol for Echo {
        fn request(
            &self,
            client: &reqwest::Client,
            base: &str,
            _: &super::super::GenerationRequest,
        ) -> reqwest::RequestBuilder {
            client.get(base)
        }
        fn framing(&self) -> Framing {
            self.0
        }
        fn decode(&self, message: &str) -> Result<Vec<StreamEvent>, String> {
            Ok(vec![StreamEvent::Content(message.to_owned())])
        }
    }

    fn messages(framing: Framing, reads: &[&[u8]]) -> Vec<String> {
        let echo = Echo(framing);
        let mut decoder = Decoder::new(&echo);
        let mut out = Vec::new();
        for read in reads {
            decoder.feed(read, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        out.into_iter()
            .map(|e| match e {
                StreamEvent::Content(t) => t,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn sse_joins_data_lines_and_skips_comments_as_the_specification_says() {
        // The specification's own examples: two data lines make one "YHOO\n+2\n10"-style
        // event; a comment line and `id`/`event` fields dispatch nothing of their own.
        let stream = b": ping\n\ndata: first\ndata:second\n\nevent: x\nid: 7\ndata\n\ndata: last";
        assert_eq!(
            messages(Framing::Sse, &[stream]),
            vec!["first\nsecond", "", "last"]
        );
    }

    #[test]
    fn sse_line_endings_cr_lf_and_crlf_split_across_reads() {
        assert_eq!(
            messages(
                Framing::Sse,
                &[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n\n"]
            ),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn ndjson_lines_with_blank_and_crlf() {
        assert_eq!(
            messages(
                Framing::Ndjson,
                &[b"{\"a\":1}\r\n\n{\"b\"", b":2}\n{\"c\":3}"]
            ),
            vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
        );
    }

    // A message longer than the bound is refused whether it comes in one read or in many,
    // as one line or as an SSE event's many data lines; one just under it is taken.
    #[test]
    fn a_message_over_the_bound_is_refused_however_it_arrives() {
        let echo = Echo(Framing::Sse);
        let big = vec![b'x'; MAX_MESSAGE_BYTES + 1];
        let mut out = Vec::new();
        assert!(Decoder::new(&echo).feed(&big, &mut out).is_err());
        let whole = [b"data: ".as_slice(), &big, b"\n\n"].concat();
        assert!(Decoder::new(&echo).feed(&whole, &mut out).is_err());
        let mut d = Decoder::new(&echo);
        let refused = big.chunks(64 * 1024).any(|c| d.feed(c, &mut out).is_err());
        assert!(refused);
        let mut d = Decoder::new(&echo);
        let line = [b"data: ".as_slice(), &vec![b'y'; 1024 * 1024], b"\n"].concat();
        let refused = (0..5).any(|_| d.feed(&line, &mut out).is_err());
        assert!(refused, "five 1 MiB data lines of one event are over 4 MiB");
        assert!(out.is_empty());
        let under = [
            b"data: ".as_slice(),
            &vec![b'z'; MAX_MESSAGE_BYTES - 16],
            b"\n\n",
        ]
        .concat();
        assert_eq!(messages(Framing::Sse, &[&under]).len(), 1);
    }
}
