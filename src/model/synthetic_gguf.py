#!/usr/bin/env python3
"""Writes a synthetic llama-architecture GGUF: random weights of a chosen shape with a real
tokenizer's vocabulary, so that a serving benchmark can vary model size and nothing else (the
GGUF counterpart of vLLM's `--load-format dummy`). llama-server loads it like any model; its
output is garbage tokens, so generate with `ignore_eos`.

Needs gguf-py (PyPI `gguf`, 0.19.0) and numpy, nothing else: scripts/setup-gguf installs both.
It is standalone (banterhearts embeds it and runs it with that venv's python, also from stdin
as `python - ARGS`), so it never looks at its own path.

    synthetic_gguf.py --vocab-from SMOLLM2.gguf --out M.gguf --layers L --width D --heads H \
        --kv-heads K --ffn F [--quant q8_0] [--seed 0] [--ctx 2048] [--untied] [--dry-run]
    synthetic_gguf.py --vocab-from SMOLLM2.gguf --out M.gguf --params N [--quant ...] ...

On success it prints one JSON object on stdout (shape, exact parameter count, file size, quant,
seed, tokenizer source); on failure a message on stderr and exit status 1 (2 for bad usage).

The tokenizer: every `tokenizer.*` key of --vocab-from is copied byte for byte (the model, pre,
tokens, token types, merges, bos/eos/unknown/padding ids, add_bos/add_space_prefix, the chat
template), so prompts tokenize exactly as with that model. The vocabulary size V is its token
count (49152 for SmolLM2).

Parameters, counting every tensor in the file (what llama-server reports as meta.n_params):
    per layer  = 2*D (attn_norm, ffn_norm) + 2*D*D (attn_q, attn_output)
                 + 2*D*Dkv (attn_k, attn_v; Dkv = K * D/H) + 3*D*F (ffn_gate, ffn_up, ffn_down)
    total      = V*D (token_embd) + D (output_norm) + L * per layer  [+ V*D with --untied]
The output projection is tied to the embeddings by default (no `output.weight`; llama.cpp then
uses token_embd for the logits), as in SmolLM2 and the small Llama 3.2 models: with a 49152-token
vocabulary a separate output matrix would double the embedding share of a small model.
--untied writes a separate random `output.weight` and counts it.

The shape for --params N (head size 64 throughout):
    width D    = 576 * sqrt(N / 135e6) rounded to a multiple of 64 (of 256 from 2048 up, so
                 that big models get a head count divisible by 4), at least 64, then lowered by
                 64 while the embeddings plus one layer would exceed N. This reproduces
                 SmolLM2's widths exactly (135M: 576, 360M: 960, 1.7B: 2048), 7B gets 4096.
    heads H    = D / 64; kv heads K = H / g, g the largest of 4, 3, 2 that divides H (1 if none),
                 so 9 heads get 3 kv heads and 15 get 5 (as SmolLM2-135M and -360M), 32 get 8.
    ffn F0     = 8/3 * D rounded to a multiple of 32 (SmolLM2: 1536 for 576, 2560 for 960).
    layers L0  = round((N - embeddings - D) / per-layer(D, F0)), at least 1.
    then, for L = L0 (or the nearest of L0-8 .. L0+8 that can), F is re-solved as the multiple
    of 32 that brings the total closest to N; the first L whose total is within 0.5% wins, else
    the closest. The total then lands within 0.5% of N (4000 targets from 3.2M to 100B, tied and
    untied, all were; exit 1 if not within 1%). F stays within 20% of F0 from about 36M up;
    below, where models have few layers, it may move further.
Tiny targets are embedding-bound: 5M gets D=64 and about 39 thin layers, since V*64 is 3.1M.

Weights: numpy's PCG64 seeded with (seed, tensor index), normal with std 0.02, the residual
projections (attn_output, ffn_down) 0.02/sqrt(2L) as in GPT-2, so activations stay O(1) at any
depth; the norms are 1. 2-D tensors are stored in --quant, 1-D ones (norms) in F32.

Memory: tensors are generated, quantized and written one at a time (GGUFWriter's
add_tensor_info for all, then the header, then write_tensor_data per tensor), each in chunks of
rows, so the peak is one stored tensor (the embeddings, V*D elements in --quant) plus a 16 MB
chunk, whatever the model size. The file is written to PATH.tmp-PID next to PATH, fsynced,
then renamed: an interrupted run (exception, SIGTERM, SIGINT) never leaves a partial PATH.
"""

import argparse
import decimal
import json
import math
import os
import signal
import sys
import time

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("synthetic_gguf: the gguf package is missing; run scripts/setup-gguf and use its python")

QUANTS = {
    # name: (tensor type for 2-D weights, general.file_type)
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q5_1": (gguf.GGMLQuantizationType.Q5_1, gguf.LlamaFileType.MOSTLY_Q5_1),
    "q5_0": (gguf.GGMLQuantizationType.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
HEAD_DIM = 64
FFN_MULTIPLE = 32
STD = 0.02
CHUNK_ELEMENTS = 1 << 22  # 16 MB of float32 per generated chunk
RMS_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Shape and parameter count


def layer_params(d, kv_dim, f):
    return 2 * d + 2 * d * d + 2 * d * kv_dim + 3 * d * f


def total_params(shape, vocab, tied):
    d = shape["width"]
    kv_dim = shape["kv_heads"] * (d // shape["heads"])
    embeddings = vocab * d * (1 if tied else 2)
    return embeddings + d + shape["layers"] * layer_params(d, kv_dim, shape["ffn"])


def kv_heads_for(heads):
    for g in (4, 3, 2):
        if heads % g == 0:
            return heads // g
    return heads if heads > 1 else 1


def round_to(x, m):
    return max(m, int(round(x / m)) * m)


def derive_shape(target, vocab, tied, ctx):
    emb_factor = 1 if tied else 2

    def fixed(d):
        return vocab * d * emb_factor + d

    def parts(d):
        heads = d // HEAD_DIM
        kv = kv_heads_for(heads)
        return heads, kv, kv * HEAD_DIM, round_to(8 * d / 3, FFN_MULTIPLE)

    raw = 576 * math.sqrt(target / 135e6)
    step = HEAD_DIM if raw < 2048 else 4 * HEAD_DIM
    d = max(HEAD_DIM, step * round(raw / step))
    while d > HEAD_DIM and fixed(d) + layer_params(d, parts(d)[2], parts(d)[3]) > target:
        d -= HEAD_DIM
    heads, kv, kv_dim, f0 = parts(d)
    rest = target - fixed(d)
    smallest = fixed(d) + layer_params(d, kv_dim, FFN_MULTIPLE)
    if rest <= 0 or smallest > target * 1.01:
        raise UsageError(f"--params {target} is too small for a {vocab}-token vocabulary "
                         f"(the smallest model is {smallest} parameters)")
    l0 = max(1, round(rest / layer_params(d, kv_dim, f0)))
    best = None
    for l in sorted(range(max(1, l0 - 8), l0 + 9), key=lambda l: (abs(l - l0), l)):
        f_exact = (rest / l - 2 * d - 2 * d * d - 2 * d * kv_dim) / (3 * d)
        f = round_to(f_exact, FFN_MULTIPLE)
        shape = {"layers": l, "width": d, "heads": heads, "kv_heads": kv, "ffn": f,
                 "vocab": vocab, "ctx": ctx}
        err = abs(total_params(shape, vocab, tied) - target) / target
        if err <= 0.005:
            return shape
        if best is None or err < best[0]:
            best = (err, shape)
    return best[1]


def check_shape(shape, qtype):
    d, h, k, f, l = shape["width"], shape["heads"], shape["kv_heads"], shape["ffn"], shape["layers"]
    if min(d, h, k, f, l, shape["ctx"]) < 1:
        raise UsageError("layers, width, heads, kv-heads, ffn and ctx must be positive")
    if d % h:
        raise UsageError(f"--width {d} is not a multiple of --heads {h}")
    if h % k:
        raise UsageError(f"--heads {h} is not a multiple of --kv-heads {k}")
    if (d // h) % 2:
        raise UsageError(f"the head size {d // h} must be even (rotary embeddings)")
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for what, n in (("--width", d), ("--ffn", f)):
        if n % block:
            raise UsageError(f"{what} {n} is not a multiple of {block}, the block size of {qtype.name}")


# ---------------------------------------------------------------------------------------------
# Tokenizer metadata


def read_tokenizer(path):
    """Every tokenizer.* key of a GGUF, as (key, value, type, sub_type) ready for add_key_value,
    strings kept as raw bytes so the copy is exact."""
    reader = gguf.GGUFReader(path)
    keys = []
    vocab = None
    info = {"source": os.path.abspath(path)}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if len(field.types) != 2:
                raise UsageError(f"{path}: nested array {key} is not supported")
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]) for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            keys.append((key, value, vtype, sub))
            if key == "tokenizer.ggml.tokens":
                vocab = len(value)
        elif vtype == gguf.GGUFValueType.STRING:
            value = bytes(field.parts[field.data[0]])
            keys.append((key, value, vtype, None))
            if key in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
                info[key.rsplit(".", 1)[1]] = value.decode("utf-8", "replace")
        else:
            keys.append((key, field.parts[field.data[0]][0].item(), vtype, None))
    if not vocab:
        raise UsageError(f"{path} has no tokenizer.ggml.tokens")
    info["vocab"] = vocab
    info["chat_template"] = any(k == "tokenizer.chat_template" for k, *_ in keys)
    return keys, vocab, info


# ---------------------------------------------------------------------------------------------
# Tensors


def tensor_plan(shape, tied):
    """(name, numpy shape (rows, cols), std or None for ones), in file order."""
    d, l, v, f = shape["width"], shape["layers"], shape["vocab"], shape["ffn"]
    kv_dim = shape["kv_heads"] * (d // shape["heads"])
    resid = STD / math.sqrt(2 * l)
    plan = [("token_embd.weight", (v, d), STD)]
    for i in range(l):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (d,), None),
            (b + "attn_q.weight", (d, d), STD),
            (b + "attn_k.weight", (kv_dim, d), STD),
            (b + "attn_v.weight", (kv_dim, d), STD),
            (b + "attn_output.weight", (d, d), resid),
            (b + "ffn_norm.weight", (d,), None),
            (b + "ffn_gate.weight", (f, d), STD),
            (b + "ffn_up.weight", (f, d), STD),
            (b + "ffn_down.weight", (d, f), resid),
        ]
    plan.append(("output_norm.weight", (d,), None))
    if not tied:
        plan.append(("output.weight", (v, d), STD))
    return plan


def stored_type(np_shape, qtype):
    return qtype if len(np_shape) == 2 else gguf.GGMLQuantizationType.F32


def stored_nbytes(np_shape, ttype):
    block, size = gguf.GGML_QUANT_SIZES[ttype]
    rows = np_shape[0] if len(np_shape) == 2 else 1
    return rows * (np_shape[-1] // block) * size


def make_tensor(index, np_shape, std, ttype, seed):
    if std is None:
        return np.ones(np_shape, dtype=np.float32)
    rows, cols = np_shape
    rng = np.random.default_rng([seed, index])
    if ttype == gguf.GGMLQuantizationType.F32:
        out = np.empty(np_shape, dtype=np.float32)
    elif ttype == gguf.GGMLQuantizationType.F16:
        out = np.empty(np_shape, dtype=np.float16)
    else:
        out = np.empty(gguf.quant_shape_to_byte_shape(np_shape, ttype), dtype=np.uint8)
    step = max(1, CHUNK_ELEMENTS // cols)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        x = rng.standard_normal((r1 - r0, cols), dtype=np.float32)
        x *= np.float32(std)
        out[r0:r1] = gguf.quants.quantize(x, ttype)
    return out


def size_label(n):
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def write_model(path, shape, tied, quant, seed, tok_keys, plan):
    qtype, ftype = QUANTS[quant]
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    w = gguf.GGUFWriter(tmp, "llama")
    try:
        d = shape["width"]
        n = total_params(shape, shape["vocab"], tied)
        w.add_type("model")
        w.add_name(f"synthetic-llama-{size_label(n)}-{quant}-seed{seed}")
        w.add_size_label(size_label(n))
        w.add_description("banterhearts synthetic model: random weights "
                          f"(seed {seed}, std {STD}), not trained; output is meaningless")
        w.add_context_length(shape["ctx"])
        w.add_embedding_length(d)
        w.add_block_count(shape["layers"])
        w.add_feed_forward_length(shape["ffn"])
        w.add_head_count(shape["heads"])
        w.add_head_count_kv(shape["kv_heads"])
        w.add_rope_dimension_count(d // shape["heads"])
        w.add_rope_freq_base(ROPE_FREQ_BASE)
        w.add_layer_norm_rms_eps(RMS_EPS)
        w.add_vocab_size(shape["vocab"])
        w.add_file_type(int(ftype))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_uint32("banterhearts.synthetic.seed", seed)
        for key, value, vtype, sub in tok_keys:
            w.add_key_value(key, value, vtype, sub_type=sub)
        for name, np_shape, _ in plan:
            ttype = stored_type(np_shape, qtype)
            w.add_tensor_info(name, np_shape, np.dtype(np.float32), stored_nbytes(np_shape, ttype),
                              raw_dtype=ttype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for index, (name, np_shape, std) in enumerate(plan):
            w.write_tensor_data(make_tensor(index, np_shape, std, stored_type(np_shape, qtype), seed))
        w.flush()
        os.fsync(w.fout[0].fileno())
        w.close()
        os.replace(tmp, path)
    finally:
        w.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return os.path.getsize(path)


# ---------------------------------------------------------------------------------------------


def count(text):
    """A parameter count: an integer, a float (5e6) or a number with K, M or B (135M, 1.5B)."""
    t = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}.get(t[-1:], 1)
    try:
        value = decimal.Decimal(t[:-1] if scale > 1 else t) * scale  # exact: 1.1B is 1100000000
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a parameter count: {text!r}")
    if not value.is_finite() or value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole parameter count: {text!r}")
    return int(value)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="synthetic_gguf", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="the GGUF to write (not needed with --dry-run)")
    p.add_argument("--vocab-from", required=True, help="GGUF whose tokenizer.* metadata is copied")
    p.add_argument("--params", type=count, help="target parameter count (135000000, 135e6, 135M, 1.5B); derives the shape")
    p.add_argument("--layers", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--quant", default="q8_0", choices=list(QUANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ctx", type=int, default=2048, help="llama.context_length (default 2048)")
    p.add_argument("--untied", action="store_true", help="write a separate output.weight")
    p.add_argument("--dry-run", action="store_true", help="print shape and parameter count only")
    a = p.parse_args(argv)
    explicit = [a.layers, a.width, a.heads, a.kv_heads, a.ffn]
    if a.params is not None:
        if any(x is not None for x in explicit):
            p.error("--params derives the shape: give it or --layers/--width/--heads/--kv-heads/--ffn, not both")
    elif any(x is None for x in explicit):
        p.error("give --params N, or all of --layers --width --heads --kv-heads --ffn")
    if not a.dry_run and not a.out:
        p.error("--out is required (or --dry-run)")
    if not 0 <= a.seed < 2**32:
        p.error("--seed must be in 0 .. 2^32-1")
    return a


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()
    # SIGTERM becomes an exception, so the temporary file is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tok_keys, vocab, tok_info = read_tokenizer(a.vocab_from)
    tied = not a.untied
    if a.params is not None:
        shape = derive_shape(a.params, vocab, tied, a.ctx)
    else:
        shape = {"layers": a.layers, "width": a.width, "heads": a.heads, "kv_heads": a.kv_heads,
                 "ffn": a.ffn, "vocab": vocab, "ctx": a.ctx}
    qtype = QUANTS[a.quant][0]
    check_shape(shape, qtype)
    params = total_params(shape, vocab, tied)
    if a.params is not None and abs(params - a.params) > 0.01 * a.params:
        raise UsageError(f"no shape within 1% of --params {a.params} (best {params})")
    plan = tensor_plan(shape, tied)
    assert params == sum(math.prod(s) for _, s, _ in plan)
    tensor_bytes = sum(stored_nbytes(s, stored_type(s, qtype)) for _, s, _ in plan)
    file_bytes = None
    if not a.dry_run:
        file_bytes = write_model(a.out, shape, tied, a.quant, a.seed, tok_keys, plan)
    print(json.dumps({
        "path": None if a.dry_run else os.path.abspath(a.out),
        "dry_run": a.dry_run,
        "shape": {**shape, "head_dim": shape["width"] // shape["heads"]},
        "tied_embeddings": tied,
        "params": params,
        "target_params": a.params,
        "tensors": len(plan),
        "tensor_bytes": tensor_bytes,
        "file_bytes": file_bytes,
        "quant": a.quant,
        "seed": a.seed,
        "tokenizer": tok_info,
        "seconds": round(time.monotonic() - started, 3),
    }))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as e:
        print(f"synthetic_gguf: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
