"""The report's pictures, drawn with matplotlib (Agg, no display needed) as SVG text or PNG bytes.

* the arena plan: each arena tensor a rectangle spanning the calls it is live for (x) and the bytes
  it occupies (y); its SVG group has the id ``arena-tensor-<n>`` so tools and tests can find it;
* per layer: MACs and bytes moved (weights, activations) as bars, and, after ``tvmc run --profile``,
  the measured time of each kernel.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

from .model import ModelDescription

ARENA_TENSOR_ID = "arena-tensor-"
_KIND_COLOURS = {"intermediate": "#4C78A8", "workspace": "#F58518"}


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise RuntimeError("the report's pictures need matplotlib: pip install matplotlib") from err
    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.hashsalt"] = "microtvm-projects"  # stable ids: the same model, the same SVG
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def _render(fig, fmt: str):
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
    return buf.getvalue().decode("utf-8") if fmt == "svg" else buf.getvalue()


def arena_figure(model: ModelDescription, fmt: str = "svg"):
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    calls = max(len(model.kernels), 1)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    # A tensor of a few bytes in a large arena would be a hairline: draw it at least this tall.
    min_height = 0.012 * max(model.arena_bytes, 1)
    for n, p in enumerate(model.placements):
        rect = Rectangle((p.first_call - 0.45, p.offset), p.last_call - p.first_call + 0.9, max(p.size, min_height),
                         facecolor=_KIND_COLOURS.get(p.kind, "#54A24B"), edgecolor="black", linewidth=0.6, alpha=0.85)
        rect.set_gid(f"{ARENA_TENSOR_ID}{n}")
        ax.add_patch(rect)
        if p.size >= 0.06 * max(model.arena_bytes, 1):
            ax.text((p.first_call + p.last_call) / 2, p.offset + p.size / 2, f"{p.name}\n{p.size} B",
                    ha="center", va="center", fontsize=7, color="white")
    top = max(model.arena_bytes, 1)
    ax.axhline(model.arena_bytes, color="black", linewidth=1)
    ax.axhline(model.lower_bound_bytes, color="#E45756", linewidth=1, linestyle="--")
    ax.set_xlim(-0.7, calls - 0.3)
    ax.set_ylim(0, top * 1.12)
    ax.set_xticks(range(calls))
    ax.set_xticklabels([f"{k.index}\n{_short(k.op)}" for k in model.kernels], fontsize=7)
    ax.set_xlabel("kernel call (tensor live from its first to its last call)")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(f"Arena plan of '{model.name}': {model.arena_bytes} B "
                 f"(liveness lower bound {model.lower_bound_bytes} B)", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items()]
              + [plt.Line2D([], [], color="black", label="arena size"),
                 plt.Line2D([], [], color="#E45756", linestyle="--", label="lower bound")],
              fontsize=7, loc="upper right", ncol=4)
    return _render(fig, fmt)


def _short(op: str) -> str:
    return (op.replace("depthwise_conv2d", "dw_conv").replace("fully_connected", "fc")
            .replace("average_pool2d", "avg_pool").replace("max_pool2d", "max_pool"))[:14]


def layers_figure(model: ModelDescription, fmt: str = "svg", kernel_seconds: Optional[Sequence[float]] = None):
    plt = _pyplot()
    rows = 3 if kernel_seconds is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.3 * rows), sharex=True)
    x = [k.index for k in model.kernels]
    axes[0].bar(x, [k.macs for k in model.kernels], color="#4C78A8")
    axes[0].set_ylabel("MACs")
    axes[0].set_title(f"Per layer of '{model.name}': {model.total_macs:,} MACs", fontsize=10)
    weights = [k.weight_bytes for k in model.kernels]
    activations = [k.activation_bytes for k in model.kernels]
    axes[1].bar(x, weights, color="#F58518", label="weights read")
    axes[1].bar(x, activations, bottom=weights, color="#72B7B2", label="activations read + written")
    axes[1].set_ylabel("bytes")
    axes[1].legend(fontsize=7)
    if kernel_seconds is not None:
        axes[2].bar(x, [s * 1e3 for s in kernel_seconds], color="#E45756")
        axes[2].set_ylabel("ms on device")
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels([f"{k.index}\n{_short(k.op)}" for k in model.kernels], fontsize=7)
    axes[-1].set_xlabel("kernel call")
    fig.tight_layout()
    return _render(fig, fmt)
