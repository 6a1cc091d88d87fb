"""The explorer's Plotly figures: capsule lengths, routing couplings and the confusion matrix."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def lengths_figure(lengths: np.ndarray, highlight: int | None = None) -> go.Figure:
    """All capsule lengths as bars: the network's confidence in each class (lengths are in [0, 1])."""
    colors = ["#ff4b4b" if digit == highlight else "#7aa6d6" for digit in range(len(lengths))]
    figure = go.Figure(go.Bar(x=[str(d) for d in range(len(lengths))], y=lengths, marker_color=colors,
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


def confusion_figure(confusion: list[list[int]]) -> go.Figure:
    matrix = np.asarray(confusion)
    figure = go.Figure(go.Heatmap(z=matrix, x=[str(d) for d in range(len(matrix))],
                                  y=[str(d) for d in range(len(matrix))], colorscale="Blues", showscale=False,
                                  text=matrix, texttemplate="%{text}",
                                  hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix",
                         xaxis=dict(title="predicted", type="category"),
                         yaxis=dict(title="true", type="category", autorange="reversed"))
    return figure
