"""The gradient of the primary capsules' strided convolution, partly as a matrix product, for training on TensorFlow
on a CPU.

That convolution (9x9, 256 -> 256 channels, stride 2, batch 100) and its two gradients are most of a training
step. oneDNN computes the forward pass and the kernel's gradient well, but its input gradient (a transposed
convolution at stride 2) reaches a low share of the CPU's peak: as one matrix product, grad [batch * 36, 256] @
kernel^T [256, 81 * 256], folded back onto the image (each patch's gradient added where the patch came from), it
takes less (README, "Training speed"). The fold is a small XLA function: as TensorFlow ops (81
strided slices' gradients, or `extract_patches`' sparse scatter) it cost more than the product saves. Product and
fold go a few images at a time (`PIECES`), so that each piece's patch gradients are folded while they are still in
the CPU's cache: 15-20% less time than one product and one fold over the batch.

The input gradient waits for the kernel's: run side by side, the two oversubscribe the CPU's threads and the step
got slower than oneDNN's own. Only the gradient changes, so inference and the forward pass are oneDNN's as before,
and no patch matrix is kept (a batch of 100's would take 298 MB in float32).
"""

from __future__ import annotations

import functools

import tensorflow as tf


def available() -> bool:
    """TensorFlow computes on the CPU here: with a GPU, cuDNN's convolutions are the fast path."""
    return not tf.config.list_logical_devices("GPU")


PIECES = 10  # the batch's input gradient is computed in this many pieces (a batch of 100: 10 images each)


@functools.cache
def _fold_function(kernel_size: int, strides: int, height: int, width: int, channels: int):
    """An XLA function for one geometry: [b, out_h, out_w, k*k*channels] patches, in the kernel's (row, column,
    channel) order, -> [b, height, width, channels], each patch added back where it came from (the transpose of
    patch extraction)."""
    k, s = kernel_size, strides
    out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
    # The fold works on the s*s phases of the image (rows y with y % s == p, columns with x % s == q): tap (i, j)
    # of output (oy, ox) lands in phase (i % s, j % s) at (oy + i // s, ox + j // s), a shifted window rather than
    # a strided scatter, and depth_to_space interleaves the phases back into the image. Each window is added in
    # place (a slice update); summing padded copies instead checked bounds at every element and took 1.5x longer.
    grid_h, grid_w = -(-height // s), -(-width // s)

    @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
    def fold(patches):
        taps = tf.reshape(patches, (-1, out_h, out_w, k, k, channels))
        phases = []
        for p in range(s):
            for q in range(s):
                phase = tf.zeros((tf.shape(taps)[0], grid_h, grid_w, channels), patches.dtype)
                for a, i in enumerate(range(p, k, s)):
                    for e, j in enumerate(range(q, k, s)):
                        window = phase[:, a:a + out_h, e:e + out_w, :] + taps[:, :, :, i, j]
                        phase = tf.raw_ops.TensorStridedSliceUpdate(
                            input=phase, begin=[0, a, e, 0], end=[0, a + out_h, e + out_w, 0], strides=[1, 1, 1, 1],
                            value=window, begin_mask=0b1001, end_mask=0b1001)  # all of the batch and channels
                phases.append(phase)
        image = tf.nn.depth_to_space(tf.concat(phases, axis=-1), s) if s > 1 else phases[0]
        return image[:, :height, :width, :]

    return fold


def convolve(inputs: tf.Tensor, kernel: tf.Tensor, strides: int) -> tf.Tensor:
    """A valid, channels-last convolution of `inputs` [b, h, w, c] with a square `kernel` [k, k, c, o] at `strides`,
    without bias: `tf.nn.conv2d(inputs, kernel, strides, "VALID")`, with the input's gradient computed as above
    (equal to float rounding)."""
    k, _, channels, filters = kernel.shape
    height, width = inputs.shape[1:3]
    fold = _fold_function(int(k), int(strides), int(height), int(width), int(channels))
    out_h, out_w = (height - k) // strides + 1, (width - k) // strides + 1

    # Named so that profiles (`bench --profile`) count these ops as the convolution's.
    @tf.custom_gradient
    def conv(images, weights):
        with tf.name_scope("patchconv"):
            features = tf.nn.conv2d(images, weights, strides, "VALID")

        def grad(upstream):
            with tf.name_scope("patchconv_gradient"):
                d_weights = tf.raw_ops.Conv2DBackpropFilter(
                    input=images, filter_sizes=tf.shape(weights), out_backprop=upstream,
                    strides=[1, strides, strides, 1], padding="VALID")
                kernel = tf.reshape(weights, (k * k * channels, filters))
                # Equal pieces (one XLA program), none empty: the batch is padded with zero gradients to a multiple.
                batch = tf.shape(upstream)[0]
                padded = tf.pad(upstream, [[0, -batch % PIECES], [0, 0], [0, 0], [0, 0]])
                d_images = []
                with tf.control_dependencies([d_weights]):
                    for part in tf.split(padded, PIECES):
                        d_patches = tf.matmul(tf.reshape(part, (-1, filters)), kernel, transpose_b=True)
                        d_images.append(fold(tf.reshape(d_patches, (-1, out_h, out_w, k * k * channels))))
                return tf.concat(d_images, axis=0)[:batch], d_weights

        return features, grad

    return conv(inputs, kernel)
