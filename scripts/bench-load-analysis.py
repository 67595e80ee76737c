#!/usr/bin/env python3
"""The analysis half of scripts/bench-load: reads what one level left in its folder (the pacer's
truth log, the client's own per-request output, /usr/bin/time's CPU) and judges every tool by
the same yardstick, the pacer's log. Standard library only.

    bench-load-analysis.py level DIR          one level's figures, as JSON
    bench-load-analysis.py sustains DIR       exit 0 if the level held its rate (the ramp's test)
    bench-load-analysis.py table WORK         the markdown for docs/benchmarks.md

Definitions (the table's header repeats them):
- Pairing: a request the client reports is paired with the pacer's log line of the same
  request: by its X-Request-ID header (AIPerf sends one and exports it), by the hash of its
  prompt (GuideLLM's prompts are all different and its JSON keeps them), or, for a client that
  sends one prompt throughout (ours), by order: its requests sorted by send time against the
  arrivals from its first send on, when the counts agree (every request reached the pacer and
  finished), else each to the arrival nearest its send time plus the median delay, one to one,
  within 1 ms. The largest |arrival - send| among the pairs is reported. Time alone does not do
  for the peers: GuideLLM's requests reach the pacer up to tens of milliseconds after the send
  time it records, so nearest-arrival pairing mismatches them.
- Pacer-seen rate: (n - 1) / (last - first) over the paired arrivals of the measured period.
- Send-time error, constant arrivals, the same for every tool: request i of the tool's sequence
  (its place in the tool's own order: our index, GuideLLM's scheduled slot, AIPerf's credit
  order) arrives at a_i; e_i = a_i - (t0 + i / R), t0 = median over i of (a_i - i / R); p50 and
  p99 of |e_i|.
- TTFT error: the client's TTFT for a request minus the pacer's true one for its paired
  arrival (request arrival to first token sent, from the truth log).
- Client CPU per 1,000 requests: the slope between the level run for D and for 2 D seconds,
  (CPU(2D) - CPU(D)) / (requests(2D) - requests(D)), CPU = user + sys of the whole tool with
  its children (/usr/bin/time), requests as the pacer counted them, warm-up included in both:
  start-up and warm-up cancel.
"""

import bisect
import json
import math
import os
import sys

TOOLS = {"ours": "banterhearts", "guidellm": "GuideLLM 0.8.1", "aiperf": "AIPerf 0.13.0"}
PAIR_TOLERANCE_NS = 1_000_000
MIN_EXTRA = 500


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100
    f = int(k)
    return xs[f] + (xs[min(f + 1, len(xs) - 1)] - xs[f]) * (k - f)


def median(xs):
    return pct(xs, 50)


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cpu_seconds(d):
    """user + sys from /usr/bin/time -f '%U %S' (its last line; a failed command adds one)."""
    try:
        lines = open(os.path.join(d, "time.txt")).read().split("\n")
        user, system = [l for l in lines if l.strip()][-1].split()[:2]
        return float(user) + float(system)
    except (OSError, ValueError, IndexError):
        return None


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def prompt_text(body):
    """The prompt's text as the pacer hashes it: the last message's content, text parts joined."""
    content = (body.get("messages") or [{}])[-1].get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else body.get("prompt")


def client_requests(d, tool):
    """The measured period's requests as the client reports them: send time (epoch ns), the
    tool's own scheduled time where it exports one, its place in the tool's sequence, what
    identifies it in the pacer's log, TTFT (ms), whether it finished well or was cut off by
    the tool at the end."""
    out = []
    if tool == "ours":
        lines = read_jsonl(os.path.join(d, "records.jsonl"))
        if not lines:
            return out
        origin = lines[0]["origin_unix_ns"]
        first = lines[1]["index"] if len(lines) > 1 else 0
        for r in lines[1:]:
            out.append({
                "key": None,
                "slot": r["index"] - first,
                "send": origin + r["sent_ms"] * 1e6,
                "sched": origin + r["scheduled_ms"] * 1e6,
                "ttft": r.get("ttft_ms"),
                "ok": r["status"] == "ok",
                "lag": r["dispatch_lag_ms"],
            })
    elif tool == "guidellm":
        path = os.path.join(d, "out.json")
        if not os.path.exists(path):
            return out
        b = json.load(open(path))["benchmarks"][0]
        sm = b["scheduler_metrics"]
        start, end = sm["measure_start_time"], sm["measure_end_time"]
        rate = float(json.load(open(os.path.join(d, "meta.json")))["rate"])
        for group in ("successful", "errored", "incomplete"):
            for r in b["requests"].get(group) or []:
                t = r["info"]["timings"]
                target = t.get("targeted_start")
                if t.get("request_start") is None or target is None or not start <= target < end:
                    continue
                try:
                    key = fnv1a(prompt_text(json.loads(r["request_args"])["body"]))
                except (TypeError, ValueError, KeyError, IndexError, AttributeError):
                    key = None
                out.append({
                    "key": ("prompt_fnv1a", key) if key else None,
                    "target": target,
                    "cut": group == "incomplete",
                    "send": t["request_start"] * 1e9,
                    "sched": target * 1e9,
                    "ttft": r.get("time_to_first_token_ms"),
                    "ok": group == "successful",
                    "lag": (t["request_start"] - target) * 1e3,
                })
        if out:
            first = min(r["target"] for r in out)
            for r in out:
                r["slot"] = round((r["target"] - first) * rate)
    elif tool == "aiperf":
        for r in read_jsonl(os.path.join(d, "art", "profile_export.jsonl")):
            m = r["metadata"]
            if m.get("benchmark_phase") != "profiling" or m.get("request_start_ns") is None:
                continue
            ttft = (r.get("metrics") or {}).get("time_to_first_token")
            out.append({
                "key": ("request_id", m["x_request_id"]) if m.get("x_request_id") else None,
                "issued": m.get("credit_issued_ns") or m["request_start_ns"],
                "send": m["request_start_ns"],
                "sched": None,
                "ttft": ttft["value"] if ttft and ttft.get("unit") == "ms" else None,
                "ok": not r.get("error") and not m.get("was_cancelled"),
                # Issue to send: AIPerf does not export the time a request was due.
                "lag": (m["request_start_ns"] - m["credit_issued_ns"]) / 1e6 if m.get("credit_issued_ns") else None,
            })
        out.sort(key=lambda r: r["issued"])
        for i, r in enumerate(out):
            r["slot"] = i
    out.sort(key=lambda r: r["send"])
    return out


def pair(requests, truth):
    """Pairs requests (sorted by send) with truth lines: by identity where the tool's records
    carry one, else by order or nearest arrival; see the module's docstring."""
    keyed = [r for r in requests if r["key"] is not None]
    if keyed:
        index = {}
        for t in truth:
            for field in ("request_id", "prompt_fnv1a"):
                if t.get(field) is not None:
                    index.setdefault((field, t[field]), t)
        pairs = [(r, index[r["key"]]) for r in keyed if r["key"] in index]
        pairs.sort(key=lambda p: p[1]["arrival_unix_ns"])
        return pairs
    arrivals = sorted((t["arrival_unix_ns"], i) for i, t in enumerate(truth))
    keys = [a for a, _ in arrivals]
    if not keys or not requests:
        return []
    # By order, when every request of the period has its arrival (the warm-up period has
    # drained before the measured one starts, so its arrivals all come before).
    window = [i for a, i in arrivals if a >= requests[0]["send"] - PAIR_TOLERANCE_NS]
    if len(window) == len(requests):
        return [(r, truth[i]) for r, i in zip(requests, window)]

    def nearest(x):
        j = bisect.bisect_left(keys, x)
        best = min((k for k in (j - 1, j) if 0 <= k < len(keys)), key=lambda k: abs(keys[k] - x))
        return best

    diffs = [keys[nearest(r["send"])] - r["send"] for r in requests]
    delay = median(diffs)
    taken = {}
    for n, r in enumerate(requests):
        k = nearest(r["send"] + delay)
        off = abs(keys[k] - (r["send"] + delay))
        if off > PAIR_TOLERANCE_NS:
            continue
        if k not in taken or off < taken[k][1]:
            taken[k] = (n, off)
    pairs = [(requests[n], truth[arrivals[k][1]]) for k, (n, _) in taken.items()]
    pairs.sort(key=lambda p: p[1]["arrival_unix_ns"])
    return pairs


def level(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    tool, arrival, rate = meta["tool"], meta["arrival"], float(meta["rate"])
    truth = read_jsonl(os.path.join(d, "truth.jsonl"))
    requests = client_requests(d, tool)
    pairs = pair(requests, truth)
    arrivals = [t["arrival_unix_ns"] for _, t in pairs]
    fig = dict(meta)
    fig["dir"] = d
    fig.update({
        "rc": int(open(os.path.join(d, "rc")).read().strip() or 1) if os.path.exists(os.path.join(d, "rc")) else None,
        "cpu_s": cpu_seconds(d),
        "truth_lines": len(truth),
        "reported": len(requests),
        "paired": len(pairs),
        "failed": sum(not r["ok"] and not r.get("cut") for r in requests),
        "cut": sum(bool(r.get("cut")) for r in requests),
        "pair_offset_max_ms": max((abs(t["arrival_unix_ns"] - r["send"]) / 1e6 for r, t in pairs), default=None),
    })
    # The schedule's own rate: for constant arrivals the nominal one, exactly; for Poisson, over
    # the scheduled times where the tool exports them (ours, GuideLLM: the requests it started,
    # so a tool that drops some looks as if it had drawn fewer), else the nominal rate (AIPerf;
    # a Poisson draw of n requests is off its nominal rate by about 1/sqrt(n) by sampling alone).
    sched = sorted(r["sched"] for r in requests if r["sched"] is not None)
    if arrival == "poisson" and len(sched) > 1 and sched[-1] > sched[0]:
        fig["own_rate"], fig["own_rate_from"] = (len(sched) - 1) / ((sched[-1] - sched[0]) / 1e9), "schedule"
    else:
        fig["own_rate"], fig["own_rate_from"] = rate, "nominal"
    if len(arrivals) > 1 and arrivals[-1] > arrivals[0]:
        fig["seen_rate"] = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)
        fig["rate_error"] = fig["seen_rate"] / fig["own_rate"] - 1
    else:
        fig["seen_rate"] = fig["rate_error"] = None
    fig["send_p50_ms"] = fig["send_p99_ms"] = None
    if arrival == "constant" and arrivals:
        offsets = [t["arrival_unix_ns"] - r["slot"] * 1e9 / rate for r, t in pairs]
        t0 = median(offsets)
        err = [abs(o - t0) / 1e6 for o in offsets]
        fig["send_p50_ms"], fig["send_p99_ms"] = pct(err, 50), pct(err, 99)
    # Against the tool's own schedule (any arrival pattern), where it exports one.
    own = [p[1]["arrival_unix_ns"] - p[0]["sched"] for p in pairs if p[0]["sched"] is not None]
    if own:
        m = median(own)
        err = [abs(o - m) / 1e6 for o in own]
        fig["send_own_p50_ms"], fig["send_own_p99_ms"] = pct(err, 50), pct(err, 99)
    else:
        fig["send_own_p50_ms"] = fig["send_own_p99_ms"] = None
    ttft = [r["ttft"] - t["prompt_ms"] for r, t in pairs if r["ok"] and r["ttft"] is not None]
    fig["ttft_err_p50_ms"], fig["ttft_err_p99_ms"] = pct(ttft, 50), pct(ttft, 99)
    fig["true_ttft_p50_ms"] = pct([t["prompt_ms"] for _, t in pairs], 50)
    lags = [r["lag"] for r in requests if r["lag"] is not None]
    fig["self_lag_p99_ms"] = pct(lags, 99)
    return fig


def sustains(fig):
    """The ramp's test: the rate held within 1%, send-time error p99 under 1 ms, at least 99% of
    the schedule's requests seen by the pacer, and the tool exited cleanly."""
    expected = fig["rate"] * fig["seconds"]
    return (
        fig["rc"] == 0
        and fig["rate_error"] is not None
        and abs(fig["rate_error"]) < 0.01
        and fig["send_p99_ms"] is not None
        and fig["send_p99_ms"] < 1.0
        and fig["paired"] + fig["cut"] >= 0.99 * expected
    )


def f(v, spec=".3f", none="-"):
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def ratio(a, b):
    return f"{a / b:.1f}x" if a is not None and b not in (None, 0) and b > 0 else "-"


def table(work):
    def figures(kind):
        out = {}
        root = os.path.join(work, kind)
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            d = os.path.join(root, name)
            if os.path.exists(os.path.join(d, "meta.json")):
                fig = level(d)
                out[(fig["tool"], fig["arrival"], int(fig["rate"]), fig["seconds"])] = fig
        return out

    main, ramp, retry = figures("main"), figures("ramp1"), figures("ramp2")
    tools = [t for t in TOOLS if any(k[0] == t for k in main)]
    unavailable = {}
    for t in TOOLS:
        p = os.path.join(work, f"{t}.unavailable")
        if os.path.exists(p):
            unavailable[t] = open(p).read().strip()
    seconds = sorted({k[3] for k in main})
    d1 = seconds[0] if seconds else None
    d2 = seconds[-1] if len(seconds) > 1 else None
    cells = sorted({(k[1], k[2]) for k in main}, key=lambda c: (c[0] != "constant", c[1]))

    def cpu_slope(tool, arrival, rate):
        a, b = main.get((tool, arrival, rate, d1)), main.get((tool, arrival, rate, d2))
        if not a or not b or a["cpu_s"] is None or b["cpu_s"] is None or b["rc"] != 0 or a["rc"] != 0:
            return None, None, None
        dn = b["truth_lines"] - a["truth_lines"]
        if dn <= 0:
            return None, None, None
        slope = (b["cpu_s"] - a["cpu_s"]) / dn
        return slope * 1000, a["cpu_s"] - slope * a["truth_lines"], dn

    # A peer's start-up CPU varies by a second or two from run to run, so the slope means
    # something only over enough extra requests: at 10 req/s, D = 10 s gives 100, and a 1.5 s
    # jitter is then 15 s per 1,000 requests. Ratios are taken over at least MIN_EXTRA.

    lines = []
    lines.append(f"| tool | arrival | rate (req/s) | requests reported (paired) | failed | schedule's own rate | "
                 f"pacer-seen rate | rate error | send-time error p50 / p99 (ms) | vs own schedule p99 (ms) | "
                 f"TTFT error p50 / p99 (ms) | client CPU s per 1,000 requests | start-up + warm-up CPU (s) |")
    lines.append("|" + "---|" * 13)
    summary = {}
    for arrival, rate in cells:
        for tool in tools:
            fig = main.get((tool, arrival, rate, d1))
            if not fig:
                continue
            slope, intercept, dn = cpu_slope(tool, arrival, rate)
            summary[(tool, arrival, rate)] = (fig, slope, dn)
            own = f(fig["own_rate"], ".2f") + (" (nominal)" if fig["own_rate_from"] == "nominal" and arrival == "poisson" else "")
            note = "" if fig["rc"] == 0 else f" (exit {fig['rc']})"
            cut = f" (+{fig['cut']} cut)" if fig["cut"] else ""
            lines.append(
                f"| {TOOLS[tool]}{note} | {arrival} | {rate} | {fig['reported']} ({fig['paired']}) | {fig['failed']}{cut} | {own} | "
                f"{f(fig['seen_rate'], '.2f')} | {f(fig['rate_error'] and fig['rate_error'] * 100, '+.2f')}% | "
                f"{f(fig['send_p50_ms'])} / {f(fig['send_p99_ms'])} | {f(fig['send_own_p99_ms'])} | "
                f"{f(fig['ttft_err_p50_ms'])} / {f(fig['ttft_err_p99_ms'])} | {f(slope, '.3f')}{f' (over {dn} requests)' if dn is not None and dn < MIN_EXTRA else ''} | {f(intercept and round(intercept, 1) + 0.0, '.1f')} |"
            )
    out = ["\n".join(lines)]
    offs = [fig["pair_offset_max_ms"] for (t, *_), fig in main.items() if t == "ours" and fig["pair_offset_max_ms"] is not None]
    if offs:
        out.append(f"(\"cut\": requests GuideLLM itself cancels in flight when its duration ends. banterhearts is paired "
                   f"by order; the largest |arrival - send| among its pairs, over all cells, is {max(offs):.3f} ms.)")

    peers = [t for t in tools if t != "ours"]
    if peers and "ours" in tools:
        head = "| arrival | rate (req/s) | " + " | ".join(
            f"{TOOLS[p]}: CPU / TTFT error p99 / send-time error p99" for p in peers) + " |"
        rows = [head, "|" + "---|" * (2 + len(peers))]
        worst = {p: {"cpu": None, "ttft": None} for p in peers}
        for arrival, rate in cells:
            ours, ours_cpu, ours_dn = summary.get(("ours", arrival, rate), (None, None, None))
            cols = []
            for p in peers:
                fig, cpu, dn = summary.get((p, arrival, rate), (None, None, None))
                if not fig or not ours:
                    cols.append("-")
                    continue
                clear = all(c is not None and c > 0 and n is not None and n >= MIN_EXTRA
                            for c, n in ((cpu, dn), (ours_cpu, ours_dn)))
                rc, rt = (cpu / ours_cpu if clear else None), (
                    fig["ttft_err_p99_ms"] / ours["ttft_err_p99_ms"]
                    if fig["ttft_err_p99_ms"] is not None and ours["ttft_err_p99_ms"] else None)
                for key, v in (("cpu", rc), ("ttft", rt)):
                    if v is not None:
                        worst[p][key] = v if worst[p][key] is None else min(worst[p][key], v)
                cols.append(f"{ratio(cpu, ours_cpu) if clear else 'n/a'} / {ratio(fig['ttft_err_p99_ms'], ours['ttft_err_p99_ms'])} / "
                            f"{ratio(fig['send_p99_ms'], ours['send_p99_ms'])}")
            rows.append(f"| {arrival} | {rate} | " + " | ".join(cols) + " |")
        out.append("Ratios, peer / banterhearts (above 1: banterhearts better). A CPU ratio is given only where both "
                   f"slopes span at least {MIN_EXTRA} extra requests (`n/a` at 10 req/s: 100 extra requests, against a "
                   "start-up that varies by a second or two between a peer's runs) and the peer's longer run did "
                   "send more requests:\n\n" + "\n".join(rows))

    # The ramp.
    best = {}
    rrows = ["| tool | " + "rate (req/s): pacer-seen rate error, send-time error p99 (ms); a failed level's second try after `/` |",
             "|---|---|"]

    def attempt(fig):
        ok = sustains(fig)
        why = "" if ok else " FAIL" + ("" if fig["rc"] == 0 else f" (exit {fig['rc']})") + (
            "" if fig["paired"] + fig["cut"] >= 0.99 * fig["rate"] * fig["seconds"] else f" ({fig['paired']} of {int(fig['rate'] * fig['seconds'])} seen)")
        return ok, f"{f(fig['rate_error'] and fig['rate_error'] * 100, '+.2f')}%, {f(fig['send_p99_ms'])}{why}"

    for tool in tools:
        levels = sorted((k[2], k, fig) for k, fig in ramp.items() if k[0] == tool)
        cells_ = []
        for rate, key, fig in levels:
            ok, text = attempt(fig)
            if not ok and key in retry:
                ok, again = attempt(retry[key])
                text += " / " + again
            if ok:
                best[tool] = max(best.get(tool, 0), rate)
            cells_.append(f"{rate}: {text}")
        if levels:
            rrows.append(f"| {TOOLS[tool]} | " + "; ".join(cells_) + " |")
    if len(rrows) > 2:
        sust = "; ".join(f"{TOOLS[t]} {best[t] if t in best else 'none'}" +
                         (f" req/s" if t in best else "") for t in tools)
        out.append("Highest sustained rate (constant arrivals; a level holds when the pacer-seen rate is within 1% of "
                   "the nominal one, the send-time error p99 is under 1 ms, at least 99% of its requests reached the "
                   "pacer and the tool exited cleanly; a level that fails is tried once more, for every tool, and the "
                   "ramp stops at the first level that fails twice):\n\n"
                   + "\n".join(rrows) + "\n\nHighest sustained: " + sust + ".")

    # Goals.
    if peers and "ours" in tools:
        g = ["Goals (at least 5x less client CPU per request and 5x smaller TTFT error p99 than either peer, in every "
             "cell above where the ratio is measurable; at least 3x the highest sustained rate):"]
        for p in peers:
            cpu_w, ttft_w = worst[p]["cpu"], worst[p]["ttft"]
            cpu_text = f"{cpu_w:.1f}x" if cpu_w is not None else "not measurable"
            ours_best, peer_best = best.get("ours"), best.get(p)
            sr = (ours_best / peer_best) if ours_best and peer_best else None
            lowest = min((k[2] for k in ramp if k[0] == p), default=None)
            g.append(
                f"- against {TOOLS[p]}: smallest CPU ratio {cpu_text} ({'met' if cpu_w and cpu_w >= 5 else 'not met'}); "
                f"smallest TTFT error p99 ratio {f(ttft_w, '.1f')}x ({'met' if ttft_w and ttft_w >= 5 else 'not met'}); "
                f"sustained rate " + (f"{sr:.1f}x" if sr else (
                    f"ours {ours_best} req/s, theirs below the lowest level ({lowest} req/s): over {ours_best / lowest:.0f}x"
                    if ours_best and lowest else "-"))
                + f" ({'met' if (sr and sr >= 3) or (ours_best and not peer_best) else 'not met'})."
            )
        out.append("\n".join(g))
    for t, why in unavailable.items():
        out.append(f"{TOOLS[t]} did not run: {why}")
    # A run that failed says why, in the tool's own words (the last line of its stderr).
    for tool in tools:
        bad = [fig for fig in list(main.values()) + list(ramp.values()) + list(retry.values())
               if fig["tool"] == tool and fig["rc"] != 0]
        if bad:
            fig = bad[0]
            d = fig["dir"]
            tail = [l for l in open(os.path.join(d, "stderr"), errors="replace").read().splitlines() if l.strip()][-1:] \
                if os.path.exists(os.path.join(d, "stderr")) else []
            out.append(f"{TOOLS[tool]}: {len(bad)} run(s) did not exit cleanly; the first, {fig['arrival']} {fig['rate']:.0f} req/s "
                       f"for {fig['seconds']} s, exited {fig['rc']} (124: killed by the time limit)"
                       + (f": `{tail[0].strip()[:300]}`" if tail else "") + ".")
    return "\n\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("level", "sustains", "table"):
        sys.exit(__doc__)
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "level":
        print(json.dumps(level(path)))
    elif cmd == "sustains":
        fig = level(path)
        print(f"  {fig['tool']} {fig['rate']:.0f} req/s: rate error {f(fig['rate_error'] and fig['rate_error'] * 100, '+.2f')}%, "
              f"send-time p99 {f(fig['send_p99_ms'])} ms, {fig['paired']} requests seen, exit {fig['rc']}", file=sys.stderr)
        sys.exit(0 if sustains(fig) else 1)
    else:
        sys.stdout.write(table(path))


if __name__ == "__main__":
    main()
