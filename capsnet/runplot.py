"""A run's `log.png`: its losses and accuracies per epoch, drawn with Matplotlib (where it is installed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capsnet.files import written_whole


def plot_epoch_log(epochs: list[dict[str, Any]], path: Path, losses: Sequence[str], accuracies: Sequence[str]) -> None:
    """The `losses` (log scale) and `accuracies` of each epoch record, as far as every record has them."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    x = [r["epoch"] + 1 for r in epochs]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key in losses:
        if all(key in r for r in epochs):
            loss_ax.plot(x, [r[key] for r in epochs], label=key)
    loss_ax.set(xlabel="epoch", title="losses", yscale="log")
    loss_ax.legend()
    for key in accuracies:
        if all(key in r for r in epochs):
            acc_ax.plot(x, [r[key] for r in epochs], label=key)
    acc_ax.set(xlabel="epoch", title="accuracy")
    acc_ax.legend()
    fig.tight_layout()
    with written_whole(path) as partial:
        fig.savefig(partial, dpi=100)
    plt.close(fig)
