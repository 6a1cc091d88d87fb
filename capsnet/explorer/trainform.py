"""The Train page's inputs for training parameters, made from their one definition (`capsnet.config.Param`):
the same label, bounds, default and help as the CLI's flags, so the form cannot launch a run the trainer refuses."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from capsnet.config import TrainConfig, train_parameters
from capsnet.explorer import state
from capsnet.variants import BY_NAME


def sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def parameter_input(container: Any, name: str) -> Any:
    """An input for training parameter `name` in `container` (a column, the sidebar), under `state.TRAIN_FORM`;
    returns the value to launch with (None for a parameter left unset: a subset of 0 means all images).
    The default goes into the session state, not into the widget: a preset (`apply_preset`) then sets values the
    same way, and Streamlit never sees a widget with two sources of its value."""
    spec, default = train_parameters()[name]
    key, help = state.TRAIN_FORM + name, sentence(spec.help)
    if spec.switch:
        st.session_state.setdefault(key, default)
        return container.checkbox(spec.label, key=key, help=help)
    if spec.choices:
        st.session_state.setdefault(key, default)
        return container.selectbox(spec.label, spec.choices, key=key, help=help)
    if spec.integer:
        low = 0 if spec.unset else int(spec.low)  # 0 stands for "unset" where a parameter may be
        st.session_state.setdefault(key, default or low)
        label = f"{spec.label} (0 = {spec.unset})" if spec.unset else spec.label
        value = container.number_input(label, low, None if spec.high is None else int(spec.high),
                                       step=int(spec.step or 1), key=key, help=help)
        return value or None if spec.unset else value
    st.session_state.setdefault(key, float(default or 0))
    decimals = 1 - math.floor(math.log10(spec.step)) if spec.step else 2
    label = f"{spec.label} (0 = {spec.unset})" if spec.unset else spec.label
    value = container.number_input(label, 0.0 if spec.unset else float(spec.low), float(spec.high), step=spec.step,
                                   format=f"%.{decimals}f", key=key, help=help)
    return value or None if spec.unset else value


def preset_label(name: str) -> str:
    if not name:
        return "None: the CLI's defaults, or your own"
    variant = BY_NAME[name]
    return f"{variant.title}: {variant.flags}"


def apply_preset() -> None:
    """Fill the form with the chosen variant's flags (the preset selectbox's callback: it runs before the form is
    drawn again, so the form's inputs show the new values). The other fields keep what they hold."""
    name = st.session_state.get(state.TRAIN_PRESET)
    if not name:
        return
    variant = BY_NAME[name]
    for parameter, value in variant.parameters.items():
        st.session_state[state.TRAIN_FORM + parameter] = value
    st.session_state[state.TRAIN_FORM + "label"] = variant.name


def preset_input(container: Any) -> None:
    """The preset chooser, above the form (a form's own inputs cannot act before it is submitted)."""
    container.selectbox("Preset", ["", *BY_NAME], format_func=preset_label, key=state.TRAIN_PRESET,
                        on_change=apply_preset,
                        help="The four variants of the paper's and CapsNet-Keras' results table: 1 or 3 routing "
                             "iterations, with or without the reconstruction loss (lam_recon 0). Choosing one fills "
                             "Routings, lam_recon and the label; everything else stays as it is.")


def continue_inputs(run_name: str, config: TrainConfig, resumes_in: int) -> dict[str, Any]:
    """Epochs, learning rate and decay for resuming a run (`launch.resume`), in three columns, starting from what
    the run would do anyway; returns the values the user changed, by name."""
    schedule = {"epochs": config.epochs, "lr": config.learning_rate(resumes_in),
                "lr_decay": config.schedule_at(resumes_in)["lr_decay"]}
    labels = {"epochs": "Epochs in all", "lr": f"Learning rate at epoch {resumes_in + 1}",
              "lr_decay": "LR decay per epoch from there"}
    parameters, chosen = train_parameters(), {}
    for column, (name, current) in zip(st.columns(3), schedule.items(), strict=True):
        spec = parameters[name][0]
        key = f"{state.TRAIN_CONTINUE}{run_name}.{name}"
        st.session_state.setdefault(key, current)
        if spec.integer:
            value = column.number_input(labels[name], int(spec.low), int(spec.high), key=key)
        else:
            value = column.number_input(labels[name], float(spec.low), float(spec.high), key=key,
                                        step=spec.step, format="%.3g")
        if not math.isclose(value, current, rel_tol=1e-6):
            chosen[name] = value
    return chosen
