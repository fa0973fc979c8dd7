"""Architecture plots: the operator table and the path/width diagram of derived networks.

Replaces ``plot_op`` and ``plot_path_width`` of the original tools/utils/darts_utils.py (same figures: a
"Stage / Operator / Scale / #Channel_out" table per branch, and the scale of every layer per branch with the
widths annotated). Unlike the original, the caller's path lists are not extended in place.
"""
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402

from tools.utils.fileio import atomic_write  # noqa: E402
from tools.ops.primitives import PRIMITIVES  # noqa: E402

SCALE_NAMES = {0: "1/8", 1: "1/16", 2: "1/32"}
BRANCH_STYLES = {2: ("1/32", 2.5, "#000000", "-"), 1: ("1/16", 1.8, "#313131", "--"), 0: ("1/8", 1.2, "#5a5858", "-.")}


def op_table_rows(ops, path, widths=(), head_width=None, F_base=12):
    """Rows [stage, operator, scale, #channel_out] as the original ``plot_op`` lists them."""
    if widths and len(widths) != len(ops) - 1:
        raise ValueError(f"plot_op: {len(widths)} widths for {len(ops)} ops; expected len(ops) - 1.")
    rows = []
    for idx, op in enumerate(ops):
        scale = path[idx]
        base = F_base * 2 ** (scale + 3)
        if widths:
            channels = int(base * (widths[idx] if idx < len(widths) else head_width))
        else:
            channels = base
        rows.append([idx + 1, PRIMITIVES[op], SCALE_NAMES[scale], channels])
    return rows


def plot_op(ops, path, width=(), head_width=None, F_base=12):
    """The operator table of one branch as a matplotlib figure."""
    rows = op_table_rows(ops, path, list(width), head_width, F_base)
    fig = plt.figure(figsize=(3, 3))
    ax = fig.add_subplot(111, frame_on=False)
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)
    table = ax.table(cellText=rows, colWidths=[0.22, 0.6, 0.25, 0.5],
                     colLabels=["Stage", "Operator", "Scale", "#Channel_out"], cellLoc="center", loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(20)
    table.scale(2, 2)
    return fig


def plot_path_width(lasts, paths, widths):
    """Scale per layer of each branch (one line per ``last``) with the width of each cell annotated."""
    if not paths or len(paths) != len(widths) or len(paths) != len(lasts):
        raise ValueError("plot_path_width needs one path and one width list per entry of lasts.")
    x_len = max(len(p) + (p[-1] != last) for p, last in zip(paths, lasts))
    fig, ax = plt.subplots(figsize=(max(x_len, 2), 3))
    annotations = {}  # (layer, scale, width, down) -> position: a cell shared by branches is labelled once
    branches = []
    for offset, (last, path, width) in enumerate(zip(lasts, paths, widths)):
        path = list(path) + ([last] if path[-1] != last else [])
        if len(path) != len(width) + 1:
            raise ValueError(f"branch ending at scale {last}: path has {len(path)} nodes but {len(width)} widths.")
        branches.append((offset, last, path, width))
    for offset, last, path, width in branches:
        label, lw, color, style = BRANCH_STYLES[last]
        ax.plot(range(len(path)), [2 - s - 0.07 * offset for s in path], label=label, lw=lw, color=color,
                linestyle=style)
    for offset, last, path, width in reversed(branches):
        for idx, value in enumerate(width):
            down = path[idx + 1] - path[idx]
            y = 2 - path[idx] - 0.07 * offset + 0.05 - down / 1.7
            annotations[(idx, path[idx], value, down)] = ((0.35 + idx, y), value)
    for position, value in annotations.values():
        ax.annotate("%.2f" % value, position, fontsize=12, color="red")
    ax.set_xticks(range(x_len))
    ax.set_xticklabels([str(i + 1) for i in range(x_len)], fontsize=14)
    ax.set_yticks([0, 1, 2])
    ax.set_yticklabels(["1/32", "1/16", "1/8"], fontsize=14)
    ax.set_ylim([-0.4, 2.5])
    ax.set_ylabel("Scale", fontsize=17)
    ax.set_xlabel("Layer", fontsize=17)
    fig.tight_layout()
    ax.legend(prop={"size": 14}, loc=3)
    return fig


def save_arch_plots(genotype, arch_idx, folder, F_base=12, head_width=None, with_widths=True):
    """train.py's figures of one derived network (a Genotype with lasts): ``ops_{arch_idx}_{last}.png`` per chosen
    branch (with the widths when ``with_widths``), ``path_width{arch_idx}.png`` (the chosen branches) and
    ``path_width_all{arch_idx}.png`` (all three); returns the paths written."""
    written = []
    for last in genotype.lasts:
        fig = plot_op(genotype.ops[last], genotype.paths[last], width=genotype.widths[last] if with_widths else (),
                      head_width=head_width, F_base=F_base)
        written.append(save_figure(fig, os.path.join(folder, f"ops_{arch_idx}_{last}.png")))
    for name, lasts in ((f"path_width{arch_idx}.png", genotype.lasts), (f"path_width_all{arch_idx}.png", (2, 1, 0))):
        fig = plot_path_width(list(lasts), [genotype.paths[k] for k in lasts], [genotype.widths[k] for k in lasts])
        written.append(save_figure(fig, os.path.join(folder, name)))
    return written


def plot_confusion(hist, names, title=""):
    """The confusion matrix (rows: ground truth, columns: prediction) normalised per row, with class names."""
    hist = np.asarray(hist, np.float64)
    rows = hist.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, hist / rows, 0.0)
    size = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90)
    ax.set_yticklabels(names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"confusion matrix (share of each true class){': ' + title if title else ''}")
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                if share[i, j] >= 0.01:
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def save_figure(fig, path):
    """Save a figure as PNG (atomically) and free it (figures are created in loops over branches/architectures)."""
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
