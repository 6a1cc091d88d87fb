"""CapsNet's loss: a margin loss on capsule lengths plus a down-weighted reconstruction error.

The reconstruction part is Keras' mean squared error weighted by `lam_recon` (0.392 = 0.0005 * 784, the paper's
sum-of-squares weight rescaled for a mean); `compile_for_training` wires both together.
"""

from __future__ import annotations

import keras
from keras import ops

M_PLUS = 0.9
M_MINUS = 0.1
DOWN_WEIGHT = 0.5


@keras.saving.register_keras_serializable(package="capsnet")
def margin_loss(y_true, y_pred):
    """Paper eq. 4: L_k = T_k max(0, m+ - ||v_k||)^2 + lambda (1 - T_k) max(0, ||v_k|| - m-)^2, summed over k."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    present = y_true * ops.square(ops.relu(M_PLUS - y_pred))
    absent = DOWN_WEIGHT * (1.0 - y_true) * ops.square(ops.relu(y_pred - M_MINUS))
    return ops.sum(present + absent, axis=-1)


def compile_for_training(model: keras.Model, lr: float, lam_recon: float) -> None:
    """Adam + margin loss on lengths + lam_recon * MSE on the reconstruction, with accuracy on the lengths."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss={"length": margin_loss, "reconstruction": "mse"},
        loss_weights={"length": 1.0, "reconstruction": lam_recon},
        metrics={"length": ["categorical_accuracy"]},
        jit_compile=False,  # XLA makes this model ~30x slower on CPU
    )


# Keras names per-output logs after the output layers; runs and dashboards use these clearer names.
LOG_NAMES = {
    "loss": "loss",
    "length_loss": "margin_loss",
    "reconstruction_loss": "recon_loss",
    "length_categorical_accuracy": "accuracy",
    "categorical_accuracy": "accuracy",  # the baseline CNN's single output
    "learning_rate": "lr",
}


def rename_logs(logs: dict) -> dict:
    renamed = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        base = key[len(prefix):]
        renamed[prefix + LOG_NAMES.get(base, base)] = float(value)
    return renamed
