#!/usr/bin/env python3
"""Plots a moe-train metrics log (JSON lines) as a PNG: the training loss
(task loss, and the objective with router losses), the router losses, the
held-out loss and exact match, and each MoE layer's share of tokens per
expert over the run (a collapsed router shows as one expert's share
approaching 1).

usage: scripts/plot-training.py LOG.jsonl [-o training.png]
"""
import argparse
import json
import math
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    steps, evals = [], []
    with open(path, encoding="utf-8") as log:
        for number, line in enumerate(log, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit("%s:%d: not JSON: %s" % (path, number, error))
            (evals if record.get("eval") else steps).append(record)
    if not steps:
        sys.exit("%s: no training steps logged" % path)
    return steps, evals


def series(records, key):
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("-o", "--output", default="training.png")
    args = parser.parse_args()
    steps, evals = read_log(args.log)

    loads = sorted({key for r in steps for key in r
                    if key.endswith("tokens_per_expert")})
    rows = 2 + math.ceil(len(loads) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(12, 3.2 * rows),
                                squeeze=False)

    ax = axes[0][0]
    task_key = "task_loss" if any("task_loss" in r for r in steps) else "loss"
    ax.plot(*series(steps, task_key), label="train task loss", lw=1)
    if task_key != "loss":
        ax.plot(*series(steps, "loss"), label="objective", lw=1, alpha=0.6)
    if evals:
        ax.plot(*series(evals, "eval_loss"), "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("loss")
    ax.legend()

    ax = axes[0][1]
    for key in ("aux_loss", "z_loss"):
        if any(key in r for r in steps):
            ax.plot(*series(steps, key), label=key, lw=1)
    ax.set_xlabel("step")
    ax.set_title("router losses (summed over layers)")
    ax.legend()

    ax = axes[1][0]
    ax.plot(*series(steps, "lr"), lw=1)
    ax.set_xlabel("step")
    ax.set_title("learning rate")
    ax2 = axes[1][1]
    if evals:
        ax2.plot(*series(evals, "exact_match"), "o-")
        ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.set_title("held-out exact match")

    for index, key in enumerate(loads):
        ax = axes[2 + index // 2][index % 2]
        points = [(r["step"], r[key]) for r in steps if key in r]
        xs = [p[0] for p in points]
        experts = len(points[0][1])
        for expert in range(experts):
            share = [p[1][expert] / max(sum(p[1]), 1) for p in points]
            ax.plot(xs, share, lw=1, label="expert %d" % expert)
        ax.axhline(1 / experts, color="gray", ls="--", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        layer = re.sub(r"\.?tokens_per_expert$", "", key) or "layer"
        ax.set_title("%s: share of tokens per expert" % layer)
        if experts <= 8:
            ax.legend(fontsize=7, ncol=2)
    for index in range(len(loads), 2 * (rows - 2)):
        axes[2 + index // 2][index % 2].axis("off")

    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
