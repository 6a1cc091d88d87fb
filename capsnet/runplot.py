"""A run's `log.png`: its losses and accuracies per epoch, drawn with Matplotlib (where it is installed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capsnet.files import written_whole


def plot_epoch_log(epochs: list[dict[str, Any]], path: Path, losses: Sequence[str], accuracies: Sequence[str]) -> None:
    """The `losses` (log scale) and `accuracies` of the epoch records that have them (a run restored from a card,
    `capsnet.tools.restore`, knows only its first epochs' validation accuracy)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, keys, title in ((loss_ax, losses, "losses"), (acc_ax, accuracies, "accuracy")):
        for key in keys:
            points = [(r["epoch"] + 1, r[key]) for r in epochs if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=key)
        ax.set(xlabel="epoch", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    loss_ax.set_yscale("log")
    fig.tight_layout()
    with written_whole(path) as partial:
        fig.savefig(partial, dpi=100)
    plt.close(fig)
