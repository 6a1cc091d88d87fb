"""Every `st.session_state` key the explorer uses, in one place. Widget keys that only one page reads stay here
too, so that two pages never collide on a name."""

import math
from collections.abc import Callable

import streamlit as st

# The model, shared by every page
MODEL = "model.choice"  # the chosen ModelChoice.key; survives page switches (widget state does not)
MODEL_PICKER = "model.picker"  # the sidebar selectbox, re-synced from MODEL on every page
MODEL_UPLOAD = "model.upload"  # Home's model-file uploader
UPLOAD_MESSAGE = "model.upload_message"  # the outcome of the last model upload, shown once

# Draw
CANVAS = "draw.canvas"  # the drawable canvas widget: CANVAS + "." + its generation (Clear starts a new one)
CANVAS_GENERATION = "draw.canvas_generation"
CANVAS_SAVED = "draw.canvas_saved"  # its last drawing: {"strokes": Fabric.js JSON, "pixels": RGBA array}
CANVAS_INITIAL = "draw.canvas_initial"  # the strokes the canvas was mounted with on this visit
IMAGE_UPLOAD = "draw.upload"  # the image uploader
AS_CLASS = "draw.as_class"  # "reconstruct as another class"
DRAWING = "draw.image"  # the last preprocessed 28x28 input, for the Latent page

# Reconstruct
RECONSTRUCT_SIZE = "reconstruct.size"
RECONSTRUCT_COUNT = "reconstruct.count"
RECONSTRUCT_CLASS = "reconstruct.class"
RECONSTRUCT_WRONG = "reconstruct.wrong"
RECONSTRUCT_SHUFFLE = "reconstruct.shuffle"
RECONSTRUCT_SEED = "reconstruct.seed"

# Latent
LATENT_PICK = "latent.pick"  # a test-digit position sent from the Reconstruct page, consumed by Latent
LATENT_SOURCE = "latent.source"  # "Test image" or "Last drawing"
LATENT_CLASS = "latent.class"
LATENT_POSITION = "latent.position"  # which test image of that class, counting from 0
LATENT_ABSOLUTE = "latent.absolute"  # sliders hold absolute capsule values instead of offsets
LATENT_GENERATION = "latent.generation"  # bumped on reset / new digit: slider keys change, so they start afresh
LATENT_LINKED = "latent.linked"  # the 16 slider values a link carried, comma-separated ("" once applied)

# Routing
ROUTING_SOURCE = "routing.source"  # "Test digit", "Last drawing" or "Upload"
ROUTING_CLASS = "routing.class"
ROUTING_POSITION = "routing.position"  # which test digit of that class, counting from 0
ROUTING_UPLOAD = "routing.upload"
ROUTING_ROUND = "routing.round"  # the routing round shown, 1 … routings

# Robustness
ROBUST_SOURCE = "robustness.source"  # "Test digit" or "Last drawing"
ROBUST_CLASS = "robustness.class"
ROBUST_POSITION = "robustness.position"
ROBUST_TRANSFORM = "robustness.transform."  # prefix of the sliders: + an `affine.Affine` field name
ROBUST_MEASURED = "robustness.measured"  # keys of the models whose sweeps this session asked for

# Attack (and the Routing page's "what the primary capsules see")
ATTACK_PICK = "attack.pick"  # a test-image position sent from another page (the Map), consumed by Attack
ATTACK_SOURCE = "attack.source"  # "Test digit" or "Last drawing"
ATTACK_CLASS = "attack.class"
ATTACK_POSITION = "attack.position"  # which test digit of that class, counting from 0
ATTACK_METHOD = "attack.method"  # "fgsm" or "pgd" (capsnet.attack.METHODS)
ATTACK_EPSILON = "attack.epsilon"
ATTACK_STEPS = "attack.steps"  # PGD's steps
ATTACK_TARGET = "attack.target"  # -1: untargeted, else the class the attack pulls towards
ATTACK_MEASURED = "attack.measured"  # keys of the models whose attack curves this session asked for
ROUTING_CONV1 = "routing.conv1"  # show conv1's feature maps

# Overlap (MultiMNIST: two digits over each other)
OVERLAP_SOURCE = "overlap.source"  # "Test pair", "Compose" or "Draw"
OVERLAP_PAIR = "overlap.pair"  # index in the fixed MultiMNIST test set
OVERLAP_CLASS = ("overlap.class.0", "overlap.class.1")  # Compose: each digit's class,
OVERLAP_POSITION = ("overlap.example.0", "overlap.example.1")  # which test digit of that class,
OVERLAP_SHIFT_Y = ("overlap.dy.0", "overlap.dy.1")  # and its shift in pixels (down, right)
OVERLAP_SHIFT_X = ("overlap.dx.0", "overlap.dx.1")
OVERLAP_AS_CLASS = "overlap.as_class"  # "reconstruct as class k"
OVERLAP_EDITED = "overlap.edited"  # which of the two longest capsules the sliders edit: 0 or 1
OVERLAP_GENERATION = "overlap.generation"  # bumped by Reset: the sliders start afresh
OVERLAP_CANVAS = "overlap.canvas"


def overlap_slider(identity: str, capsule: int, generation: int, dimension: int) -> str:
    return f"overlap.dim.{identity}.{capsule}.{generation}.{dimension}"


# Map
MAP_PROJECTION = "map.projection"  # "pca" or "tsne" (capsnet.projection.METHODS)
MAP_CAPSULES = "map.capsules"  # "winning" or "all" (capsnet.projection.KINDS)
MAP_SIZE = "map.size"  # the first N test images are mapped
MAP_CLASS = "map.class"  # one class picked out (-1: none)
MAP_SELECTED = "map.selected"  # the selected test-image positions, comma-separated ("": none)
MAP_SELECTION_NOTE = "map.selection_note"  # what became of a selection too large to keep whole ("" otherwise)
MAP_CHART = "map.chart"  # the scatter plot: its selection events
MAP_DRAWING = "map.drawing"  # show the last drawing on the map
MAP_SEND = "map.send"  # which selected digit the "send to" buttons send
MAP_REQUESTED = "map.requested"  # (model key, size) whose full computation this session asked for

# Train
TRAIN_WATCHED = "train.watched"  # the run the live view follows
TRAIN_OVERLAY = "train.overlay"  # other runs whose curves are drawn with it
TRAIN_CONFIRM_DELETE = "train.confirm_delete"  # name of the run awaiting "yes, delete"
TRAIN_FLASH = "train.flash"  # (kind, text) from the last action, shown once
TRAIN_FORM = "train.form."  # prefix of the launch form's fields: TRAIN_FORM + a TrainConfig field name
TRAIN_PRESET = "train.preset"  # the variant (capsnet.variants) whose flags last filled the form ("": none)
TRAIN_CONTINUE = "train.continue."  # prefix of the "continue with changes" inputs: + run name + "." + field


def latent_slider(identity: str, absolute: bool, generation: int, dimension: int) -> str:
    """One Latent slider: a new digit, mode or reset makes new keys, so the sliders start afresh."""
    return f"latent.dim.{identity}.{'abs' if absolute else 'offset'}.{generation}.{dimension}"


def reconstruct_send(position: int) -> str:
    return f"reconstruct.send.{position}"


# --- choices in the URL ---------------------------------------------------------------------------------------------
# A page's choices live in its URL's query parameters too, so that a link reproduces what a user sees. Each shared
# key has a parameter name (unique on its page) and a type; the page names its keys and calls `from_url` before its
# widgets and `to_url` after them.

URL_PARAMETERS: dict[str, tuple[str, type]] = {
    MODEL: ("model", str),
    ROUTING_SOURCE: ("digit", str), ROUTING_CLASS: ("class", int), ROUTING_POSITION: ("example", int),
    ROUTING_ROUND: ("round", int),
    ROBUST_SOURCE: ("digit", str), ROBUST_CLASS: ("class", int), ROBUST_POSITION: ("example", int),
    **{ROBUST_TRANSFORM + name: (name, float) for name in ("rotation", "scale", "shear", "shift_x", "shift_y")},
    LATENT_SOURCE: ("digit", str), LATENT_CLASS: ("class", int), LATENT_POSITION: ("example", int),
    LATENT_ABSOLUTE: ("absolute", bool), LATENT_LINKED: ("dims", str),
    RECONSTRUCT_SIZE: ("size", int), RECONSTRUCT_COUNT: ("shown", int), RECONSTRUCT_CLASS: ("class", int),
    RECONSTRUCT_WRONG: ("wrong", bool), RECONSTRUCT_SHUFFLE: ("shuffle", bool), RECONSTRUCT_SEED: ("seed", int),
    OVERLAP_SOURCE: ("digits", str), OVERLAP_PAIR: ("pair", int), OVERLAP_AS_CLASS: ("as", int),
    OVERLAP_EDITED: ("edit", int),
    **{key: (name, int) for keys, prefix in ((OVERLAP_CLASS, "class"), (OVERLAP_POSITION, "example"),
                                             (OVERLAP_SHIFT_Y, "dy"), (OVERLAP_SHIFT_X, "dx"))
       for key, name in zip(keys, (f"{prefix}_a", f"{prefix}_b"), strict=True)},
}
URL_PARAMETERS.update({  # the Map page
    MAP_PROJECTION: ("projection", str), MAP_CAPSULES: ("capsules", str), MAP_SIZE: ("size", int),
    MAP_CLASS: ("class", int), MAP_SELECTED: ("selected", str),
})
URL_PARAMETERS.update({  # the Attack page, and the Routing page's conv1 maps
    ATTACK_SOURCE: ("digit", str), ATTACK_CLASS: ("class", int), ATTACK_POSITION: ("example", int),
    ATTACK_METHOD: ("attack", str), ATTACK_EPSILON: ("eps", float), ATTACK_STEPS: ("steps", int),
    ATTACK_TARGET: ("target", int), ROUTING_CONV1: ("conv1", bool),
})


def parse_url_value(text: str, kind: type) -> object:
    """A query parameter's text as `kind`; ValueError when it is not one (a hand-edited link, say)."""
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError(text)
        return text == "true"
    value = kind(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(text)
    return value


def from_url(keys: list[str], allowed: dict[str, Callable[[object], bool]] | None = None) -> None:
    """Before the page's widgets: each choice the URL names, and this session has not made on this page yet, becomes
    the widget's value. Values that do not parse, or that `allowed[key]` rejects, are ignored, never an error."""
    for key in keys:
        name, kind = URL_PARAMETERS[key]
        if key in st.session_state or name not in st.query_params:
            continue
        try:
            value = parse_url_value(st.query_params[name], kind)
        except ValueError:
            continue
        if allowed is None or key not in allowed or allowed[key](value):
            st.session_state[key] = value


def to_url(keys: list[str], defaults: dict[str, object] | None = None) -> None:
    """After the page's widgets: their values into the URL. A value equal to its default (or None) drops its
    parameter, so that an untouched page keeps a clean URL."""
    defaults = defaults or {}
    for key in keys:
        value = st.session_state.get(key)
        set_url(key, None if key in defaults and value == defaults[key] else value)


def set_url(key: str, value: object) -> None:
    """The URL parameter of `key` set to `value` (None: removed)."""
    name, kind = URL_PARAMETERS[key]
    if value is None:
        st.query_params.pop(name, None)
        return
    text = ("true" if value else "false") if kind is bool else str(value)
    if st.query_params.get(name) != text:
        st.query_params[name] = text
