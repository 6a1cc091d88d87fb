"""CapsNet's loss: a margin loss on capsule lengths plus a down-weighted reconstruction error.

The reconstruction part is Keras' mean squared error weighted by `lam_recon` (0.392 = 0.0005 * 784, the paper's
sum-of-squares weight rescaled for the mean over a 28x28 image, and scaled again for larger images or several digits
per image); `compile_for_training` wires both together.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from capsnet.config import DIGIT_SIZE

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


@keras.saving.register_keras_serializable(package="capsnet")
def set_accuracy(y_true, y_pred):
    """1 where the classes present (the ones of a multi-hot `y_true`) are exactly the longest capsules, else 0: every
    present class longer than every absent one. MultiMNIST's metric; plain accuracy for one class per image."""
    present = ops.cast(y_true, "float32") > 0.5
    y_pred = ops.cast(y_pred, "float32")
    shortest_present = ops.min(ops.where(present, y_pred, float("inf")), axis=-1)
    longest_absent = ops.max(ops.where(present, float("-inf"), y_pred), axis=-1)
    return ops.cast(shortest_present > longest_absent, "float32")


def reconstruction_weight(lam_recon: float, image_shape: tuple[int, ...], digits: int = 1) -> float:
    """The MSE weight that makes the reconstruction loss 0.0005 * SSE (the paper's) for any image size and any number
    of digits per image, `lam_recon` being that weight for one 28x28 image (0.392 = 0.0005 * 784)."""
    values = digits * int(np.prod(image_shape))
    return lam_recon * values / DIGIT_SIZE ** 2


def compile_for_training(model: keras.Model, lr: float, lam_recon: float,
                         image_shape: tuple[int, ...] = (DIGIT_SIZE, DIGIT_SIZE, 1), digits: int = 1) -> None:
    """Adam + margin loss on lengths + the reconstruction MSE weighted as the paper's 0.0005 * SSE, with accuracy on
    the lengths (for several digits per image, `set_accuracy`: all of them must be the longest capsules)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss={"length": margin_loss, "reconstruction": "mse"},
        loss_weights={"length": 1.0, "reconstruction": reconstruction_weight(lam_recon, image_shape, digits)},
        metrics={"length": ["categorical_accuracy" if digits == 1 else set_accuracy]},
        # TensorFlow: XLA makes this model many times slower to train on a CPU (README, "Interactive latency").
        # JAX compiles with XLA anyway; without jit it runs op by op, slower still (README, "JAX on a CPU").
        jit_compile=keras.backend.backend() == "jax",
    )
