"""The Attack page's Plotly figures: class scores before and after an attack, and the attack curves over epsilon."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from capsnet.explorer.figures import labels_of

BEFORE, AFTER = "#7aa6d6", "#ff4b4b"
MODEL_COLOURS = ["#ff4b4b", "#1f77b4", "#2ca02c", "#9467bd"]
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD"}


def before_after_figure(before: np.ndarray, after: np.ndarray, classes: tuple[str, ...] | None = None,
                        title: str = "Capsule lengths") -> go.Figure:
    """One bar pair per class: the score on the digit (before) and on its adversarial version (after), in [0, 1]."""
    names = labels_of(classes, len(before))
    figure = go.Figure([  # plain lists: the numbers stay readable in the figure's JSON
        go.Bar(x=names, y=np.asarray(before, float).tolist(), name="original", marker_color=BEFORE,
               hovertemplate="%{x}, original: %{y:.3f}<extra></extra>"),
        go.Bar(x=names, y=np.asarray(after, float).tolist(), name="adversarial", marker_color=AFTER,
               hovertemplate="%{x}, adversarial: %{y:.3f}<extra></extra>"),
    ])
    figure.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title=title, barmode="group",
                         yaxis=dict(range=[0, 1]), xaxis=dict(title="class", type="category"),
                         legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return figure


def attack_curves_figure(curves: dict[str, dict]) -> go.Figure:
    """`curves` = {model label: capsnet.attack.attack_sweeps(...)}: attack success rate against epsilon for each model
    and attack; for the models with a reconstruction, also the share of successful attacks flagged (with the clean
    digits' share, 5% by construction, and as crosses the share of the attacks that failed) and the detector's ROC
    AUC (0.5 is chance)."""
    from plotly.subplots import make_subplots

    detecting = {label: c for label, c in curves.items() if c.get("detection")}
    titles = ["Attack success rate"] + (["Successful attacks flagged", "ROC AUC of the distance"] if detecting else [])
    figure = make_subplots(rows=1, cols=len(titles), horizontal_spacing=0.06, subplot_titles=titles)
    for m, (label, curve) in enumerate(curves.items()):
        colour = MODEL_COLOURS[m % len(MODEL_COLOURS)]
        for a, (method, result) in enumerate(curve["attacks"].items()):
            name = f"{label}: {ATTACK_NAMES.get(method, method)}"
            style = dict(color=colour, dash="solid" if a == 0 else "dash")
            panels = [("success_rate", 1)] + ([("flagged", 2), ("auc", 3)] if label in detecting else [])
            for key, column in panels:
                figure.add_trace(go.Scatter(
                    x=curve["epsilons"], y=result[key], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=column == 1, line=style, connectgaps=False,
                    hovertemplate=f"{name}<br>ε %{{x:g}}: %{{y:.3f}}<extra></extra>"), 1, column)
            if label in detecting and "flagged_failed" in result:
                # The perturbation alone moves an input away from its reconstruction: the digits the attack did not
                # turn are flagged too, more as epsilon grows. Without these marks the detector looks better than it is.
                figure.add_trace(go.Scatter(
                    x=curve["epsilons"], y=result["flagged_failed"], mode="markers", name=f"{name}, failed",
                    legendgroup=name, showlegend=False, marker=dict(color=colour, symbol="x-thin", size=9,
                                                                    line=dict(width=2, color=colour)),
                    hovertemplate=f"{name}: failed attacks flagged<br>ε %{{x:g}}: %{{y:.3f}}<extra></extra>"), 1, 2)
        if label in detecting:
            figure.add_hline(y=curve["detection"]["clean_flagged"], line_dash="dot", line_color=colour, row=1, col=2,
                             annotation_text="clean digits flagged", annotation_position="top left")
    if detecting:
        figure.add_hline(y=0.5, line_dash="dot", line_color="gray", row=1, col=3, annotation_text="chance",
                         annotation_position="bottom right")
    for column in range(1, len(titles) + 1):
        figure.update_xaxes(title_text="ε (L∞)", row=1, col=column)
        figure.update_yaxes(range=[0, 1.02], tickformat=".0%" if column < 3 else ".1f", row=1, col=column)
    figure.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return figure


def curves_table(curves: dict[str, dict]) -> list[dict]:
    """The curves as rows (model, attack, epsilon, success rate, flagged, AUC) for a table under the figure."""
    rows = []
    for label, curve in curves.items():
        for method, result in curve["attacks"].items():
            for i, epsilon in enumerate(curve["epsilons"]):
                rows.append({"model": label, "attack": ATTACK_NAMES.get(method, method), "ε": epsilon,
                             "success rate": result["success_rate"][i],
                             "flagged": result["flagged"][i] if "flagged" in result else None,
                             "failed, flagged": result["flagged_failed"][i] if "flagged_failed" in result else None,
                             "ROC AUC": result["auc"][i] if "auc" in result else None})
    return rows
