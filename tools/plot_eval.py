#!/usr/bin/env python3
"""Draws one heatmap per task from `sala eval`'s heatmap.tsv: context length across, needle depth down, the mean
score (0-100, RULER's string match) in each cell, red to green. Tasks without a depth grid (multi-value,
multi-query, vt, cwe, fwe) get one row.

Input: heatmap.tsv (tab-separated, a header line "task length depth score samples"; depth "-" for tasks without
depths), as `sala eval --out DIR` writes it. Output: DIR/heatmap_<task>.png for every task in the file.

  python3 tools/plot_eval.py results/heatmap.tsv -o results [--title "sala-tiny, cpu"]
"""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fmt_len(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


def load(path):
    cells = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter="\t"), 2):
            try:
                depth = None if row["depth"] == "-" else float(row["depth"])
                key = (row["task"], int(row["length"]), depth)
                cells[key] = (float(row["score"]), int(row["samples"]))
            except (KeyError, ValueError, TypeError) as e:
                print(f"plot_eval: warning: {path}:{n}: skipped ({e})", file=sys.stderr)
    return cells


def plot_task(task, cells, out, title):
    lengths = sorted({k[1] for k in cells})
    depths = sorted({k[2] for k in cells if k[2] is not None})
    rows = depths if depths else [None]
    grid = [[cells.get((task, L, d), (float("nan"), 0))[0] for L in lengths] for d in rows]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.0 + 0.45 * len(rows)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(lengths)), [fmt_len(L) for L in lengths])
    ax.set_yticks(range(len(rows)), [f"{d:g}%" if d is not None else "all" for d in rows])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth" if depths else "")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v == v:  # not NaN
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"{task}" + (f" ({title})" if title else ""), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tsv")
    ap.add_argument("-o", "--out", default=".", help="output folder")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    cells = load(a.tsv)
    tasks = []
    for k in cells:
        if k[0] not in tasks:
            tasks.append(k[0])
    os.makedirs(a.out, exist_ok=True)
    for t in tasks:
        sub = {k: v for k, v in cells.items() if k[0] == t}
        path = os.path.join(a.out, f"heatmap_{t}.png")
        plot_task(t, sub, path, a.title)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
