"""Every `st.session_state` key the explorer uses, in one place. Widget keys that only one page reads stay here
too, so that two pages never collide on a name."""

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

# Train
TRAIN_WATCHED = "train.watched"  # the run the live view follows
TRAIN_OVERLAY = "train.overlay"  # other runs whose curves are drawn with it
TRAIN_CONFIRM_DELETE = "train.confirm_delete"  # name of the run awaiting "yes, delete"
TRAIN_FLASH = "train.flash"  # (kind, text) from the last action, shown once
TRAIN_FORM = "train.form."  # prefix of the launch form's fields: TRAIN_FORM + a TrainConfig field name


def latent_slider(identity: str, absolute: bool, generation: int, dimension: int) -> str:
    """One Latent slider: a new digit, mode or reset makes new keys, so the sliders start afresh."""
    return f"latent.dim.{identity}.{'abs' if absolute else 'offset'}.{generation}.{dimension}"


def reconstruct_send(position: int) -> str:
    return f"reconstruct.send.{position}"
