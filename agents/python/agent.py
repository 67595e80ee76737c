#!/usr/bin/env python3
"""Reference agent (Python, standard library only) for banterhearts' agent-program protocol.

Runs a three-step workflow against llama-server's native /completion endpoint: ingest a set of
notes, analyse them, write a short report from both answers. Each request streams, is timed here
(sent -> first text, sent -> last chunk) and reported as one JSON line on stdout
(docs/agent-protocol.md). Logs go to stderr. examples/reference_agent.rs does the same in Rust.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

NOTES = (
    "Two agents shared one inference server. Time to first token doubled under load. "
    "Decode throughput per agent fell by about half. A second server restored it. "
    "Memory use stayed flat; CPU was saturated on both cores."
)

STEPS = [
    ("ingest", "Summarise these notes in three sentences:\n{notes}\nSummary:"),
    ("analyse", "List three risks that follow from this summary:\n{ingest}\nRisks:"),
    ("report", "Write a short report with the sections Summary and Risks.\nSummary: {ingest}\nRisks: {analyse}\nReport:"),
]


def complete(endpoint, prompt, max_tokens, seed):
    """One streamed completion; returns (text, ttft_ms, e2e_ms, output_tokens, prompt_tokens).

    A connection per request: llama-server may close a streamed response's connection.
    """
    body = json.dumps({
        "prompt": prompt, "n_predict": max_tokens, "stream": True, "ignore_eos": True,
        "seed": seed, "temperature": 0.7, "cache_prompt": False,
    })
    sent = time.perf_counter()
    conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=120)
    conn.request("POST", "/completion", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
    text, first, timings = [], None, {}
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: "):
            continue
        event = json.loads(line[len("data: "):])
        if event.get("content"):
            if first is None:
                first = time.perf_counter()
            text.append(event["content"])
        if event.get("stop"):
            timings = event.get("timings", {})
            break
    done = time.perf_counter()
    conn.close()
    if first is None:
        raise RuntimeError("the server sent no text")
    ms = lambda t: (t - sent) * 1000.0
    prompt_tokens = timings.get("prompt_n", 0) + timings.get("cache_n", 0)
    return "".join(text), ms(first), ms(done), timings.get("predicted_n", 0), prompt_tokens


def main():
    endpoint = urllib.parse.urlparse(os.environ["BANTERHEARTS_ENDPOINT"])
    max_tokens = int(os.environ.get("BANTERHEARTS_MAX_TOKENS", "64"))
    seed = int(os.environ.get("BANTERHEARTS_SEED", "42"))
    print(json.dumps({"event": "ready"}), flush=True)
    answers = {"notes": NOTES}
    for step, template in STEPS:
        prompt = template.format(**answers)
        text, ttft, e2e, output, prompt_n = complete(endpoint, prompt, max_tokens, seed)
        answers[step] = text.strip()
        print(json.dumps({"event": "request", "step": step, "ttft_ms": round(ttft, 3), "e2e_ms": round(e2e, 3),
                          "output_tokens": output, "prompt_tokens": prompt_n}), flush=True)
    print(f"report: {answers['report'][:200]}", file=sys.stderr)


if __name__ == "__main__":
    main()
