"""What the Train page shows, computed from run directories: progress, the runs table and Plotly curves. Pure
functions of files, so the page stays a thin layout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from capsnet.precision import Precision
from capsnet.rundir import ACCURACIES, ACTIVE_STATES, LOSSES, RunDir

# Streamlit markdown colours per state (plain words in tables: emoji need fonts a headless browser may lack).
STATE_COLORS = {"queued": "gray", "running": "blue", "stopping": "orange", "finished": "green", "stopped": "orange",
                "failed": "red", "interrupted": "red", "missing": "gray"}
DASHES = ("solid", "dash", "dot", "dashdot")


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# --- progress -------------------------------------------------------------------------------------------------

@dataclass
class Progress:
    fraction: float  # of all steps of all epochs, in [0, 1]
    epoch: int  # 1-based, for people
    epochs: int
    step: int
    steps_per_epoch: int | None
    samples_per_sec: float | None
    eta_seconds: float | None

    @property
    def text(self) -> str:
        parts = [f"epoch {self.epoch}/{self.epochs}",
                 f"step {self.step}/{self.steps_per_epoch}" if self.steps_per_epoch else f"step {self.step}"]
        if self.samples_per_sec:
            parts.append(f"{self.samples_per_sec:,.0f} samples/s")
        if self.eta_seconds is not None:
            parts.append(f"ETA {format_seconds(self.eta_seconds)}")
        return " · ".join(parts)


def progress(status: dict[str, Any], config: dict[str, Any]) -> Progress:
    """Where a run stands, from status.json (epoch, step, steps/epoch, samples/s) and its config (epochs, batch)."""
    epochs = int(config.get("epochs") or 1)
    epoch = int(status.get("epoch") or 0)
    step = int(status.get("step") or 0)
    per_epoch = status.get("steps_per_epoch")
    speed = status.get("samples_per_sec")
    if status.get("state") == "finished":
        return Progress(1.0, epochs, epochs, per_epoch or step, per_epoch, None, None)
    if status.get("state") not in ACTIVE_STATES:  # stopped or dead: no speed, no ETA
        speed = None
    if not per_epoch:
        return Progress(0.0, epoch + 1, epochs, step, None, speed, None)
    done = epoch * per_epoch + step
    total = epochs * per_epoch
    eta = (total - done) * int(config.get("batch_size") or 1) / speed if speed else None
    return Progress(min(done / total, 1.0), epoch + 1, epochs, step, per_epoch, speed, eta)


# --- the runs table -------------------------------------------------------------------------------------------

def config_summary(config: dict[str, Any]) -> str:
    if not config:
        return ""
    parts = [config.get("dataset", "?"), f"batch {config.get('batch_size')}", f"lr {config.get('lr')}",
             f"decay {config.get('lr_decay')}", f"λ {config.get('lam_recon')}",
             f"routings {config.get('model', {}).get('routings')}", f"shift {config.get('shift_fraction')}"]
    parts += [f"from epoch {c['epoch'] + 1}: lr {c['lr']:.3g}, decay {c['lr_decay']}"
              for c in config.get("lr_changes", [])]
    if config.get("subset"):
        parts.append(f"subset {config['subset']}")
    return " · ".join(parts)


def run_row(run: RunDir, now: float | None = None) -> dict[str, Any]:
    status, config = run.read_status(), run.read_config()
    epochs = run.epoch_records()
    val = [r["val_accuracy"] for r in epochs if r.get("val_accuracy") is not None]
    state = status.get("state", "missing")
    started = status.get("started") or status.get("launched")
    end = (now or time.time()) if state in ACTIVE_STATES else status.get("updated")
    return {
        "run": run.name,
        "state": state,
        "epochs": f"{len(epochs)}/{config.get('epochs', '?')}",
        "best val acc": max(val) if val else float("nan"),
        "wall time": format_seconds(end - started) if started and end else "–",
        "device": status.get("device") or ", ".join(status.get("devices", [])).upper(),
        "precision": describe_precision(status.get("precision") or config.get("precision_used"),
                                        config.get("precision")),
        "config": config_summary(config),
        "message": status.get("message") or "",
    }


def describe_precision(used: dict | None, requested: str | None) -> str:
    """'auto → float32: this CPU has no native bfloat16' from what the trainer recorded; what was asked for while
    it has not started (runs of earlier versions recorded only that)."""
    if isinstance(used, dict):
        try:
            return Precision(**used).describe()
        except TypeError:
            pass
    return requested or ""


def runs_table(runs: list[RunDir]) -> pd.DataFrame:
    columns = ["run", "state", "epochs", "best val acc", "wall time", "device", "precision", "config", "message"]
    return pd.DataFrame([run_row(run) for run in runs], columns=columns)


# --- curves ---------------------------------------------------------------------------------------------------

def _style(run_index: int, series_index: int, overlay: bool) -> dict[str, Any]:
    """One run: a colour per series. Several runs: a colour per run, a dash per series."""
    palette = qualitative.Plotly
    if overlay:
        return {"color": palette[run_index % len(palette)], "dash": DASHES[series_index % len(DASHES)]}
    return {"color": palette[series_index % len(palette)], "dash": "solid"}


def _figure(title: str, x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font_size=10),
                      xaxis_title=x_title, yaxis_title=y_title, hovermode="x unified")
    return fig


def curve_figures(runs: list[RunDir]) -> dict[str, go.Figure]:
    """Loss per step, losses per epoch (train solid, validation dashed when alone), accuracy per epoch and
    learning rate per step, for one run or overlaid for several."""
    overlay = len(runs) > 1
    figs = {
        "step_loss": _figure("Loss per step (running mean over the epoch)", "step", "loss"),
        "epoch_loss": _figure("Loss per epoch", "epoch", "loss"),
        "accuracy": _figure("Accuracy per epoch", "epoch", "accuracy"),
        "lr": _figure("Learning rate", "step", "lr"),
    }
    last_epoch, last_step = 1, 1
    for i, run in enumerate(runs):
        records = run.read_metrics()
        steps = [r for r in records if r.get("kind") == "step"]
        epochs = [r for r in records if r.get("kind") == "epoch"]
        prefix = f"{run.name} · " if overlay else ""
        x_steps = [r.get("global_step") for r in steps]
        x_epochs = [r["epoch"] + 1 for r in epochs]
        for j, (key, label) in enumerate(LOSSES.items()):
            line = _style(i, j, overlay)
            figs["step_loss"].add_scatter(x=x_steps, y=[r.get(key) for r in steps], name=prefix + label,
                                          mode="lines+markers", marker_size=4, line=line)
            figs["epoch_loss"].add_scatter(x=x_epochs, y=[r.get(key) for r in epochs], name=f"{prefix}{label}",
                                           mode="lines+markers", line=line)
            if not overlay:  # validation curves would double an overlay's clutter; accuracy shows val per run
                figs["epoch_loss"].add_scatter(x=x_epochs, y=[r.get(f"val_{key}") for r in epochs],
                                               name=f"val {label}", mode="lines+markers",
                                               line={**line, "dash": "dash"})
        for j, (key, label) in enumerate(ACCURACIES.items()):
            line = _style(i, j, overlay)
            figs["accuracy"].add_scatter(x=x_epochs, y=[r.get(key) for r in epochs], name=prefix + label,
                                         mode="lines+markers", line=line)
        figs["lr"].add_scatter(x=x_steps, y=[r.get("lr") for r in steps], name=prefix + "lr",
                               mode="lines+markers", marker_size=4, line=_style(i, 0, overlay))
        last_epoch = max(last_epoch, len(epochs))
        last_step = max(last_step, max(x_steps, default=1))
    # Whole epochs and steps only, at most ~10 ticks; a constant learning rate drawn from zero, not centred.
    for key, last in (("epoch_loss", last_epoch), ("accuracy", last_epoch), ("step_loss", last_step),
                      ("lr", last_step)):
        figs[key].update_xaxes(tick0=1 if "epoch" in key or key == "accuracy" else 0,
                               dtick=max(1, round(last / 10)))
        if not any(len(trace.x or ()) for trace in figs[key].data):
            figs[key].add_annotation(text="no records yet", showarrow=False, x=0.5, y=0.5, xref="paper",
                                     yref="paper", font=dict(color="gray"))
    figs["lr"].update_yaxes(rangemode="tozero", exponentformat="e")
    return figs
