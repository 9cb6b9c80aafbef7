#!/usr/bin/python3
"""Compare a `sala dump` (fp32) against the independent float64 PyTorch reference (sala_ref.py), tensor by tensor.

Usage: compare.py MODEL_DIR DUMP.safetensors [--ids 1,2,3] [--rtol 1e-4]

Runs the reference over the prompt ids (--ids, or the ids recorded in the dump's metadata; both must agree when
given), then for every `prefill.*` tensor of the dump that the reference also computes prints one line: max abs error
and relative error (max |sala - ref| / max |ref|). Integer tensors (sparse.topk_idx) must be identical. Exit code 0
when every tensor is within --rtol and every index matches; 1 otherwise, naming the first (in forward order) tensor
that diverges; 2 on a usage / input error. Tensors the reference does not compute are listed as skipped.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import sala_ref  # noqa: E402

# Tensors a dump must hold (per layer where {l} appears; per layer kind where noted).
REQUIRED = ["logits", "final_norm", "L{l}.attn_norm", "L{l}.mixer_out", "L{l}.out"]


def parse_ids(s):
    return [int(x) for x in s.replace(" ", "").split(",") if x != ""]


def describe_topk(name, got, ref, trace, cfg, limit=5):
    """Lines describing the rows where sala's topk_idx differs from the reference."""
    diff = (got != ref).any(dim=-1)  # [T, Hkv]
    rows = diff.nonzero().tolist()
    lines = [f"  {len(rows)} (row, kv head) pairs differ of {diff.numel()}"]
    scores = trace.get("_" + name.replace("topk_idx", "block_scores"))
    for t, g in rows[:limit]:
        line = f"  row {t} kv {g}: sala {got[t, g].tolist()} ref {ref[t, g].tolist()}"
        if scores is not None:
            sc = scores[t][g]
            fin = sorted((s for s in sc if math.isfinite(s)), reverse=True)
            free = cfg.topk + cfg.window // cfg.block - sum(1 for s in sc if s == math.inf)
            if 0 < free < len(fin):
                a, b = fin[free - 1], fin[free]
                line += f"  (ref: last picked score {a:.9g}, first left {b:.9g}, rel gap {(a - b) / max(abs(a), 1e-300):.3g})"
        lines.append(line)
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("dump")
    ap.add_argument("--ids", help="prompt token ids, comma separated (default: the ids in the dump's metadata)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest allowed relative error (default 1e-4)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    try:
        dump, meta = sala_ref.read_safetensors(a.dump)
    except (OSError, ValueError) as e:
        print(f"compare: error: {a.dump}: {e}", file=sys.stderr)
        return 2
    meta_ids = parse_ids(meta["ids"]) if meta.get("ids") else None
    ids = parse_ids(a.ids) if a.ids else meta_ids
    if ids is None:
        print("compare: error: no --ids and the dump records none", file=sys.stderr)
        return 2
    if meta_ids is not None and meta_ids != ids:
        print(f"compare: error: --ids ({len(ids)} ids) differ from the dump's ids ({len(meta_ids)} ids)", file=sys.stderr)
        return 2

    model = sala_ref.RefModel(a.model_dir)
    cfg = model.cfg
    _, trace = model.forward(ids)
    T = len(ids)
    print(f"model {a.model_dir} ({cfg.model_type}, {cfg.layers} layers), {T} tokens, dump {a.dump}")

    failures = []
    required = [r.replace("{l}", str(l)) for r in REQUIRED for l in (range(cfg.layers) if "{l}" in r else [0])]
    for l, kind in enumerate(cfg.kinds):
        if kind == "lightning-attn":
            required.append(f"L{l}.lightning.state")
        if kind == "minicpm4" and T >= cfg.dense_len:
            required.append(f"L{l}.sparse.topk_idx")
    for r in required:
        if "prefill." + r not in dump:
            print(f"{'prefill.' + r:34s} MISSING from the dump")
            failures.append("prefill." + r)

    for full in dump:  # dump order = forward order
        if not full.startswith("prefill."):
            continue
        name = full[len("prefill."):]
        got = dump[full]
        if name not in trace:
            print(f"{full:34s} skipped (no reference tensor)")
            continue
        ref = trace[name]
        if tuple(got.shape) != tuple(ref.shape):
            print(f"{full:34s} SHAPE sala {list(got.shape)} ref {list(ref.shape)}")
            failures.append(full)
            continue
        if not got.is_floating_point():
            nd = int((got != ref).sum())
            ok = nd == 0
            print(f"{full:34s} {'ok  ' if ok else 'FAIL'} {nd} of {got.numel()} indices differ")
            if not ok:
                for line in describe_topk(name, got, ref, trace, cfg):
                    print(line)
                failures.append(full)
            continue
        err = (got - ref).abs()
        max_abs = float(err.max())
        den = max(float(ref.abs().max()), 1e-300)
        rel = max_abs / den
        ok = rel <= a.rtol and math.isfinite(rel)
        where = ""
        if not ok:
            i = int(err.reshape(-1).argmax())
            coord = []
            for s in reversed(got.shape):
                coord.append(i % s)
                i //= s
            coord = tuple(reversed(coord))
            where = f"  worst at {list(coord)}: sala {float(got[coord]):.9g} ref {float(ref[coord]):.9g}"
            failures.append(full)
        print(f"{full:34s} {'ok  ' if ok else 'FAIL'} max_abs {max_abs:.3e}  rel {rel:.3e}{where}")

    n_steps = sum(1 for k in dump if not k.startswith("prefill."))
    if n_steps:
        print(f"({n_steps} decode-step tensors not compared: the reference runs the prefill only)")
    if failures:
        print(f"FAILED: first divergence at {failures[0]} ({len(failures)} tensors over tolerance {a.rtol:g}, "
              f"missing or with differing indices)")
        return 1
    print(f"PASSED: every tensor within rel {a.rtol:g}, every index identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
