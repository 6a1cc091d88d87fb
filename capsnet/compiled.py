"""Single-image inference, compiled the way the active Keras backend compiles: `tf.function` (optionally with XLA)
on TensorFlow, `jax.jit` on JAX, eager under `torch.no_grad` on PyTorch. The one place that knows the difference.

A model call costs milliseconds; `model.predict` adds ~35 ms of set-up to every call, which interactive use cannot
afford. Shapes are fixed (one image), so each function is traced once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np


def compile_function(function: Callable, input_shapes: Sequence[tuple[int, ...]], xla: bool = True) -> Callable:
    """`function` of float32 tensors with `input_shapes`, compiled for the backend; returns NumPy arrays."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(function, jit_compile=xla,
                                input_signature=[tf.TensorSpec(shape, tf.float32) for shape in input_shapes])
    elif backend == "jax":
        import jax

        compiled = jax.jit(function) if xla else function  # XLA is how JAX compiles; without it, op by op
    elif backend == "torch":
        import torch

        def compiled(*inputs):
            with torch.no_grad():
                return function(*inputs)
    else:
        compiled = function

    def call(*arrays: np.ndarray):
        outputs = compiled(*(np.asarray(array, np.float32) for array in arrays))
        return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)

    return call
