"""The Train page's inputs for training parameters, made from their one definition (`capsnet.config.Param`):
the same label, bounds, default and help as the CLI's flags, so the form cannot launch a run the trainer refuses."""

from __future__ import annotations

import math
from typing import Any

from capsnet.config import train_parameters
from capsnet.explorer import state


def sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def parameter_input(container: Any, name: str) -> Any:
    """An input for training parameter `name` in `container` (a column, the sidebar), under `state.TRAIN_FORM`;
    returns the value to launch with (None for a parameter left unset: a subset of 0 means all images)."""
    spec, default = train_parameters()[name]
    key, help = state.TRAIN_FORM + name, sentence(spec.help)
    if spec.switch:
        return container.checkbox(spec.label, default, key=key, help=help)
    if spec.choices:
        return container.selectbox(spec.label, spec.choices, index=spec.choices.index(default), key=key, help=help)
    if spec.integer:
        low = 0 if spec.unset else int(spec.low)  # 0 stands for "unset" where a parameter may be
        label = f"{spec.label} (0 = {spec.unset})" if spec.unset else spec.label
        value = container.number_input(label, low, None if spec.high is None else int(spec.high), default or low,
                                       step=int(spec.step or 1), key=key, help=help)
        return value or None if spec.unset else value
    decimals = 1 - math.floor(math.log10(spec.step)) if spec.step else 2
    return container.number_input(spec.label, float(spec.low), float(spec.high), float(default), step=spec.step,
                                  format=f"%.{decimals}f", key=key, help=help)
