"""Capsule layers: squash, primary capsules, digit capsules with dynamic routing, Length and Mask.

Everything here is written with `keras.ops`, so it runs on any Keras backend. Capsule math (squash, routing,
lengths) always runs in float32: under the `mixed_bfloat16` policy the convolutions and dense layers compute in
bfloat16, but the routing softmax and the vector norms are where low precision would hurt.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


def squash(vectors, axis: int = -1):
    """Shrink each vector to length ||s||^2 / (1 + ||s||^2) while keeping its direction (paper, eq. 1)."""
    squared_norm = ops.sum(ops.square(vectors), axis=axis, keepdims=True)
    scale = squared_norm / (1.0 + squared_norm) / ops.sqrt(squared_norm + EPSILON)
    return scale * vectors


@keras.saving.register_keras_serializable(package="capsnet")
class PrimaryCapsule(keras.layers.Layer):
    """A convolution whose channels are grouped into `n_channels` capsule types of `capsule_dim` dimensions.

    The paper's MNIST network: 32 types x 8D, 9x9 kernel, stride 2 -> 6x6x32 = 1152 capsules.
    """

    def __init__(self, capsule_dim: int = 8, n_channels: int = 32, kernel_size: int = 9, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.capsule_dim = capsule_dim
        self.n_channels = n_channels
        self.kernel_size = kernel_size
        self.strides = strides
        # The convolution follows the global dtype policy (bfloat16 under mixed precision); the squash below is
        # done in float32 regardless.
        self.conv = keras.layers.Conv2D(
            capsule_dim * n_channels, kernel_size, strides=strides, padding="valid", name="conv"
        )

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs):
        features = self.conv(inputs)
        capsules = ops.reshape(features, (-1, self.num_capsules(features.shape), self.capsule_dim))
        return squash(ops.cast(capsules, "float32"))

    def num_capsules(self, feature_shape) -> int:
        height, width, channels = feature_shape[1:]
        return height * width * channels // self.capsule_dim

    def compute_output_shape(self, input_shape):
        feature_shape = self.conv.compute_output_shape(input_shape)
        return (input_shape[0], self.num_capsules(feature_shape), self.capsule_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "capsule_dim": self.capsule_dim,
            "n_channels": self.n_channels,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }


@keras.saving.register_keras_serializable(package="capsnet")
class DigitCapsule(keras.layers.Layer):
    """Fully connected capsules with routing-by-agreement (paper, procedure 1).

    Every input capsule i predicts every output capsule j with its own matrix: u_hat[j|i] = W[j, i] @ u[i].
    Routing then runs `routings` rounds of: couplings c = softmax over the output capsules of the logits b;
    s_j = sum_i c_ij u_hat[j|i]; v_j = squash(s_j); b_ij += u_hat[j|i] . v_j.

    Inputs: [batch, num_inputs, input_dim]. Output: [batch, num_capsules, capsule_dim], or with `return_trace=True`
    every round's couplings and outputs (what the explorer's Routing page shows).
    """

    def __init__(self, num_capsules: int = 10, capsule_dim: int = 16, routings: int = 3, init_stddev: float = 0.05,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if routings < 1:
            raise ValueError(f"routings must be at least 1, got {routings}")
        self.num_capsules = num_capsules
        self.capsule_dim = capsule_dim
        self.routings = routings
        self.init_stddev = init_stddev

    def build(self, input_shape):
        _, num_inputs, input_dim = input_shape
        # Glorot on a [10, 1152, 16, 8] tensor treats 10*1152 as a receptive field and gives tiny weights: the
        # initial digit capsules are ~5e-8 long, squash (|v| ~ |s|^2 when small) kills the gradient and training
        # stays at chance. N(0, 0.05) starts them ~3e-5 long, and the network learns from the first steps
        # (`python -m capsnet bench --init`).
        self.W = self.add_weight(
            name="W",
            shape=(self.num_capsules, num_inputs, self.capsule_dim, input_dim),
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev),
        )

    def call(self, inputs, return_trace: bool = False):
        """The output capsules [b, j, d]; with `return_trace`, routing round by round instead: the predictions
        u_hat [b, j, i, d], the couplings of each round [b, routings, j, i] and the output capsules after each round
        [b, routings, j, d] (the last round's are the layer's output)."""
        # One batched contraction for all predictions: [b, i, k] x [j, i, d, k] -> [b, j, i, d].
        predictions = ops.einsum("bik,jidk->bjid", inputs, self.W)
        # Routing decides *how* predictions are combined; like the reference implementation, gradients flow only
        # through the final weighted sum, not back through the agreement updates of earlier rounds.
        frozen_predictions = ops.stop_gradient(predictions)
        logits = ops.zeros_like(predictions[..., 0])  # [b, j, i]
        couplings_per_round, outputs_per_round = [], []
        for round_index in range(self.routings):
            couplings = ops.softmax(logits, axis=1)  # over output capsules j
            couplings_per_round.append(couplings)
            if round_index == self.routings - 1:
                outputs = squash(ops.einsum("bji,bjid->bjd", couplings, predictions))
            else:
                outputs = squash(ops.einsum("bji,bjid->bjd", couplings, frozen_predictions))
                logits = logits + ops.einsum("bjd,bjid->bji", outputs, frozen_predictions)
            outputs_per_round.append(outputs)
        if return_trace:
            return predictions, ops.stack(couplings_per_round, axis=1), ops.stack(outputs_per_round, axis=1)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "num_capsules": self.num_capsules,
            "capsule_dim": self.capsule_dim,
            "routings": self.routings,
            "init_stddev": self.init_stddev,
        }


@keras.saving.register_keras_serializable(package="capsnet")
class Length(keras.layers.Layer):
    """Length of each capsule vector: the probability that its entity is present.

    The epsilon keeps the gradient of sqrt finite when a capsule is exactly zero.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + EPSILON)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


@keras.saving.register_keras_serializable(package="capsnet")
class Mask(keras.layers.Layer):
    """Zero every capsule but one and flatten, so the decoder sees a single class.

    Called with `[capsules, one_hot]` it keeps the labelled class (training); called with `capsules` alone it keeps
    the longest capsule (inference).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            capsules, mask = inputs
        else:
            capsules = inputs
            lengths = ops.sqrt(ops.sum(ops.square(capsules), axis=-1))
            mask = ops.one_hot(ops.argmax(lengths, axis=1), ops.shape(capsules)[1])
        masked = capsules * ops.expand_dims(ops.cast(mask, capsules.dtype), -1)
        return ops.reshape(masked, (-1, capsules.shape[1] * capsules.shape[2]))
