"""The primary capsules' strided convolution as one matrix product of image patches, for training on TensorFlow on a
CPU.

That convolution (9x9, 256 -> 256 channels, stride 2, batch 100) is most of a training step. TensorFlow runs it
with oneDNN's direct convolution kernels, which at stride 2 reach a lower share of the CPU's peak than a plain
matrix product does; the same arithmetic as patches [batch * 36, 81 * 256] @ kernel [81 * 256, 256] for the forward
pass, patches^T @ grad for the kernel's gradient and grad @ kernel^T folded back onto the image for the input's
took about a quarter less time (README, "Training speed"). The patches are copied out and folded back by small XLA
functions: as TensorFlow ops (81 strided slices and their gradients, or `extract_patches`, whose gradient is a
sparse scatter) the copies cost more than the matrix products save.

Only for training: the patches of a batch of 100 take 298 MB in float32 (kept for the backward pass), where the
convolution's own buffers are a few MB, so inference (batches of hundreds of images) keeps the convolution.
"""

from __future__ import annotations

import functools

import tensorflow as tf


def available() -> bool:
    """TensorFlow computes on the CPU here: with a GPU, cuDNN's convolutions are the fast path."""
    return not tf.config.list_logical_devices("GPU")


@functools.cache
def _patch_functions(kernel_size: int, strides: int, height: int, width: int, channels: int):
    """XLA functions for one geometry: `extract` [b, height, width, channels] -> [b, out_h, out_w, k*k*channels], in
    the kernel's (row, column, channel) order, and `fold`, its transpose (each patch added back where it came
    from)."""
    k, s = kernel_size, strides
    out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
    # The fold works on the s*s phases of the image (rows y with y % s == p, columns with x % s == q): tap (i, j)
    # of output (oy, ox) lands in phase (i % s, j % s) at (oy + i // s, ox + j // s), a shifted copy rather than a
    # strided scatter, and depth_to_space interleaves the phases back into the image.
    grid_h, grid_w = -(-height // s), -(-width // s)

    @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
    def extract(images):
        return tf.concat([images[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
                          for i in range(k) for j in range(k)], axis=-1)

    @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
    def fold(patches):
        taps = tf.reshape(patches, (-1, out_h, out_w, k, k, channels))
        phases = []
        for p in range(s):
            for q in range(s):
                shifted = [tf.pad(taps[:, :, :, s * a + p, s * e + q],
                                  [[0, 0], [a, grid_h - out_h - a], [e, grid_w - out_w - e], [0, 0]])
                           for a in range(len(range(p, k, s))) for e in range(len(range(q, k, s)))]
                phases.append(tf.add_n(shifted) if shifted else  # no tap lands there: kernel_size < strides
                              tf.zeros((tf.shape(taps)[0], grid_h, grid_w, channels), patches.dtype))
        image = tf.nn.depth_to_space(tf.concat(phases, axis=-1), s) if s > 1 else phases[0]
        return image[:, :height, :width, :]

    return extract, fold


def convolve(inputs: tf.Tensor, kernel: tf.Tensor, strides: int) -> tf.Tensor:
    """A valid, channels-last convolution of `inputs` [b, h, w, c] with a square `kernel` [k, k, c, o] at `strides`,
    without bias: `tf.nn.conv2d(inputs, kernel, strides, "VALID")` to float rounding, gradients included."""
    k, _, channels, filters = kernel.shape
    height, width = inputs.shape[1:3]
    extract, fold = _patch_functions(int(k), int(strides), int(height), int(width), int(channels))
    out_h, out_w = (height - k) // strides + 1, (width - k) // strides + 1

    # Named so that profiles (`bench --profile`) count these ops, the gradient's too, as the convolution's.
    @tf.custom_gradient
    def conv(images, weights):
        with tf.name_scope("patchconv"):
            patches = tf.reshape(extract(images), (-1, k * k * channels))
            matrix = tf.reshape(weights, (k * k * channels, filters))
            features = tf.reshape(tf.matmul(patches, matrix), (-1, out_h, out_w, filters))

        def grad(upstream):
            with tf.name_scope("patchconv_gradient"):
                upstream = tf.reshape(upstream, (-1, filters))
                d_weights = tf.reshape(tf.matmul(patches, upstream, transpose_a=True), weights.shape)
                d_patches = tf.matmul(upstream, matrix, transpose_b=True)
                return fold(tf.reshape(d_patches, (-1, out_h, out_w, k * k * channels))), d_weights

        return features, grad

    return conv(inputs, kernel)
