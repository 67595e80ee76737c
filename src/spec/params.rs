//! Request parameters, and what each server calls them. A spec names a parameter once (the
//! matrix axis `repeat_penalty`, the workload's `ignore_eos`); each server dialect either has
//! a field for it, under its own name, or does not, and then the spec is refused at validation
//! instead of the server silently ignoring the value (vLLM drops an unknown `repeat_penalty`
//! without a word, Ollama has no `ignore_eos`). Sources: llama.cpp tools/server
//! (params_from_json_cmpl), vLLM entrypoints/openai/protocol.py (ChatCompletionRequest), the
//! OpenAI chat completions reference, Ollama api/types.go (Options, GenerateRequest).

use serde::{Deserialize, Serialize};

use super::{Backend, BackendKind};

/// Which server an `openai` backend talks to, for the parameters only some servers accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OpenAiServer {
    /// vLLM's OpenAI-compatible server (`vllm serve`).
    Vllm,
    /// llama.cpp's llama-server (`/v1/chat/completions`); implied by `launch`.
    LlamaServer,
    /// The OpenAI API itself.
    Openai,
    /// Any other server: only the parameters of the OpenAI API are sent.
    Generic,
}

/// The request format a backend's requests take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// llama-server's native `/completion`.
    LlamaCompletion,
    /// `/v1/chat/completions` on one of the OpenAI-compatible servers.
    Chat(OpenAiServer),
    /// Ollama's `/api/generate` and `/api/chat`.
    Ollama,
}

impl Dialect {
    pub fn of(backend: &Backend) -> Dialect {
        match backend.kind {
            BackendKind::LlamaCpp => Dialect::LlamaCompletion,
            BackendKind::Ollama => Dialect::Ollama,
            BackendKind::Openai => Dialect::Chat(match (backend.server, &backend.launch) {
                (Some(server), _) => server,
                (None, Some(_)) => OpenAiServer::LlamaServer,
                (None, None) => OpenAiServer::Generic,
            }),
        }
    }

    /// How the dialect is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::LlamaCompletion => "llama.cpp /completion",
            Dialect::Chat(OpenAiServer::Vllm) => "vLLM",
            Dialect::Chat(OpenAiServer::LlamaServer) => "llama-server /v1/chat/completions",
            Dialect::Chat(OpenAiServer::Openai) => "the OpenAI API",
            Dialect::Chat(OpenAiServer::Generic) => "a generic OpenAI-compatible server",
            Dialect::Ollama => "Ollama",
        }
    }
}

/// Where a parameter goes in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A top-level field of the JSON body, by this name.
    Top(&'static str),
    /// A field of Ollama's `options` object, by this name.
    OllamaOption(&'static str),
}

/// The parameters a spec can set per request, as the matrix axes or workload fields name them.
pub const REQUEST_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "num_ctx",
    "num_gpu",
    "keep_alive",
    "think",
    "reasoning_effort",
    "ignore_eos",
    "cache_prompt",
    "min_tokens",
];

/// Where `param` goes for `dialect`, or why it cannot be sent (the help for the error).
pub fn field(dialect: Dialect, param: &str) -> Result<Field, &'static str> {
    use Field::{OllamaOption, Top};
    use OpenAiServer::{Generic, LlamaServer, Openai, Vllm};
    let llama = matches!(
        dialect,
        Dialect::LlamaCompletion | Dialect::Chat(LlamaServer)
    );
    let ollama = dialect == Dialect::Ollama;
    // Parameters of the OpenAI API that every server here takes under the same name.
    const SHARED: &[&str] = &[
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    ];
    if let Some(name) = SHARED.iter().find(|p| **p == param) {
        return Ok(if ollama {
            OllamaOption(name)
        } else {
            Top(name)
        });
    }
    let sampling_extension = "the OpenAI API has no such field; if the server takes it, say which server it is (`server: vllm` or `server: llama-server` on the backend)";
    match param {
        "top_k" | "min_p" => match dialect {
            Dialect::Ollama => Ok(OllamaOption(if param == "top_k" {
                "top_k"
            } else {
                "min_p"
            })),
            Dialect::Chat(Openai | Generic) => Err(sampling_extension),
            _ => Ok(Top(if param == "top_k" { "top_k" } else { "min_p" })),
        },
        "repeat_penalty" => match dialect {
            Dialect::Ollama => Ok(OllamaOption("repeat_penalty")),
            Dialect::Chat(Vllm) => Ok(Top("repetition_penalty")),
            _ if llama => Ok(Top("repeat_penalty")),
            _ => Err(sampling_extension),
        },
        "ignore_eos" => match dialect {
            Dialect::Ollama => Err(
                "Ollama has no way to ignore the end-of-sequence token; remove `ignore_eos` or use a llama-cpp or openai backend",
            ),
            Dialect::Chat(Openai | Generic) => Err(sampling_extension),
            _ => Ok(Top("ignore_eos")),
        },
        "min_tokens" => match dialect {
            Dialect::Chat(Vllm) => Ok(Top("min_tokens")),
            _ => Err(
                "`min_tokens` is vLLM's; elsewhere `ignore_eos` (llama.cpp) makes a request generate exactly `max_tokens`",
            ),
        },
        "cache_prompt" => match dialect {
            _ if llama => Ok(Top("cache_prompt")),
            _ => Err(
                "`cache_prompt` is llama-server's switch; for a cold cache elsewhere use `cache: cold` in the workload, which starts every prompt with a unique nonce",
            ),
        },
        "num_ctx" | "num_gpu" => match dialect {
            Dialect::Ollama => Ok(OllamaOption(if param == "num_ctx" {
                "num_ctx"
            } else {
                "num_gpu"
            })),
            _ => Err(
                "only Ollama sets it per request; llama.cpp and OpenAI servers set it at start-up: put it in the backend's launch args (e.g. `-c 2048` for the context size, `-ngl 99` for GPU layers)",
            ),
        },
        "keep_alive" => match dialect {
            Dialect::Ollama => Ok(Top("keep_alive")),
            _ => Err("`keep_alive` is an Ollama field; other servers keep the model loaded"),
        },
        "think" => match dialect {
            Dialect::Ollama => Ok(Top("think")),
            _ => Err(
                "`think` is Ollama's switch; on OpenAI-compatible servers use `reasoning_effort`, or the server's own start-up flag (llama-server `--reasoning-budget 0`)",
            ),
        },
        "reasoning_effort" => match dialect {
            Dialect::Chat(Vllm | Openai | LlamaServer) => Ok(Top("reasoning_effort")),
            Dialect::Ollama => Err(
                "Ollama's native API has no `reasoning_effort`; use `think` (true, false, \"low\", \"medium\", \"high\" or \"max\"; strings need a model that takes levels, such as gpt-oss)",
            ),
            Dialect::LlamaCompletion => Err(
                "the raw /completion endpoint applies no chat template, so there is no reasoning to set; use kind `openai` for llama-server's chat endpoint",
            ),
            Dialect::Chat(Generic) => Err(sampling_extension),
        },
        _ => Err("not a request parameter"),
    }
}

/// The field that limits the number of generated tokens.
pub fn max_tokens_field(dialect: Dialect) -> Field {
    match dialect {
        Dialect::LlamaCompletion => Field::Top("n_predict"),
        // OpenAI's reasoning models refuse `max_tokens`; every OpenAI model takes this one.
        Dialect::Chat(OpenAiServer::Openai) => Field::Top("max_completion_tokens"),
        Dialect::Chat(_) => Field::Top("max_tokens"),
        Dialect::Ollama => Field::OllamaOption("num_predict"),
    }
}

/// Whether a value is one the parameter can take, where the servers restrict it; the error says
/// which values are allowed.
pub fn check_value(param: &str, value: &serde_json::Value) -> Result<(), &'static str> {
    match param {
        "think" => match value {
            serde_json::Value::Bool(_) => Ok(()),
            serde_json::Value::String(s)
                if ["low", "medium", "high", "max"].contains(&s.as_str()) =>
            {
                Ok(())
            }
            _ => Err("`think` is true, false, \"low\", \"medium\", \"high\" or \"max\""),
        },
        "reasoning_effort" => match value.as_str() {
            Some("none" | "minimal" | "low" | "medium" | "high") => Ok(()),
            _ => {
                Err("`reasoning_effort` is \"none\", \"minimal\", \"low\", \"medium\" or \"high\"")
            }
        },
        "ignore_eos" => value
            .is_boolean()
            .then_some(())
            .ok_or("`ignore_eos` is true or false"),
        "min_tokens" => value
            .as_u64()
            .map(|_| ())
            .ok_or("`min_tokens` is a whole number of tokens"),
        "cache_prompt" => value
            .is_boolean()
            .then_some(())
            .ok_or("`cache_prompt` is true or false"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_its_own_name_or_a_refusal() {
        let vllm = Dialect::Chat(OpenAiServer::Vllm);
        assert_eq!(
            field(vllm, "repeat_penalty"),
            Ok(Field::Top("repetition_penalty"))
        );
        assert_eq!(
            field(Dialect::LlamaCompletion, "repeat_penalty"),
            Ok(Field::Top("repeat_penalty"))
        );
        assert_eq!(
            field(Dialect::Ollama, "repeat_penalty"),
            Ok(Field::OllamaOption("repeat_penalty"))
        );
        assert!(field(Dialect::Chat(OpenAiServer::Openai), "repeat_penalty").is_err());
        assert!(field(Dialect::Ollama, "ignore_eos").is_err());
        assert_eq!(
            field(Dialect::Chat(OpenAiServer::Vllm), "min_tokens"),
            Ok(Field::Top("min_tokens"))
        );
        assert!(field(Dialect::LlamaCompletion, "min_tokens").is_err());
        assert_eq!(field(Dialect::Ollama, "think"), Ok(Field::Top("think")));
        assert!(field(vllm, "think").is_err());
        assert_eq!(
            field(vllm, "reasoning_effort"),
            Ok(Field::Top("reasoning_effort"))
        );
        assert_eq!(
            max_tokens_field(Dialect::Chat(OpenAiServer::Openai)),
            Field::Top("max_completion_tokens")
        );
        assert_eq!(
            max_tokens_field(Dialect::Ollama),
            Field::OllamaOption("num_predict")
        );
        for p in REQUEST_PARAMS {
            for d in [Dialect::LlamaCompletion, vllm, Dialect::Ollama] {
                // Every listed parameter is known to the table: it maps or says why not.
                assert_ne!(field(d, p), Err("not a request parameter"), "{p}");
            }
        }
    }
}
