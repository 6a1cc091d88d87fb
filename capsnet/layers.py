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


def convolve_as_matmul() -> bool:
    """Whether the primary capsules' strided convolution runs as a matrix product of patches: on JAX on a CPU.

    XLA:CPU computes that 9x9, stride-2 convolution's gradient with respect to its input as a convolution of a
    dilated input, outside its fast (Eigen) convolution path: at batch 100 it took longer than the rest of the
    training step together. As patches @ kernel, the forward pass and both gradients are plain matrix products
    (README, "JAX on a CPU"). On TensorFlow's CPU only the input's gradient changes (`tensorflow_on_cpu`); GPUs
    (cuDNN) convolve well as they are.
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def tensorflow_on_cpu() -> bool:
    """Whether training computes the gradient of the primary capsules' float32 convolution with respect to its input
    as a matrix product (`capsnet.patchconv`): where TensorFlow computes on the CPU (on a GPU cuDNN's convolution is
    the fast path). In bfloat16 oneDNN's own convolution stays: there the patches made a training step slower."""
    if keras.backend.backend() != "tensorflow":
        return False
    from capsnet import patchconv

    return patchconv.available()


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

    def call(self, inputs, training=None):
        as_matmul = convolve_as_matmul() and self.conv.data_format == "channels_last"
        if as_matmul:
            features = self.patches_conv(inputs)
        elif training and self.conv.compute_dtype == "float32" and self.conv.data_format == "channels_last" \
                and tensorflow_on_cpu():
            features = self.conv_with_matmul_input_gradient(inputs)
        else:
            features = self.conv(inputs)
        capsules = ops.reshape(features, (-1, self.num_capsules(features.shape), self.capsule_dim))
        return squash(ops.cast(capsules, "float32"))

    def patches_conv(self, inputs):
        """`self.conv` computed as one matrix product of the image patches (im2col) with its kernel: the same
        weights, the same result to float rounding. For XLA on a CPU (see `convolve_as_matmul`)."""
        conv, k, s = self.conv, self.kernel_size, self.strides
        inputs = ops.cast(inputs, conv.compute_dtype)
        height, width, channels = inputs.shape[1:]
        out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
        # Strided slices, one per kernel tap, laid side by side in the kernel's (row, column, channel) order; their
        # gradient is a padded add, where the convolution's gradient is a dilated convolution.
        patches = ops.concatenate([inputs[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
                                   for i in range(k) for j in range(k)], axis=-1)
        kernel = ops.reshape(ops.cast(conv.kernel, conv.compute_dtype), (k * k * channels, conv.filters))
        features = ops.matmul(patches, kernel)
        return features + ops.cast(conv.bias, conv.compute_dtype) if conv.use_bias else features

    def conv_with_matmul_input_gradient(self, inputs):
        """`self.conv` whose gradient with respect to its input is one matrix product, folded (`capsnet.patchconv`),
        for training on TensorFlow on a CPU, where oneDNN's gradient with respect to the input of a strided
        convolution is the slowest op of the step (README, "Training speed")."""
        from capsnet import patchconv

        conv = self.conv
        features = patchconv.convolve(ops.cast(inputs, conv.compute_dtype), ops.cast(conv.kernel, conv.compute_dtype),
                                      self.strides)
        return features + ops.cast(conv.bias, conv.compute_dtype) if conv.use_bias else features

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
        classes, num_inputs, dim, input_dim = self.W.shape
        # Routing decides *how* predictions are combined; like the reference implementation, gradients flow only
        # through the final weighted sum, not back through the agreement updates of earlier rounds.
        frozen_inputs, frozen_weights = ops.stop_gradient(inputs), ops.stop_gradient(self.W)
        # The predictions u_hat[j|i] = W[j, i] @ u[i] ([b, j, i, d]: 74 MB at batch 100) are never formed for
        # routing: each sum applies W itself, s_j = sum_i W[j, i] (c_ij u_i) and u_hat[j|i] . v_j = u_i . (W[j, i]^T
        # v_j), as one matrix product per class over (i, k), with couplings and logits laid out [j, b, i]. That reads
        # W and u where every einsum over u_hat (and its gradient) streamed 74 MB: routing took about half the time
        # (README, "Training speed").
        weights_for_agreement = ops.reshape(ops.transpose(frozen_weights, (0, 2, 1, 3)),
                                            (classes, dim, num_inputs * input_dim))

        def weighted_sum(couplings, capsules, weights):  # [j, b, i], [b, i, k], [j, i, d, k] -> squash(s) [j, b, d]
            weighted = ops.reshape(couplings[..., None] * capsules[None], (classes, -1, num_inputs * input_dim))
            return squash(ops.matmul(weighted, ops.reshape(ops.transpose(weights, (0, 1, 3, 2)),
                                                           (classes, num_inputs * input_dim, dim))))

        # softmax of zero logits, written out: XLA would constant-fold a softmax over a [10, batch, 1152] array of
        # zeros in every compilation, for seconds.
        couplings = ops.repeat(ops.full_like(frozen_inputs[None, :, :, 0], 1.0 / classes), classes, axis=0)
        logits = None  # [j, b, i]; all zero before the first round
        couplings_per_round, outputs_per_round = [], []
        for round_index in range(self.routings):
            if logits is not None:
                couplings = ops.softmax(logits, axis=0)  # over output capsules j
            couplings_per_round.append(couplings)
            if round_index == self.routings - 1:
                outputs = weighted_sum(couplings, inputs, self.W)
            else:
                outputs = weighted_sum(couplings, frozen_inputs, frozen_weights)
                projected = ops.reshape(ops.matmul(outputs, weights_for_agreement),
                                        (classes, -1, num_inputs, input_dim))
                agreement = ops.sum(projected * frozen_inputs[None], axis=-1)
                logits = agreement if logits is None else logits + agreement
            outputs_per_round.append(ops.transpose(outputs, (1, 0, 2)))
        if return_trace:
            # The predictions themselves, for the Routing page; a training step never asks for them.
            predictions = ops.einsum("bik,jidk->bjid", inputs, self.W)
            couplings_per_round = [ops.transpose(couplings, (1, 0, 2)) for couplings in couplings_per_round]
            return predictions, ops.stack(couplings_per_round, axis=1), ops.stack(outputs_per_round, axis=1)
        return outputs_per_round[-1]

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
