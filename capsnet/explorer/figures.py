"""The explorer's Plotly figures: capsule lengths, routing couplings and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def labels_of(classes: tuple[str, ...] | None, count: int) -> list[str]:
    """Axis labels: the class names, or the class numbers."""
    return list(classes) if classes else [str(c) for c in range(count)]


def lengths_figure(lengths: np.ndarray, highlight: int | Sequence[int] | None = None,
                   classes: tuple[str, ...] | None = None, colors: Sequence[str] = ("#ff4b4b",)) -> go.Figure:
    """All capsule lengths as bars, one per class (named by `classes`): the network's confidence in each class
    (lengths are in [0, 1]). The `highlight` classes take `colors`, in order (the Overlap page colours each of its
    two digits as its reconstruction)."""
    marked = [] if highlight is None else np.atleast_1d(highlight).tolist()
    colour_of = {int(c): colors[i % len(colors)] for i, c in enumerate(marked)}
    colors = [colour_of.get(digit, "#7aa6d6") for digit in range(len(lengths))]
    figure = go.Figure(go.Bar(x=labels_of(classes, len(lengths)), y=lengths, marker_color=colors,
                              hovertemplate="capsule %{x}: length %{y:.3f}<extra></extra>"))
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Capsule lengths",
                         yaxis=dict(range=[0, 1]), xaxis=dict(title="class", type="category"))
    return figure


def coupling_figure(coupling: np.ndarray, title: str, zmin: float = 0.0, zmax: float = 1.0) -> go.Figure:
    """One routing round's [6, 6] mean coupling to the winning capsule, as a heatmap laid out like the image (row 0 at
    the top). Give every round the same `zmin`/`zmax` so that rounds can be compared by eye; mean couplings stay close
    to 0.1, so a scale from 0 to 1 would show every round as one flat colour."""
    rows, cols = coupling.shape
    figure = go.Figure(go.Heatmap(z=coupling, x=list(range(cols)), y=list(range(rows)), colorscale="Blues",
                                  zmin=zmin, zmax=max(zmax, zmin + 1e-3), showscale=False, texttemplate="%{z:.2f}",
                                  hovertemplate="row %{y}, column %{x}: mean coupling %{z:.3f}<extra></extra>"))
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title=title,
                         xaxis=dict(visible=False), yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))
    return figure


def confusion_figure(confusion: list[list[int]], classes: tuple[str, ...] | None = None) -> go.Figure:
    matrix = np.asarray(confusion)
    names = labels_of(classes, len(matrix))
    figure = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", showscale=False,
                                  text=matrix, texttemplate="%{text}",
                                  hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix",
                         xaxis=dict(title="predicted", type="category"),
                         yaxis=dict(title="true", type="category", autorange="reversed"))
    return figure


# --- the Routing page -----------------------------------------------------------------------------------------------

def class_couplings_figure(maps: np.ndarray, highlight: int, zmax: float,
                           classes: tuple[str, ...] | None = None) -> go.Figure:
    """One round's coupling to every class capsule, [classes, 6, 6] (mean over capsule types), side by side on one
    colour scale from 0 to `zmax`: where each class draws its input from."""
    count, rows, cols = maps.shape
    gap = np.full((rows, 1), np.nan)
    z = np.concatenate([part for c in range(count) for part in ((maps[c], gap) if c < count - 1 else (maps[c],))],
                       axis=1)
    figure = go.Figure(go.Heatmap(z=z, colorscale="Blues", zmin=0.0, zmax=zmax, hoverongaps=False,
                                  colorbar=dict(title="coupling", thickness=10),
                                  hovertemplate="row %{y}: mean coupling %{z:.3f}<extra></extra>"))
    ticks = [c * (cols + 1) + (cols - 1) / 2 for c in range(count)]
    names = labels_of(classes, count)
    figure.update_layout(height=200, margin=dict(l=10, r=10, t=10, b=30),
                         xaxis=dict(tickvals=ticks, ticktext=[f"<b>{n}</b>" if c == highlight else n
                                                              for c, n in enumerate(names)], showgrid=False),
                         yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))
    return figure


def rounds_figure(lengths: np.ndarray, current: int, highlight: int,
                  classes: tuple[str, ...] | None = None) -> go.Figure:
    """Every class capsule's length after each routing round, [routings, classes]: agreement sharpening the decision."""
    rounds = np.arange(1, len(lengths) + 1)
    figure = go.Figure()
    for c, name in enumerate(labels_of(classes, lengths.shape[1])):
        figure.add_trace(go.Scatter(x=rounds, y=lengths[:, c], mode="lines+markers", name=name,
                                    line=dict(width=4 if c == highlight else 1.5,
                                              color="#ff4b4b" if c == highlight else "#9bb7d4"),
                                    hovertemplate=f"capsule {name}, round %{{x}}: length %{{y:.3f}}<extra></extra>"))
    figure.add_vline(x=current, line_dash="dot", line_color="gray")
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Capsule lengths, round by round",
                         showlegend=False, yaxis=dict(range=[0, 1], title="length"),
                         xaxis=dict(title="routing round", tickvals=list(rounds)))
    return figure


def votes_figure(points: np.ndarray, agreed: np.ndarray, couplings: np.ndarray, digit: int,
                 name: str | None = None) -> go.Figure:
    """The primary capsules' votes for capsule `digit` on their first two principal components, each sized and
    coloured by its coupling in the chosen round, and the coupling-weighted mean routing settles on. `name`: the
    class's name, if not its number."""
    name = name or str(digit)
    scale = couplings / max(float(couplings.max()), 1e-9)
    figure = go.Figure(go.Scattergl(
        x=points[:, 0], y=points[:, 1], mode="markers", name="votes",
        marker=dict(size=3 + 12 * scale, color=couplings, colorscale="Blues", showscale=True,
                    colorbar=dict(title="coupling", thickness=10), line=dict(width=0)),
        customdata=couplings, hovertemplate="coupling %{customdata:.3f}<extra></extra>"))
    figure.add_trace(go.Scatter(x=[agreed[0]], y=[agreed[1]], mode="markers", name=f"capsule {name}",
                                marker=dict(symbol="x", size=16, color="#ff4b4b", line=dict(width=2)),
                                hovertemplate=f"capsule {name}: the coupling-weighted mean vote<extra></extra>"))
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                         title=f"Votes for capsule {name} (principal components 1 and 2)",
                         xaxis=dict(title="PC 1", zeroline=False), yaxis=dict(title="PC 2", zeroline=False))
    return figure


# --- the Robustness page --------------------------------------------------------------------------------------------

def sweeps_figure(sweeps: dict[str, dict[str, dict]]) -> go.Figure:
    """Test accuracy against each transformation: `sweeps` = {model label: capsnet.affine.accuracy_sweeps(...)},
    one panel per transformation, one line per model."""
    from plotly.subplots import make_subplots

    names = list(next(iter(sweeps.values())))
    figure = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.03,
                           subplot_titles=[name.capitalize() for name in names])
    colours = ["#ff4b4b", "#1f77b4", "#2ca02c", "#9467bd"]
    for m, (label, sweep) in enumerate(sweeps.items()):
        for c, name in enumerate(names):
            unit = sweep[name]["unit"]
            figure.add_trace(go.Scatter(
                x=sweep[name]["values"], y=sweep[name]["accuracy"], mode="lines+markers", name=label,
                legendgroup=label, showlegend=c == 0, line=dict(color=colours[m % len(colours)]),
                hovertemplate=f"{label}<br>{name} %{{x:g}} {unit}: accuracy %{{y:.1%}}<extra></extra>"), 1, c + 1)
            figure.update_xaxes(title_text=unit, row=1, col=c + 1)
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1, title_text="test accuracy")
    figure.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10),
                         legend=dict(orientation="h", y=-0.25))
    return figure
