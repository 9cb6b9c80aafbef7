#!/usr/bin/env python3
"""Full-attention peer for `sala bench`: dense Transformers in plain PyTorch, as a user would run them.

Random bf16 weights on one CUDA GPU, batch 1. Per context length L it measures
  - TTFT: prefill of L random token ids including the first token's logits and its greedy argmax;
  - prefill tok/s = L / TTFT;
  - decode tok/s: D eager single-token steps against the KV cache (no CUDA graphs), greedy argmax, attention under
    the flash backend (--decode-backend default leaves the choice to PyTorch: cuDNN, much slower here: see SdpaAttention);
  - peak GPU memory: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), weights included.

Model (per layer): RMSNorm -> fused q/k/v projection -> [per-head q/k RMSNorm, Qwen3] -> RoPE (rotate-half) ->
SDPA attention (GQA) -> o projection -> residual -> RMSNorm -> SwiGLU MLP -> residual; then the final norm and the
lm_head on the last row only. muP scales for MiniCPM4 (embedding x12, residual x 1.4/sqrt(32), logits / 16).

Memory: the KV cache is preallocated for L + D tokens ([1, kv_heads, L + D, head_dim] per layer, K after RoPE).
Prefill runs in one call (`scaled_dot_product_attention(is_causal=True)` under the cuDNN backend, falling back to
flash, then memory-efficient, if cuDNN refuses) when the estimated temporaries of one call fit in the free memory
after the cache; otherwise, or when the one call runs out of memory anyway, it is redone in chunks of --chunk
tokens: each chunk attends to the cache plus itself through a lower-right-aligned causal mask
(`torch.nn.attention.bias.causal_lower_right`, which runs the flash or memory-efficient kernel without
materialising the mask; the script refuses to let it fall back to a materialised mask). An out-of-memory for a
length is reported as {"oom": true} and the next length is run.

Each length is measured once (--repeat R keeps the lowest-TTFT of R runs); a first call at a new length includes
cuDNN's plan build for that shape (about 70 ms at 8K on an H200), as a user's first request would.

Uses torch and the standard library only. `--self-test` checks, on CPU when there is no CUDA device, on a tiny
config, that chunked prefill + decode gives the logits of a one-call prefill (plain softmax attention where the
installed torch has no SDPA, e.g. Debian's 1.13).

  python3 bench/peers/torch_dense.py --config qwen3-8b --lengths 8192,32768,131072 --decode 32 --out r.jsonl
"""
import argparse
import datetime
import gc
import json
import math
import sys
import time
import warnings

import torch
import torch.nn.functional as F

CONFIGS = {
    # Qwen3-8B: per-head q/k RMSNorm, untied lm_head, no muP.
    "qwen3-8b": dict(layers=36, hidden=4096, mlp=12288, heads=32, kv_heads=8, head_dim=128, vocab=151936,
                     rope_theta=1e6, qk_norm=True, eps=1e-6, scale_emb=1.0, residual_scale=1.0, logit_div=1.0),
    # MiniCPM4-8B: muP (scale_emb 12, scale_depth 1.4, dim_model_base 256 -> logits / (4096 / 256)).
    "minicpm4-8b": dict(layers=32, hidden=4096, mlp=16384, heads=32, kv_heads=2, head_dim=128, vocab=73448,
                        rope_theta=1e4, qk_norm=False, eps=1e-5, scale_emb=12.0,
                        residual_scale=1.4 / math.sqrt(32), logit_div=4096 / 256),
    # The self-test's model (also runnable on a GPU with --config tiny).
    "tiny": dict(layers=2, hidden=128, mlp=256, heads=4, kv_heads=2, head_dim=32, vocab=100,
                 rope_theta=1e4, qk_norm=True, eps=1e-6, scale_emb=12.0, residual_scale=1.4 / math.sqrt(2),
                 logit_div=2.0),
}

DEFAULT_CHUNK = 16384
GIB = float(1 << 30)


def harness_commit():
    """The sala commit this harness ran from: git where there is a checkout, else the commit `scripts/device.sh pack`
    recorded beside the binaries (the GPU machine's copy of the tree has no .git), else "unknown"."""
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open(os.path.join(root, "build", "device", "commit")) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
OOM_ERRORS = tuple(e for e in (getattr(torch.cuda, "OutOfMemoryError", None),) if e is not None)


def is_oom(exc):
    return isinstance(exc, OOM_ERRORS) or "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------------------------------
# Attention. q: [1, H, c, D]; k, v: [1, KV, S, D] with S = pos0 + c (the cache plus the chunk itself).

def repeat_kv(x, n_rep):
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


class PlainAttention:
    """Softmax attention written out (fp32 scores): the CPU self-test path where torch has no SDPA."""

    name = "plain"

    def __init__(self):
        self.used = []

    def __call__(self, q, k, v, pos0):
        self.used.append("plain")
        h, c, d = q.shape[1], q.shape[2], q.shape[3]
        s = k.shape[2]
        k = repeat_kv(k, h // k.shape[1]).float()
        v = repeat_kv(v, h // v.shape[1]).float()
        scores = torch.matmul(q.float(), k.transpose(-1, -2)) / math.sqrt(d)
        # Lower-right alignment: query i sits at absolute position s - c + i and sees keys 0 .. s - c + i.
        qpos = torch.arange(s - c, s, device=q.device)[:, None]
        kpos = torch.arange(s, device=q.device)[None, :]
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1), v).to(q.dtype)


class SdpaAttention:
    """torch.nn.functional.scaled_dot_product_attention, the way a user picks backends.

    pos0 == 0 (a one-call prefill or the first chunk): is_causal=True under sdpa_kernel([cuDNN]), else flash, else
    memory-efficient; GQA through enable_gqa=True, or K/V expanded with repeat_interleave where a backend refuses it.
    pos0 > 0, c > 1 (a later chunk): causal_lower_right(c, S) under sdpa_kernel([flash, efficient]).
    c == 1 (decode): no mask, under sdpa_kernel([flash]) (then memory-efficient), or with decode_backend="default"
    the default dispatcher.
    The labels of the kernels that ran are appended to self.used."""

    name = "sdpa"

    def __init__(self, device, decode_backend="flash"):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        self.sdpa_kernel = sdpa_kernel
        self.B = SDPBackend
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.causal_options = [(b, gqa) for b in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                                                      SDPBackend.EFFICIENT_ATTENTION) for gqa in (True, False)]
        else:
            self.causal_options = [(None, True), (None, False)]
        # Decode: flash (then memory-efficient) by default. The default dispatcher picks cuDNN for a single query on
        # an H200 with torch 2.11, and cuDNN builds (and caches) an execution plan per key length, so every decode
        # step of a fresh context pays a plan build (measured: 9-10 tok/s instead of 28 at 8K, qwen3-8b).
        self.decode_backend = decode_backend
        self.decode_options = ([(b, gqa) for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION)
                                for gqa in (True, False)] if self.cuda else [(None, True), (None, False)])
        self.start = {}
        self.decode_label = None
        self.used = []

    @staticmethod
    def _label(backend, gqa):
        name = {"CUDNN_ATTENTION": "cudnn", "FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "efficient",
                "MATH": "math"}.get(getattr(backend, "name", ""), "default")
        return name if gqa else name + "+repeat_kv"

    def __call__(self, q, k, v, pos0):
        c, s = q.shape[2], k.shape[2]
        n_rep = q.shape[1] // k.shape[1]
        if c == 1:
            return self._decode(q, k, v, n_rep)
        if pos0 == 0:
            assert s == c
            return self._causal(q, k, v, n_rep)
        return self._lower_right(q, k, v, n_rep)

    def _causal(self, q, k, v, n_rep):
        return self._first_that_runs("causal", self.causal_options, q, k, v, n_rep, is_causal=True)

    def _first_that_runs(self, kind, options, q, k, v, n_rep, is_causal):
        errors = []
        for i in range(self.start.get(kind, 0), len(options)):
            backend, gqa = options[i]
            kk, vv = (k, v) if gqa else (repeat_kv(k, n_rep), repeat_kv(v, n_rep))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if backend is None:
                        out = F.scaled_dot_product_attention(q, kk, vv, is_causal=is_causal, enable_gqa=gqa)
                    else:
                        with self.sdpa_kernel([backend]):
                            out = F.scaled_dot_product_attention(q, kk, vv, is_causal=is_causal, enable_gqa=gqa)
            except RuntimeError as e:  # "No available kernel", a cuDNN refusal; never an out-of-memory
                if is_oom(e):
                    raise
                errors.append(f"{self._label(backend, gqa)}: {str(e).splitlines()[0] if str(e) else e!r}")
                continue
            self.start[kind] = i  # later calls start with the option that worked
            self.used.append(self._label(backend, gqa))
            return out
        raise RuntimeError(f"no SDPA backend ran the {kind} attention: " + "; ".join(errors))

    def _lower_right(self, q, k, v, n_rep):
        from torch.nn.attention.bias import causal_lower_right
        bias = causal_lower_right(q.shape[2], k.shape[2])
        if not self.cuda:
            self.used.append("default")
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)
        from torch.backends.cuda import SDPAParams, can_use_efficient_attention, can_use_flash_attention
        for gqa in (True, False):
            kk, vv = (k, v) if gqa else (repeat_kv(k, n_rep), repeat_kv(v, n_rep))
            with self.sdpa_kernel([self.B.FLASH_ATTENTION, self.B.EFFICIENT_ATTENTION]):
                params = SDPAParams(q, kk, vv, None, 0.0, False, gqa)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if can_use_flash_attention(params):
                        label = "flash"
                    elif can_use_efficient_attention(params):
                        label = "efficient"
                    else:
                        continue  # CausalBias would materialise a [c, S] mask: not memory-bounded
                self.used.append(label if gqa else label + "+repeat_kv")
                return F.scaled_dot_product_attention(q, kk, vv, attn_mask=bias, enable_gqa=gqa)
        raise RuntimeError("neither flash nor memory-efficient attention accepts the lower-right causal chunk")

    def _decode(self, q, k, v, n_rep):
        if self.decode_backend == "flash":
            return self._first_that_runs("decode", self.decode_options, q, k, v, n_rep, is_causal=False)
        try:
            out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            gqa = True
        except RuntimeError as e:
            if is_oom(e):
                raise
            out = F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep))
            gqa = False
        if self.decode_label is None:  # which kernel the dispatcher picked, asked once (diagnostic only)
            label = "default"
            choice = getattr(torch, "_fused_sdp_choice", None)
            if choice is not None and self.cuda:
                try:
                    kk, vv = (k, v) if gqa else (repeat_kv(k, n_rep), repeat_kv(v, n_rep))
                    idx = int(choice(q, kk, vv, attn_mask=None, dropout_p=0.0, is_causal=False, enable_gqa=gqa))
                    label = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn"}.get(idx, f"backend{idx}")
                except Exception as e:  # noqa: BLE001 - a private API; the label is only informative
                    print(f"torch_dense: note: decode backend unknown ({e!r:.120})", file=sys.stderr)
            self.decode_label = label if gqa else label + "+repeat_kv"
        self.used.append(self.decode_label)
        return out


# ---------------------------------------------------------------------------------------------------------------------
# Model.

def rms_norm(x, weight, eps):
    # As Hugging Face's LlamaRMSNorm / Qwen3RMSNorm: statistics in fp32, scale in the input dtype.
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class DenseModel:
    def __init__(self, cfg, device, dtype=torch.bfloat16, seed=0, attention=None, decode_backend="flash"):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        torch.manual_seed(seed)
        h, m, d = cfg["hidden"], cfg["mlp"], cfg["head_dim"]
        nq, nkv = cfg["heads"], cfg["kv_heads"]

        def rand(*shape):  # created directly on the device, one tensor at a time
            return torch.randn(*shape, device=device, dtype=dtype).mul_(0.02)

        def ones(n):
            return torch.ones(n, device=device, dtype=dtype)

        self.embed = rand(cfg["vocab"], h)
        self.layers = []
        for _ in range(cfg["layers"]):
            layer = dict(ln1=ones(h), wqkv=rand((nq + 2 * nkv) * d, h), wo=rand(h, nq * d), ln2=ones(h),
                         wg=rand(m, h), wu=rand(m, h), wd=rand(h, m))
            if cfg["qk_norm"]:
                layer["qn"], layer["kn"] = ones(d), ones(d)
            self.layers.append(layer)
        self.norm = ones(h)
        self.lm_head = rand(cfg["vocab"], h)
        self.inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
        if attention is None:
            attention = SdpaAttention(device, decode_backend) if HAS_SDPA else PlainAttention()
        self.attention = attention

    def weight_bytes(self):
        n = self.embed.numel() + self.lm_head.numel() + self.norm.numel()
        n += sum(t.numel() for layer in self.layers for t in layer.values())
        return n * self.embed.element_size()

    def kv_bytes_per_token(self):
        c = self.cfg
        return 2 * c["layers"] * c["kv_heads"] * c["head_dim"] * torch.finfo(self.dtype).bits // 8

    def one_call_temp_bytes(self, n):
        """Rough upper estimate of one layer's live temporaries for a prefill call of n tokens (bytes)."""
        c = self.cfg
        e = torch.finfo(self.dtype).bits // 8
        h, m = c["hidden"], c["mlp"]
        qd, kvd = c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]
        resid = 2 * h * e                                    # x and x + delta
        norm = 2 * 4 * h + 2 * h * e                         # fp32 statistics as HF computes them
        attn = (qd + 2 * kvd) * e + 4 * qd * e + 4 * kvd * e + 2 * qd * e  # qkv, RoPE temporaries, SDPA in/out
        if c["qk_norm"]:
            attn += 2 * 4 * qd
        mlp = 3 * m * e + h * e                              # gate or silu(gate), up, product, down
        return int(1.25 * n * (resid + max(norm, attn, mlp)))

    def new_cache(self, max_len):
        c = self.cfg
        shape = (1, c["kv_heads"], max_len, c["head_dim"])
        return [(torch.empty(shape, device=self.device, dtype=self.dtype),
                 torch.empty(shape, device=self.device, dtype=self.dtype)) for _ in range(c["layers"])]

    def forward(self, ids, pos0, cache, want_logits=True):
        """ids: [c] token ids at positions pos0 .. pos0 + c - 1; writes their K/V into the cache; returns the fp32
        logits of the last row (or None)."""
        cfg = self.cfg
        c = ids.shape[0]
        nq, nkv, d, eps = cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["eps"]
        pos = torch.arange(pos0, pos0 + c, device=self.device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(self.dtype), emb.sin().to(self.dtype)
        rs = cfg["residual_scale"]

        x = F.embedding(ids, self.embed)
        if cfg["scale_emb"] != 1.0:
            x = x * cfg["scale_emb"]
        for li, layer in enumerate(self.layers):
            hn = rms_norm(x, layer["ln1"], eps)
            q, k, v = F.linear(hn, layer["wqkv"]).split([nq * d, nkv * d, nkv * d], dim=-1)
            del hn
            q, k, v = q.view(c, nq, d), k.view(c, nkv, d), v.view(c, nkv, d)
            if cfg["qk_norm"]:
                q, k = rms_norm(q, layer["qn"], eps), rms_norm(k, layer["kn"], eps)
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # [1, heads, c, d]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            ck, cv = cache[li]
            ck[:, :, pos0:pos0 + c] = k
            cv[:, :, pos0:pos0 + c] = v
            if pos0 > 0:
                k, v = ck[:, :, :pos0 + c], cv[:, :, :pos0 + c]
            o = self.attention(q, k, v, pos0)
            del q, k, v
            o = o.squeeze(0).transpose(0, 1).reshape(c, nq * d)
            o = F.linear(o, layer["wo"])
            x = x + (o * rs if rs != 1.0 else o)
            del o
            hn = rms_norm(x, layer["ln2"], eps)
            y = F.linear(F.silu(F.linear(hn, layer["wg"])) * F.linear(hn, layer["wu"]), layer["wd"])
            del hn
            x = x + (y * rs if rs != 1.0 else y)
            del y
        if not want_logits:
            return None
        last = rms_norm(x[-1:], self.norm, eps)
        if cfg["logit_div"] != 1.0:
            last = last / cfg["logit_div"]
        return F.linear(last, self.lm_head)[0].float()


def prefill(model, ids, cache, chunk):
    """Prefill ids[0 .. L) in chunks of `chunk` tokens (chunk >= L: one call); returns the last row's logits."""
    n = ids.shape[0]
    chunk = max(1, min(chunk, n))
    logits = None
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        logits = model.forward(ids[s:e], s, cache, want_logits=(e == n))
    return logits


def decode(model, first_token, pos, cache, steps):
    """Greedy decode: feeds first_token at position pos, then each argmax; returns the generated ids (on device)."""
    tok = first_token.view(1)
    out = []
    for i in range(steps):
        logits = model.forward(tok, pos + i, cache)
        tok = torch.argmax(logits).view(1)
        out.append(tok)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=first_token.device)


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark.

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_length(model, length, decode_steps, chunk, force_chunked, seed=1, inject_oom=False):
    """One (config, length) measurement. Returns a dict of results (oom=True when it could not run)."""
    dev = model.device
    gen = torch.Generator(device="cpu").manual_seed(seed + length)
    ids = torch.randint(0, model.cfg["vocab"], (length,), generator=gen).to(dev)
    attn = model.attention
    res = dict(context=length, oom=False, chunked=False, chunk=None, ttft_s=None, prefill_tok_s=None,
               decode_tok_s=None, peak_gpu_gib=None, attention_backend=None, decode_attention_backend=None,
               decode_tokens=decode_steps, note=None)
    cuda = dev.type == "cuda"
    plan = ["chunked"] if force_chunked else ["one-call", "chunked"]
    if not force_chunked and cuda:
        # Estimate: the cache (allocated first) plus one layer's temporaries of a single call must fit.
        need = (length + decode_steps + 1) * model.kv_bytes_per_token() + model.one_call_temp_bytes(length)
        free_b, _ = torch.cuda.mem_get_info(dev)
        if need > 0.92 * free_b:
            plan = ["chunked"]
            res["note"] = f"one call estimated at {need / GIB:.1f} GiB > {free_b / GIB:.1f} GiB free: chunked"
    cache = None
    for mode in plan:
        oom = False
        free_memory()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        attn.used = []
        try:
            cache = model.new_cache(length + decode_steps + 1)
            step = length if mode == "one-call" else chunk
            sync(dev)
            t0 = time.perf_counter()
            if inject_oom and mode == "one-call":
                raise OOM_ERRORS[0]("injected out of memory (self-test)") if OOM_ERRORS else MemoryError()
            logits = prefill(model, ids, cache, step)
            first = torch.argmax(logits)
            sync(dev)
            t1 = time.perf_counter()
            prefill_used = list(attn.used)
            attn.used = []
            decode(model, first, length, cache, decode_steps)
            sync(dev)
            t2 = time.perf_counter()
        except (RuntimeError, MemoryError) as e:
            if not (is_oom(e) or isinstance(e, MemoryError)):
                raise
            oom = True
            res["note"] = (res["note"] + "; " if res["note"] else "") + f"{mode}: {str(e).splitlines()[0][:160]}"
        if oom:  # outside the except block, so the traceback's frames (and tensors) are gone
            cache = logits = first = None
            free_memory()
            continue
        res.update(chunked=(mode == "chunked" and chunk < length), chunk=(step if step < length else None),
                   ttft_s=t1 - t0, prefill_tok_s=length / (t1 - t0),
                   decode_tok_s=(decode_steps / (t2 - t1)) if decode_steps else None,
                   attention_backend="+".join(dict.fromkeys(prefill_used)),
                   decode_attention_backend="+".join(dict.fromkeys(attn.used)) or None)
        if cuda:
            res["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / GIB
        cache = logits = first = None
        free_memory()
        return res
    res["oom"] = True
    if cuda:
        res["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / GIB
    return res


def warm_up(model, chunk_small=128, n=512):
    """Initialises cuBLAS/cuDNN/flash and the allocator on a short prompt: one call, chunked, two decode steps."""
    for step in (n, chunk_small):
        cache = model.new_cache(n + 4)
        logits = prefill(model, torch.arange(n, device=model.device) % model.cfg["vocab"], cache, step)
        decode(model, torch.argmax(logits), n, cache, 3)
        sync(model.device)
    model.attention.used = []
    del cache
    free_memory()


def print_table(rows, header=True, file=sys.stdout):
    if header:
        print(f"{'config':<12} {'context':>8} {'prefill':<24} {'TTFT s':>9} {'prefill tok/s':>13} {'decode tok/s':>12} "
              f"{'peak GiB':>8}", file=file)
    for r in rows:
        if r["oom"]:
            print(f"{r['config']:<12} {r['context']:>8} {'OOM':<24} {'-':>9} {'-':>13} {'-':>12} "
                  f"{(r['peak_gpu_gib'] or 0):>8.1f}", file=file)
            continue
        mode = (f"chunk {r['chunk']} " if r["chunked"] else "one call ") + (r["attention_backend"] or "")
        dec = f"{r['decode_tok_s']:.1f}" if r["decode_tok_s"] else "-"
        peak = f"{r['peak_gpu_gib']:.1f}" if r["peak_gpu_gib"] is not None else "-"
        print(f"{r['config']:<12} {r['context']:>8} {mode:<24.24} {r['ttft_s']:>9.3f} {r['prefill_tok_s']:>13.0f} "
              f"{dec:>12} {peak:>8}", file=file)


def parse_lengths(text):
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part[-1] in "km":
            mult = 1024 if part[-1] == "k" else 1024 * 1024
            part = part[:-1]
        v = int(part) * mult
        if v <= 0:
            raise argparse.ArgumentTypeError(f"length must be positive: {part}")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("no lengths")
    return out


def bench(args):
    if not torch.cuda.is_available():
        print("torch_dense: error: no CUDA device (use --self-test for the CPU check)", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    cfg = CONFIGS[args.config]
    card = torch.cuda.get_device_name(dev)
    card_gib = torch.cuda.get_device_properties(dev).total_memory / GIB
    commit = harness_commit()
    with torch.inference_mode():
        t = time.perf_counter()
        model = DenseModel(cfg, dev, decode_backend=args.decode_backend)
        sync(dev)
        print(f"# {args.config}: {model.weight_bytes() / 1e9:.2f} GB of bf16 weights in {time.perf_counter() - t:.1f} s; "
              f"KV {model.kv_bytes_per_token() / 1024:.0f} KiB/token; torch {torch.__version__}; {card}", flush=True)
        warm_up(model)
        rows = []
        for length in args.lengths:
            r = None
            for _ in range(args.repeat):
                ri = run_length(model, length, args.decode, args.chunk or DEFAULT_CHUNK,
                                force_chunked=args.chunk is not None)
                if r is None or (not ri["oom"] and (r["oom"] or ri["ttft_s"] < r["ttft_s"])):
                    r = ri
                if ri["oom"]:
                    break
            row = dict(engine="pytorch", torch=torch.__version__, card=card, card_gib=round(card_gib, 1),
                       date=datetime.date.today().isoformat(), commit=commit, config=args.config, repeat=args.repeat,
                       command="python3 bench/peers/torch_dense.py " + " ".join(sys.argv[1:]), **r)
            rows.append(row)
            print_table([row], header=len(rows) == 1)
            sys.stdout.flush()
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Self-test (tiny config; CPU when there is no CUDA device).

def self_test():
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = CONFIGS["tiny"]
    failures = []

    def close(name, a, b, rtol):
        err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-6)
        ok = err <= rtol
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: max |diff| / max |ref| = {err:.2e} (tolerance {rtol:.0e})")
        if not ok:
            failures.append(name)

    def same(name, a, b):
        ok = torch.equal(a.cpu(), b.cpu())
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {a.tolist()} vs {b.tolist()}")
        if not ok:
            failures.append(name)

    attentions = [("plain", lambda: PlainAttention())]
    if HAS_SDPA:
        attentions.append(("sdpa", lambda: SdpaAttention(dev)))
    print(f"self-test on {dev} (torch {torch.__version__}, SDPA {'present' if HAS_SDPA else 'absent'}): "
          f"attention paths {', '.join(n for n, _ in attentions)}")
    n, tail = 45, 5
    ids = torch.randint(0, cfg["vocab"], (n,), generator=torch.Generator().manual_seed(7)).to(dev)
    ref_logits = {}
    with torch.inference_mode():
        for dtype, rtol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
            for aname, make in attentions:
                model = DenseModel(cfg, dev, dtype=dtype, seed=3, attention=make())
                tag = f"{aname}/{str(dtype).replace('torch.', '')}"
                cache = model.new_cache(n + 8)
                one = prefill(model, ids, cache, n)
                assert model.attention.used and all(u == model.attention.used[0] for u in model.attention.used)
                ref_logits[(aname, dtype)] = one
                for chunk in (1, 7, 16, 44):
                    cache = model.new_cache(n + 8)
                    close(f"{tag} prefill in chunks of {chunk} == one call", prefill(model, ids, cache, chunk), one,
                          rtol)
                # chunked prefill of the first n - tail tokens + teacher-forced decode of the rest
                cache = model.new_cache(n + 8)
                prefill(model, ids[:n - tail], cache, 8)
                for i in range(n - tail, n):
                    lg = model.forward(ids[i:i + 1], i, cache)
                close(f"{tag} chunked prefill + {tail} decode steps == one call", lg, one, rtol)
                # causality: the prefix's one-call logits equal those at that row of the chunked+decode path
                cache = model.new_cache(n + 8)
                close(f"{tag} one call over a prefix == chunked prefix", prefill(model, ids[:n - tail], cache, n),
                      prefill(model, ids[:n - tail], model.new_cache(n + 8), 5), rtol)
                if dtype == torch.float32:
                    c1, c2 = model.new_cache(n + 8), model.new_cache(n + 8)
                    g1 = decode(model, torch.argmax(prefill(model, ids, c1, n)), n, c1, 6)
                    g2 = decode(model, torch.argmax(prefill(model, ids, c2, 9)), n, c2, 6)
                    same(f"{tag} greedy tokens after one-call vs chunked prefill", g1, g2)
                    # decode == one-call prefill over prompt + generated tokens
                    full = torch.cat([ids, torch.argmax(prefill(model, ids, model.new_cache(n + 8), n)).view(1),
                                      g1[:-1]])
                    close(f"{tag} last decode step == one call over prompt + generated",
                          _logits_at_end(model, ids, g1, n),
                          prefill(model, full, model.new_cache(n + 16), full.shape[0]), rtol)
        if HAS_SDPA:
            for dtype, rtol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
                close(f"sdpa == plain attention ({str(dtype).replace('torch.', '')})",
                      ref_logits[("sdpa", dtype)], ref_logits[("plain", dtype)], rtol)

        # The benchmark driver itself (the OOM retry injected): one-call OOM -> chunked; results in the right form.
        model = DenseModel(cfg, dev, dtype=torch.float32, seed=3)
        r_one = run_length(model, 64, 4, 16, force_chunked=False)
        r_oom = run_length(model, 64, 4, 16, force_chunked=False, inject_oom=True)
        r_chk = run_length(model, 64, 4, 16, force_chunked=True)
        ok = (not r_one["chunked"] and r_oom["chunked"] and r_chk["chunked"] and not r_oom["oom"]
              and r_oom["chunk"] == 16 and all(r["ttft_s"] > 0 and r["decode_tok_s"] > 0 for r in (r_one, r_oom, r_chk)))
        print(f"  {'ok  ' if ok else 'FAIL'} driver: one call, injected OOM -> chunked retry, forced chunks "
              f"(backends {r_one['attention_backend']!r} / {r_oom['attention_backend']!r})")
        if not ok:
            failures.append("driver")
        for r in (r_one, r_oom, r_chk):
            r.update(engine="pytorch", torch=torch.__version__, card=str(dev), date=datetime.date.today().isoformat(),
                     config="tiny")
            json.loads(json.dumps(r))
        print_table([r_one, r_oom, r_chk])
    print("self-test:", "FAILED " + ", ".join(failures) if failures else "passed")
    return 1 if failures else 0


def _logits_at_end(model, ids, generated, n):
    """Logits after decoding: one-call prefill of the prompt, then feed the first token and generated[:-1]."""
    cache = model.new_cache(n + 16)
    first = torch.argmax(prefill(model, ids, cache, n)).view(1)
    toks = torch.cat([first, generated[:-1]])
    lg = None
    for i in range(toks.shape[0]):
        lg = model.forward(toks[i:i + 1], n + i, cache)
    return lg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Prefill is one SDPA call when it fits (estimated, or until it runs out of "
                                       "memory), else chunks of 16384; --chunk N forces chunks of N tokens.")
    p.add_argument("--config", choices=sorted(CONFIGS), default="qwen3-8b")
    p.add_argument("--lengths", type=parse_lengths, default=[8192, 32768, 131072],
                   help="comma-separated context lengths (8192, 32k, 1m)")
    p.add_argument("--decode", type=int, default=32, help="decode steps after the prefill (default 32)")
    p.add_argument("--chunk", type=int, default=None,
                   help=f"force chunked prefill in chunks of N tokens (default: one call when it fits, else "
                        f"{DEFAULT_CHUNK})")
    p.add_argument("--decode-backend", choices=("flash", "default"), default="flash",
                   help="SDPA backend of the decode steps: flash (default; memory-efficient if flash refuses) or the "
                        "default dispatcher (cuDNN on an H200, which builds a plan per key length)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each length this many times and keep the run with the lowest TTFT (default 1)")
    p.add_argument("--out", help="append one JSON line per (config, length) to this file")
    p.add_argument("--self-test", action="store_true", help="tiny-config correctness check (CPU without CUDA)")
    args = p.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.decode < 0 or (args.chunk is not None and args.chunk <= 0) or args.repeat < 1:
        p.error("--decode must be >= 0, --chunk > 0 and --repeat >= 1")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
