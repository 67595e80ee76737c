//! Properties of every stream decoder (llama.cpp `/completion`, OpenAI-compatible chat, Ollama
//! generate and chat): a valid stream gives the same events however the network splits it
//! into reads; random bytes and truncated streams never panic and always give a degraded run
//! with a reason. Streams are built in each server's format, with the framing variations the
//! SSE specification allows (CR, LF or CRLF line ends, comment lines, an event's JSON spread
//! over several `data:` lines).

use std::time::{Duration, Instant};

use banterhearts::backend::{
    Decoder, LlamaCpp, Ollama, OllamaEndpoint, OpenAi, Protocol, StreamEvent,
};
use banterhearts::record::RunStatus;
use banterhearts::runner::measure::measure_body;
use banterhearts::spec::params::{Dialect, OpenAiServer};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
enum Kind {
    LlamaCompletion,
    OpenAiChat,
    OllamaGenerate,
    OllamaChat,
}

const KINDS: [Kind; 4] = [
    Kind::LlamaCompletion,
    Kind::OpenAiChat,
    Kind::OllamaGenerate,
    Kind::OllamaChat,
];

fn protocol(kind: Kind) -> Box<dyn Protocol> {
    match kind {
        Kind::LlamaCompletion => Box::new(LlamaCpp),
        Kind::OpenAiChat => Box::new(OpenAi {
            dialect: Dialect::Chat(OpenAiServer::Vllm),
        }),
        Kind::OllamaGenerate => Box::new(Ollama {
            endpoint: OllamaEndpoint::Generate,
        }),
        Kind::OllamaChat => Box::new(Ollama {
            endpoint: OllamaEndpoint::Chat,
        }),
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Answer(String),
    Reasoning(String),
}

/// The messages (SSE event data or NDJSON lines) of a complete response, and the index of
/// the first one that completes it (a finish reason or the end marker).
fn messages(kind: Kind, pieces: &[Piece]) -> (Vec<Value>, usize) {
    let n = pieces.len() as u64;
    let mut out = Vec::new();
    match kind {
        Kind::LlamaCompletion => {
            for p in pieces {
                let (Piece::Answer(t) | Piece::Reasoning(t)) = p;
                out.push(json!({"index": 0, "content": t, "stop": false}));
            }
            out.push(json!({"content": "", "stop": true, "stop_type": "limit", "timings": {"prompt_n": 3, "prompt_ms": 4.0, "cache_n": 0, "predicted_n": n, "predicted_ms": 9.0}}));
            let last = out.len() - 1;
            (out, last)
        }
        Kind::OpenAiChat => {
            out.push(json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}));
            for p in pieces {
                let delta = match p {
                    Piece::Answer(t) => json!({"content": t}),
                    Piece::Reasoning(t) => json!({"reasoning_content": t}),
                };
                out.push(json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}], "error": null}));
            }
            out.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}));
            let finish = out.len() - 1;
            out.push(json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}));
            out.push(json!("[DONE]"));
            (out, finish)
        }
        Kind::OllamaGenerate | Kind::OllamaChat => {
            let chat = matches!(kind, Kind::OllamaChat);
            for p in pieces {
                let (text, thinking) = match p {
                    Piece::Answer(t) => (t.as_str(), None),
                    Piece::Reasoning(t) => ("", Some(t.as_str())),
                };
                let mut v = if chat {
                    json!({"model": "m", "message": {"role": "assistant", "content": text}, "done": false})
                } else {
                    json!({"model": "m", "response": text, "done": false})
                };
                if let Some(t) = thinking {
                    if chat {
                        v["message"]["thinking"] = json!(t);
                    } else {
                        v["thinking"] = json!(t);
                    }
                }
                out.push(v);
            }
            let mut last = json!({"model": "m", "done": true, "done_reason": "length", "prompt_eval_count": 3, "prompt_eval_duration": 4000000, "eval_count": n, "eval_duration": 9000000});
            if chat {
                last["message"] = json!({"role": "assistant", "content": ""});
            } else {
                last["response"] = json!("");
            }
            out.push(last);
            let last = out.len() - 1;
            (out, last)
        }
    }
}

/// How a stream is written out: line ends, pings, JSON spread over several data lines.
#[derive(Debug, Clone)]
struct Style {
    eol: &'static str,
    ping_before: Vec<bool>,
    pretty: bool,
}

/// The bytes of the stream, and where the completing message's payload ends.
fn render(kind: Kind, messages: &[Value], completing: usize, style: &Style) -> (Vec<u8>, usize) {
    let mut out = String::new();
    let mut completing_end = 0;
    for (i, m) in messages.iter().enumerate() {
        let payload = match m {
            Value::String(s) => s.clone(),
            v if style.pretty => serde_json::to_string_pretty(v).unwrap(),
            v => v.to_string(),
        };
        match kind {
            Kind::OllamaGenerate | Kind::OllamaChat => {
                // NDJSON: one compact line each; blank lines in between are allowed.
                if style.ping_before.get(i).copied().unwrap_or(false) {
                    out.push_str(style.eol);
                }
                out.push_str(&m.to_string());
                completing_end = if i == completing {
                    out.len()
                } else {
                    completing_end
                };
                out.push_str(if style.eol == "\r" { "\n" } else { style.eol });
            }
            _ => {
                if style.ping_before.get(i).copied().unwrap_or(false) {
                    out.push(':');
                    out.push_str(style.eol);
                }
                let lines: Vec<&str> = payload.split('\n').collect();
                for (j, line) in lines.iter().enumerate() {
                    out.push_str("data: ");
                    out.push_str(line);
                    if i == completing && j == lines.len() - 1 {
                        completing_end = out.len();
                    }
                    out.push_str(style.eol);
                }
                out.push_str(style.eol);
            }
        }
    }
    (out.into_bytes(), completing_end)
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        proptest::collection::vec(any::<bool>(), 0..12),
        any::<bool>(),
    )
        .prop_map(|(eol, ping_before, pretty)| Style {
            eol,
            ping_before,
            pretty,
        })
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    let text = any::<String>().prop_filter("servers send no empty deltas", |s| !s.is_empty());
    proptest::collection::vec(
        prop_oneof![
            text.clone().prop_map(Piece::Answer),
            text.prop_map(Piece::Reasoning)
        ],
        1..8,
    )
}

fn kind() -> impl Strategy<Value = Kind> {
    (0..KINDS.len()).prop_map(|i| KINDS[i])
}

/// Events of a body fed in reads cut at `cuts`.
fn events(p: &dyn Protocol, bytes: &[u8], cuts: &[usize]) -> Result<Vec<StreamEvent>, String> {
    let mut decoder = Decoder::new(p);
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        decoder.feed(&bytes[from..cut], &mut out)?;
        from = cut;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

fn sorted_cuts(raw: Vec<usize>, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.into_iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Reads 1 ms apart after a send at `sent`.
fn timed(bytes: &[u8], cuts: &[usize]) -> (Instant, Vec<(Instant, Vec<u8>)>) {
    let sent = Instant::now();
    let mut reads = Vec::new();
    let mut from = 0;
    for (i, &cut) in cuts.iter().chain(std::iter::once(&bytes.len())).enumerate() {
        reads.push((
            sent + Duration::from_millis(i as u64 + 1),
            bytes[from..cut].to_vec(),
        ));
        from = cut;
    }
    (sent, reads)
}

fn measure(p: &dyn Protocol, bytes: &[u8], cuts: &[usize]) -> banterhearts::record::AgentRun {
    let (sent, reads) = timed(bytes, cuts);
    let reads: Vec<(Instant, &[u8])> = reads.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    measure_body(p, sent, &reads)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_a_valid_stream_gives_the_same_events(
        kind in kind(), pieces in pieces(), style in style(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let p = protocol(kind);
        let (msgs, completing) = messages(kind, &pieces);
        let (bytes, _) = render(kind, &msgs, completing, &style);
        let whole = events(p.as_ref(), &bytes, &[]).unwrap();
        let cuts = sorted_cuts(raw_cuts, bytes.len());
        prop_assert_eq!(events(p.as_ref(), &bytes, &cuts).unwrap(), whole.clone());
        // The events are the stream's: every piece, in order, then completion.
        let texts: Vec<String> = whole.iter().filter_map(|e| match e {
            StreamEvent::Content(t) | StreamEvent::Reasoning(t) => Some(t.clone()),
            _ => None,
        }).collect();
        let want: Vec<String> = pieces.iter().map(|p| match p { Piece::Answer(t) | Piece::Reasoning(t) => t.clone() }).collect();
        prop_assert_eq!(texts, want);
        let run = measure(p.as_ref(), &bytes, &cuts);
        prop_assert_eq!(run.status, RunStatus::Ok, "{:?}", run.reason);
        prop_assert_eq!(run.chunks as usize, pieces.len());
        prop_assert_eq!(run.output_tokens, Some(pieces.len() as u64));
    }

    #[test]
    fn random_bytes_never_panic_and_give_a_degraded_run_with_a_reason(
        kind in kind(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let p = protocol(kind);
        let cuts = sorted_cuts(raw_cuts, bytes.len());
        let run = measure(p.as_ref(), &bytes, &cuts);
        prop_assert_eq!(run.status, RunStatus::Degraded);
        prop_assert!(run.reason.as_deref().is_some_and(|r| !r.is_empty()));
    }

    #[test]
    fn a_stream_cut_before_it_completes_is_degraded_with_a_reason(
        kind in kind(), pieces in pieces(), style in style(),
        at in any::<usize>(),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let p = protocol(kind);
        let (msgs, completing) = messages(kind, &pieces);
        let (bytes, completing_end) = render(kind, &msgs, completing, &style);
        let cut = &bytes[..at % completing_end];
        let cuts = sorted_cuts(raw_cuts, cut.len());
        let run = measure(p.as_ref(), cut, &cuts);
        prop_assert_eq!(run.status, RunStatus::Degraded, "cut at {} of {}", cut.len(), bytes.len());
        prop_assert!(run.reason.as_deref().is_some_and(|r| !r.is_empty()));
    }

    #[test]
    fn garbage_after_a_valid_prefix_never_panics(
        kind in kind(), pieces in pieces(), style in style(),
        garbage in proptest::collection::vec(any::<u8>(), 1..128),
    ) {
        let p = protocol(kind);
        let (msgs, completing) = messages(kind, &pieces);
        let (mut bytes, completing_end) = render(kind, &msgs, completing, &style);
        bytes.truncate(completing_end / 2);
        bytes.extend_from_slice(&garbage);
        let run = measure(p.as_ref(), &bytes, &[bytes.len() / 3]);
        // Whatever it says, it says it without panicking, and a failure has its reason.
        if run.status == RunStatus::Degraded {
            prop_assert!(run.reason.is_some());
        }
    }
}
