"""Independent float64 whole-model reference for the models sala runs, in plain PyTorch.

Written from the specification only (../shared/research/sala-model.md §1.1, §1.3, §1.4, §3, §4, §4.9, plus the
definitions of docs/model.md where the reference is silent), not from sala's C++ model code, so that the two can be
compared tensor by tensor (tools/torch_ref/compare.py against `sala dump`).

Scope and invariants:
  - one prefill call over token ids at positions 0 .. T-1 (no cache, no decode steps);
  - every computation in torch.float64, weights widened from their stored dtype (F32, F16, BF16);
  - model types: minicpm_sala (InfLLM-V2 sparse "minicpm4" + Lightning "lightning-attn" layers), minicpm (dense, muP
    scales, optional LongRoPE) and llama (dense, no muP scales);
  - returns logits for every row and a dict of named intermediates, named as sala's trace names them
    (embed, L{l}.attn_norm, L{l}.q/k/v, L{l}.attn, L{l}.mixer_out, L{l}.mlp_out, L{l}.out, L{l}.sparse.topk_idx,
    L{l}.lightning.state, final_norm, logits); see RefModel.forward for what each holds. Block selection data for diagnostics is kept under "_" names.

Tiny models only: attention is materialised as full [H, T, T] matrices.
"""
import json
import math
import os
import struct

import numpy as np
import torch

F64 = torch.float64


# ---------------------------------------------------------------------------------------------------------------------
# safetensors (no safetensors package here): 8-byte little-endian header length, JSON header, raw little-endian data.

def read_safetensors(path):
    """Returns ({name: torch tensor (float64 for float dtypes, int64 for I32)}, metadata dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        raw = buf[base + begin:base + end]
        shape = list(spec["shape"])
        dt = spec["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            # bf16 is the high half of an fp32: widen the 16 bits into the top of a uint32.
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif dt == "F64":
            a = np.frombuffer(raw, dtype="<f8").astype(np.float64)
        elif dt == "I32":
            a = np.frombuffer(raw, dtype="<i4").astype(np.int64)
        elif dt == "I64":
            a = np.frombuffer(raw, dtype="<i8").astype(np.int64)
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        count = int(np.prod(shape)) if shape else 1
        if a.size != count:
            raise ValueError(f"{path}: tensor {name}: {a.size} elements for shape {shape}")
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out, meta


def load_weights(model_dir):
    """All tensors of a model folder: model.safetensors, a sharded set with model.safetensors.index.json, or any
    *.safetensors files."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(model_dir, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        files = sorted(p for p in os.listdir(model_dir) if p.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no .safetensors files")
    weights = {}
    for fn in files:
        t, _ = read_safetensors(os.path.join(model_dir, fn))
        weights.update(t)
    return weights


# ---------------------------------------------------------------------------------------------------------------------
# Config

class Config:
    def __init__(self, j):
        self.model_type = j["model_type"]
        if self.model_type not in ("minicpm_sala", "minicpm", "llama"):
            raise ValueError(f"config.json: model_type {self.model_type!r} not supported")
        self.vocab = j["vocab_size"]
        self.hidden = j["hidden_size"]
        self.layers = j["num_hidden_layers"]
        self.heads = j["num_attention_heads"]
        self.kv_heads = j.get("num_key_value_heads") or self.heads
        self.head_dim = j.get("head_dim") or self.hidden // self.heads
        self.eps = j.get("rms_norm_eps", 1e-6)
        self.theta = j.get("rope_theta", 10000.0)
        self.max_pos = j.get("max_position_embeddings", 0)
        minicpm = self.model_type in ("minicpm", "minicpm_sala")
        # MiniCPM types: muP always applied, with the HF config-class defaults (scale_emb = scale_depth =
        # dim_model_base = 1, tied embeddings) when a field is absent (docs/model.md, Checkpoints). Llama: no muP.
        self.tie = j.get("tie_word_embeddings", minicpm)
        if minicpm:
            self.scale_emb = float(j.get("scale_emb", 1.0))
            self.residual_scale = float(j.get("scale_depth", 1.0)) / math.sqrt(self.layers)
            self.logits_div = self.hidden / float(j.get("dim_model_base", 1.0))
        else:
            self.scale_emb, self.residual_scale, self.logits_div = 1.0, 1.0, 1.0
        # RoPE scaling: LongRoPE (MiniCPM4) or none.
        self.rope_factors = None
        self.rope_mscale = 1.0
        rs = j.get("rope_scaling")
        if rs:
            kind = rs.get("rope_type", rs.get("type"))
            if kind != "longrope":
                raise ValueError(f"config.json: rope_scaling type {kind!r} not supported")
            orig = rs.get("original_max_position_embeddings") or j.get("original_max_position_embeddings")
            # One call from position 0 never exceeds max_position_embeddings, so "long factors once past the original
            # context" (docs/model.md, RoPE) reduces to this config-level choice.
            factors = rs["long_factor"] if self.max_pos > orig else rs["short_factor"]
            self.rope_factors = [float(x) for x in factors]
            s = self.max_pos / orig
            self.rope_mscale = math.sqrt(1.0 + math.log(s) / math.log(orig)) if s > 1.0 else 1.0
        # Layer kinds.
        if self.model_type == "minicpm_sala":
            self.kinds = list(j["mixer_types"])
            for k in self.kinds:
                if k not in ("minicpm4", "lightning-attn"):
                    raise ValueError(f"config.json: mixer_types entry {k!r} not supported")
        else:
            self.kinds = ["dense"] * self.layers
        if len(self.kinds) != self.layers:
            raise ValueError(f"config.json: {len(self.kinds)} mixer_types for {self.layers} layers")
        sc = j.get("sparse_config") or {}
        self.block = sc.get("block_size", 64)
        self.dense_len = sc.get("dense_len", 8192)
        self.init_blocks = sc.get("init_blocks", 1)
        self.kernel_size = sc.get("kernel_size", 32)
        self.kernel_stride = sc.get("kernel_stride", 16)
        self.topk = sc.get("topk", 64)
        self.window = sc.get("window_size", 2048)
        self.lightning_nkv = j.get("lightning_nkv") or self.heads
        ls = j.get("lightning_scale", "1/sqrt(d)")
        if ls != "1/sqrt(d)":
            raise ValueError(f"config.json: lightning_scale {ls!r} not supported")
        # No public copy of the SALA config class states defaults for these: required for minicpm_sala.
        flags = ("qk_norm", "use_output_gate", "use_output_norm", "attn_use_output_gate")
        if self.model_type == "minicpm_sala":
            for f in flags:
                if f not in j:
                    raise ValueError(f"config.json: {f} is required for minicpm_sala")
        self.qk_norm, self.use_output_gate, self.use_output_norm, self.attn_use_output_gate = (
            bool(j.get(f, False)) for f in flags)
        self.attn_use_rope = j.get("attn_use_rope", True)
        self.lightning_use_rope = j.get("lightning_use_rope", True)


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks

def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def linear(x, w):
    return x @ w.t()


def rope_cos_sin(T, dim, theta, factors=None, mscale=1.0):
    """cos, sin [T, dim] for positions 0..T-1, NeoX halves; inv_freq_i = 1 / (factor_i * theta^(2i/dim))."""
    i = torch.arange(0, dim // 2, dtype=F64)
    inv_freq = 1.0 / (theta ** (2.0 * i / dim))
    if factors is not None:
        if len(factors) != dim // 2:
            raise ValueError(f"LongRoPE: {len(factors)} factors for head dim {dim}")
        inv_freq = inv_freq / torch.tensor(factors, dtype=F64)
    ang = torch.arange(T, dtype=F64)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return torch.cos(ang) * mscale, torch.sin(ang) * mscale


def apply_rope(x, cos, sin):
    """x [T, H, D]; pairs (i, i + D/2)."""
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def alibi_slopes(n):
    def pow2(m):
        start = 2.0 ** (-(2.0 ** -(math.log2(m) - 3)))
        return [start ** (h + 1) for h in range(m)]
    if math.log2(n).is_integer():
        return pow2(n)
    m = 2 ** math.floor(math.log2(n))
    return pow2(m) + pow2(2 * m)[0::2][:n - m]


def causal_attention(q, k, v, allowed=None):
    """Softmax attention, q [T, H, D], k/v [T, Hkv, D] (GQA: query head h reads KV head h // (H/Hkv)).
    allowed (optional) [T, Hkv, T] bool further restricts which keys a row sees. Returns [T, H, D]."""
    T, H, D = q.shape
    g = H // k.shape[1]
    kk = k.repeat_interleave(g, dim=1)
    vv = v.repeat_interleave(g, dim=1)
    s = torch.einsum("thd,jhd->htj", q, kk) / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool).tril()[None, :, :].expand(H, T, T)
    if allowed is not None:
        mask = mask & allowed.repeat_interleave(g, dim=1).permute(1, 0, 2)
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("htj,jhd->thd", p, vv)


# ---------------------------------------------------------------------------------------------------------------------
# InfLLM-V2 block selection (§4.3-§4.5, §4.9; generalised strides per docs/model.md)

def mean_pool_keys(k, size, stride):
    """k [T, Hkv, D] -> [N, Hkv, D], window i = mean(k[stride*i : stride*i + size])."""
    T = k.shape[0]
    n = (T - size) // stride + 1 if T >= size else 0
    if n == 0:
        return k.new_zeros((0,) + tuple(k.shape[1:]))
    return torch.stack([k[stride * i:stride * i + size].mean(0) for i in range(n)])


def stage1_visible(call_len, n_windows, stride, t):
    """§4.9 item 1: compressed windows row t (a prefill call from position 0 of length call_len) sees in stage 1:
    max(0, floor((t+1)/stride) - 1 + N - trunc((call_len - (stride-1)) / stride))."""
    num = call_len - (stride - 1)
    tr = abs(num) // stride * (1 if num >= 0 else -1)  # truncation toward zero, as the kernel's C integer division
    return max(0, (t + 1) // stride - 1 + n_windows - tr)


def block_selection(q, k, cfg):
    """Returns (topk_idx [T, Hkv, K] int64, block scores list for diagnostics).

    stage 1: S[t, g, i] = sum over the group's query heads of exp(scale q.K1[i] - lse), lse over visible K2 windows;
    max pooling onto blocks over K1 windows m*b-1 .. m*b+m-1 (m = block/stride), clipped to the K1 count;
    forced blocks (init + local window + own block) = +inf; top-K, ties toward the lower index; sorted, -1 padded."""
    T, H, D = q.shape
    Hkv = k.shape[1]
    G = H // Hkv
    s1 = cfg.kernel_stride
    if cfg.kernel_size != 2 * s1:
        raise ValueError("kernel_size must be 2 x kernel_stride")
    s2 = 4 * s1
    K1 = mean_pool_keys(k, cfg.kernel_size, s1)
    K2 = mean_pool_keys(k, 4 * cfg.kernel_size, s2)
    N1, N2 = K1.shape[0], K2.shape[0]
    scale = 1.0 / math.sqrt(D)
    vis1 = torch.tensor([stage1_visible(T, N1, s1, t) for t in range(T)])
    vis2 = torch.tensor([stage1_visible(T, N2, s2, t) for t in range(T)])

    qg = q.reshape(T, Hkv, G, D)
    l2 = torch.einsum("tgnd,jgd->tgnj", qg, K2) * scale                     # [T, Hkv, G, N2]
    m2 = torch.arange(N2)[None, :] < vis2[:, None]                          # [T, N2]
    l2 = l2.masked_fill(~m2[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(l2, dim=-1)                                        # [T, Hkv, G]
    l1 = torch.einsum("tgnd,jgd->tgnj", qg, K1) * scale                     # [T, Hkv, G, N1]
    p = torch.exp(l1 - lse[..., None])
    m1 = (torch.arange(N1)[None, :] < vis1[:, None]) & (vis2[:, None] > 0)  # no visible K2 window: all zero
    p = p.masked_fill(~m1[:, None, None, :], 0.0)
    S = p.sum(dim=2)                                                         # [T, Hkv, N1]

    B = cfg.block
    m = B // s1
    K = cfg.topk + cfg.window // B
    local = cfg.window // B
    idx = torch.full((T, Hkv, K), -1, dtype=torch.int64)
    scores = []
    for t in range(T):
        qb = t // B
        row_scores = []
        for g in range(Hkv):
            sc = []
            for b in range(qb + 1):  # blocks after the query's own cannot be selected (docs/model.md)
                if b < cfg.init_blocks or qb - local <= b <= qb:
                    sc.append(math.inf)
                    continue
                lo, hi = max(0, m * b - 1), min(N1 - 1, m * b + m - 1)
                sc.append(S[t, g, lo:hi + 1].max().item() if lo <= hi else -math.inf)
            order = sorted(range(len(sc)), key=lambda b: (-sc[b], b))[:K]
            sel = sorted(order)
            idx[t, g, :len(sel)] = torch.tensor(sel, dtype=torch.int64)
            row_scores.append(sc)
        scores.append(row_scores)
    return idx, scores


# ---------------------------------------------------------------------------------------------------------------------
# Model

class RefModel:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = Config(json.load(f))
        self.w = load_weights(model_dir)
        c = self.cfg
        if c.tie or "lm_head.weight" not in self.w:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]

    def W(self, name):
        if name not in self.w:
            raise KeyError(f"missing tensor {name}")
        return self.w[name]

    def qkv(self, x, p, H, Hkv, D):
        T = x.shape[0]
        q = linear(x, self.W(p + "q_proj.weight")).reshape(T, H, D)
        k = linear(x, self.W(p + "k_proj.weight")).reshape(T, Hkv, D)
        v = linear(x, self.W(p + "v_proj.weight")).reshape(T, Hkv, D)
        return q, k, v

    def rope(self, T, D):
        c = self.cfg
        return rope_cos_sin(T, D, c.theta, c.rope_factors, c.rope_mscale)

    def dense_mixer(self, x, p, tr, tag):
        c = self.cfg
        T = x.shape[0]
        q, k, v = self.qkv(x, p, c.heads, c.kv_heads, c.head_dim)
        cos, sin = self.rope(T, c.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        tr[tag + "q"], tr[tag + "k"], tr[tag + "v"] = q, k, v
        o = causal_attention(q, k, v).reshape(T, -1)
        tr[tag + "attn"] = o
        return linear(o, self.W(p + "o_proj.weight"))

    def sparse_mixer(self, x, p, tr, tag):
        c = self.cfg
        T = x.shape[0]
        D = c.hidden // c.heads  # §4.9 item 6: config head_dim is not read by sparse layers
        q, k, v = self.qkv(x, p, c.heads, c.kv_heads, D)
        if c.attn_use_rope:
            cos, sin = self.rope(T, D)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        tr[tag + "q"], tr[tag + "k"], tr[tag + "v"] = q, k, v
        if T < c.dense_len:  # one call from position 0: last position + 1 = T decides (§4.9 item 4)
            o = causal_attention(q, k, v)
        else:
            idx, scores = block_selection(q, k, c)
            tr[tag + "sparse.topk_idx"] = idx
            tr["_" + tag + "sparse.block_scores"] = scores
            blk = torch.arange(T) // c.block                                # block of each key
            allowed = (idx[:, :, :, None] == blk[None, None, None, :]).any(dim=2)  # [T, Hkv, T]
            o = causal_attention(q, k, v, allowed)
        o = o.reshape(T, -1)
        tr[tag + "attn"] = o
        if c.attn_use_output_gate:
            o = o * torch.sigmoid(linear(x, self.W(p + "o_gate.weight")))
        return linear(o, self.W(p + "o_proj.weight"))

    def lightning_mixer(self, x, p, tr, tag):
        c = self.cfg
        T = x.shape[0]
        H, Hkv, D = c.heads, c.lightning_nkv, c.head_dim
        q, k, v = self.qkv(x, p, H, Hkv, D)
        if c.qk_norm:  # per head, one weight shared by the heads
            q = rms_norm(q, self.W(p + "q_norm.weight"), c.eps)
            k = rms_norm(k, self.W(p + "k_norm.weight"), c.eps)
        if c.lightning_use_rope:
            cos, sin = self.rope(T, D)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        tr[tag + "q"], tr[tag + "k"], tr[tag + "v"] = q, k, v
        if Hkv < H:
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        slope = torch.tensor(alibi_slopes(H), dtype=F64)                     # decay per token exp(-slope)
        # Closed form of S_t = g S_{t-1} + k_t^T v_t, o_t = scale q_t S_t:
        #   o_t = scale sum_{j<=t} g^(t-j) (q_t . k_j) v_j ;  S_T-1 = sum_j g^(T-1-j) k_j^T v_j.
        t = torch.arange(T, dtype=F64)
        dist = t[:, None] - t[None, :]                                        # [T, T], t - j
        decay = torch.exp(-slope[:, None, None] * dist.clamp(min=0)[None])     # [H, T, T]
        decay = decay * (dist >= 0).to(F64)[None]
        scale = 1.0 / math.sqrt(D)
        a = torch.einsum("thd,jhd->htj", q, k) * decay
        o = torch.einsum("htj,jhd->thd", a, v) * scale
        w_last = torch.exp(-slope[:, None] * (T - 1 - t)[None, :])           # [H, T]
        tr[tag + "lightning.state"] = torch.einsum("hj,jhd,jhe->hde", w_last, k, v)
        o = o.reshape(T, H * D)
        tr[tag + "attn"] = o
        if c.use_output_norm:  # one RMSNorm over all heads jointly
            o = rms_norm(o, self.W(p + "o_norm.weight"), c.eps)
        if c.use_output_gate:
            o = o * torch.sigmoid(linear(x, self.W(p + "z_proj.weight")))
        return linear(o, self.W(p + "o_proj.weight"))

    def forward(self, ids):
        """Prefill of ids (positions 0..T-1) as one call. Returns (logits [T, vocab], trace dict)."""
        c = self.cfg
        ids = torch.as_tensor(list(ids), dtype=torch.int64)
        if ids.numel() == 0:
            raise ValueError("no token ids")
        if int(ids.min()) < 0 or int(ids.max()) >= c.vocab:
            raise ValueError(f"token id outside the vocabulary of {c.vocab}")
        tr = {}
        h = self.W("model.embed_tokens.weight")[ids] * c.scale_emb
        tr["embed"] = h
        for l in range(c.layers):
            p = f"model.layers.{l}."
            tag = f"L{l}."
            x = rms_norm(h, self.W(p + "input_layernorm.weight"), c.eps)
            tr[tag + "attn_norm"] = x
            kind = c.kinds[l]
            if kind == "minicpm4":
                a = self.sparse_mixer(x, p + "self_attn.", tr, tag)
            elif kind == "lightning-attn":
                a = self.lightning_mixer(x, p + "self_attn.", tr, tag)
            else:
                a = self.dense_mixer(x, p + "self_attn.", tr, tag)
            tr[tag + "mixer_out"] = a
            h = h + a * c.residual_scale
            x = rms_norm(h, self.W(p + "post_attention_layernorm.weight"), c.eps)
            gate = linear(x, self.W(p + "mlp.gate_proj.weight"))
            up = linear(x, self.W(p + "mlp.up_proj.weight"))
            m = linear(torch.nn.functional.silu(gate) * up, self.W(p + "mlp.down_proj.weight"))
            tr[tag + "mlp_out"] = m
            h = h + m * c.residual_scale
            tr[tag + "out"] = h
        # final_norm is traced as the lm_head input: RMSNorm(h) already divided by hidden/dim_model_base (muP),
        # which is how `sala dump` names it (equal to the plain RMSNorm output when there is no muP division).
        h = rms_norm(h, self.W("model.norm.weight"), c.eps) / c.logits_div
        tr["final_norm"] = h
        logits = linear(h, self.W("lm_head.weight"))
        tr["logits"] = logits
        return logits, tr


def run(model_dir, ids):
    """Convenience: (logits, trace) of a single prefill call."""
    return RefModel(model_dir).forward(ids)
