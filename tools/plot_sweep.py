#!/usr/bin/env python3
"""Plots a context-length sweep: TTFT and peak GPU memory against context, one line per (engine, config).

Input: JSON lines (from `sala bench` and bench/peers/torch_dense.py), each with "engine" ("sala", "pytorch", ...),
"config", "context" (tokens), "ttft_s", "peak_gpu_gib" and optionally "oom" (true when that length did not fit),
"chunked" (the peer's chunked prefill: drawn with hollow markers) and "card_gib" (the card's memory: drawn as a
dashed line on the memory panel). Lines that are not JSON objects or lack engine/config/context are skipped with a
warning; when a (engine, config, context) appears more than once, the last line wins.

  python3 tools/plot_sweep.py results.jsonl [more.jsonl ...] -o sweep.png [--title "H200, bf16"]

Out-of-memory points are drawn as an X at the top of the TTFT panel and at the card's memory (or the top of the
panel) on the memory panel, in the line's colour (stacked a little below for each further series with OOMs).
"""
import argparse
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402


def load(paths):
    rows = {}
    for path in paths:
        with (sys.stdin if path == "-" else open(path)) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                    key = (str(r["engine"]), str(r["config"]), int(r["context"]))
                except (ValueError, KeyError, TypeError) as e:
                    print(f"plot_sweep: warning: {path}:{n}: skipped ({e})", file=sys.stderr)
                    continue
                rows[key] = r
    return rows


def fmt_context(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def plot(rows, out, title=None):
    series = {}
    for (engine, config, ctx), r in sorted(rows.items()):
        series.setdefault((engine, config), []).append((ctx, r))
    if not series:
        raise SystemExit("plot_sweep: error: no usable JSON lines")

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.2))
    contexts = sorted({ctx for (_, _, ctx) in rows})
    lo, hi = min(contexts), max(contexts)
    # Ticks at powers of two from 8K (or lower) to 2M (or higher), labelled 8K .. 2M.
    t_lo = 1 << int(math.floor(math.log2(min(lo, 8192))))
    t_hi = 1 << int(math.ceil(math.log2(max(hi, 2 << 20))))
    ticks = [1 << e for e in range(int(math.log2(t_lo)), int(math.log2(t_hi)) + 1)]
    engines = sorted({e for e, _ in series})
    markers = dict(zip(engines, "os^Dv<>p"))
    styles = dict(zip(engines, ["-", "--", "-.", ":"] * 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    card_gib = max((num(r.get("card_gib")) or 0 for r in rows.values()), default=0) or None
    max_ttft = max((num(r.get("ttft_s")) or 0 for r in rows.values()), default=1) or 1
    max_mem = max((num(r.get("peak_gpu_gib")) or 0 for r in rows.values()), default=1) or 1
    ttft_top = 10 ** math.ceil(math.log10(max_ttft * 1.5))
    mem_top = max(card_gib or 0, max_mem) * 1.08

    oom_rank = {}
    for i, ((engine, config), pts) in enumerate(sorted(series.items())):
        color = colors[i % len(colors)]
        label = f"{engine} {config}"
        ok = [(c, r) for c, r in pts if not r.get("oom")]
        ooms = [c for c, r in pts if r.get("oom")]
        for ax, field in ((ax_t, "ttft_s"), (ax_m, "peak_gpu_gib")):
            xy = [(c, num(r.get(field)), bool(r.get("chunked"))) for c, r in ok if num(r.get(field)) is not None]
            if xy:
                ax.plot([p[0] for p in xy], [p[1] for p in xy], color=color, linestyle=styles[engine], linewidth=1.6,
                        label=label)
                for hollow in (False, True):
                    sel = [p for p in xy if p[2] == hollow]
                    if sel:
                        ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=markers[engine], s=36, zorder=3,
                                   facecolors="white" if hollow else color, edgecolors=color, linewidths=1.4)
            elif ooms:  # a series that never ran still gets a legend entry
                ax.plot([], [], color=color, linestyle=styles[engine], label=label)
        if ooms:  # stacked per series so that OOMs at the same context stay visible
            k = oom_rank.setdefault((engine, config), len(oom_rank))
            ax_t.scatter(ooms, [ttft_top * 0.75 / 1.45 ** k] * len(ooms), marker="X", s=90, color=color, zorder=4)
            ax_m.scatter(ooms, [(card_gib or mem_top * 0.97) - k * 0.045 * mem_top] * len(ooms), marker="X", s=90,
                         color=color, zorder=4)

    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([fmt_context(t) for t in ticks])
        ax.set_xlim(t_lo / 1.3, t_hi * 1.3)
        ax.set_xlabel("context (tokens)")
        ax.grid(True, which="major", alpha=0.3)
    ax_t.set_yscale("log")
    ax_t.set_ylim(top=ttft_top)
    ax_t.set_ylabel("TTFT (s)")
    ax_t.set_title("time to first token")
    ax_m.set_ylim(0, mem_top)
    ax_m.set_ylabel("peak GPU memory (GiB)")
    ax_m.set_title("peak GPU memory")
    if card_gib:
        ax_m.axhline(card_gib, color="grey", linestyle="--", linewidth=1)
        ax_m.text(t_lo, card_gib, f" card {card_gib:.0f} GiB", va="bottom", ha="left", color="grey", fontsize=8)

    handles, labels = ax_t.get_legend_handles_labels()
    extra = []
    if any(r.get("oom") for r in rows.values()):
        extra.append(plt.Line2D([], [], marker="X", color="black", linestyle="", markersize=9, label="out of memory"))
    if any(r.get("chunked") for r in rows.values()):
        extra.append(plt.Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="",
                                label="chunked prefill"))
    ax_t.legend(handles + extra, labels + [h.get_label() for h in extra], fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Plot TTFT and peak GPU memory against context from JSON lines.")
    p.add_argument("inputs", nargs="+", help="JSON-lines files ('-' for stdin)")
    p.add_argument("-o", "--out", default="sweep.png", help="output PNG (default sweep.png)")
    p.add_argument("--title", help="figure title")
    args = p.parse_args(argv)
    plot(load(args.inputs), args.out, args.title)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
