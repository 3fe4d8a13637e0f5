"""PNG plots of the mixture decision: error vs compute per top-k, and utility vs repetitions."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # driver nodes and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jobs.scaling_law import Frontier, LawParams, decayed_utility, rank_pools  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_error_vs_compute(
    front: Frontier,
    path: str | os.PathLike,
    budget: float | None = None,
    unit: str = "samples",
) -> Path:
    """One curve per top-k union, the lower envelope bold, and the chosen budget marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(front.ranked)))
    for k in range(1, len(front.ranked) + 1):
        label = f"top {k} ({front.ranked[k - 1]} added)" if k > 1 else f"top 1 ({front.ranked[0]})"
        ax.plot(front.budgets, front.errors[k - 1], color=colors[k - 1], lw=1.2, label=label)
    ax.plot(
        front.budgets,
        front.best_error,
        color="black",
        lw=2.8,
        alpha=0.45,
        label="frontier (best k)",
    )
    if budget is not None:
        ax.axvline(budget, color="crimson", ls="--", lw=1, label=f"budget {budget:,.0f}")
    ax.set_xscale("log")
    ax.set_xlabel(f"compute: {unit} seen")
    ax.set_ylabel("predicted error")
    ax.set_title("Predicted error of each top-k bucket mixture")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_decayed_utility(
    law: LawParams, path: str | os.PathLike, max_repetitions: int = 20
) -> Path:
    """b_j = b * 0.5 ** (j / tau) per bucket: how much each further pass is still worth."""
    passes = np.arange(max_repetitions + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ranked = rank_pools(law.pools)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ranked)))
    for color, name in zip(colors, ranked, strict=True):
        pool = law.pools[name]
        ax.plot(
            passes,
            -decayed_utility(pool, passes),
            marker="o",
            ms=3,
            color=color,
            label=f"{name} (b={pool.b:.3g}, tau={pool.tau:.3g})",
        )
    ax.set_xlabel("repetitions j (pass over the bucket; 0 = first pass)")
    ax.set_ylabel("utility -b_j (higher = more useful)")
    ax.set_title("Utility of each bucket decays with every repetition")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)
