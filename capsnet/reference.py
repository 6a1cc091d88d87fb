"""Open `trained_model.h5` files of the reference implementation, XifengGuo/CapsNet-Keras (Keras 2).

That project saves its training model with Keras 2 `model.save_weights`, which writes an HDF5 file laid out as:

- root attributes: `layer_names` (every layer of the model, in order, as bytes), `backend`, `keras_version`;
- one group per layer, with a `weight_names` attribute (like `conv1/kernel:0`) and one dataset per name, found at
  `group[name]` (the slashes in a name make nested groups). Layers without weights (inputs, reshape, squash, length,
  mask) have a group with an empty list.

The layers that hold weights, and where they go in our network:

- `conv1` (kernel [9, 9, 1, 256], bias) -> our `conv1`;
- `primarycap_conv2d` (kernel [9, 9, 256, 256], bias) -> the convolution inside `primary_capsules`; both networks
  reshape its output channels-last into [-1, 1152, 8], so the weights need no reordering;
- `digitcaps` -> `digit_capsules`. Since late 2017 its one weight `W` is [classes, input capsules, out dim, in dim]
  = [10, 1152, 16, 8], our layout. Older files hold `W` as [input capsules, classes, in dim, out dim]
  = [1152, 10, 8, 16] (the prediction was u @ W[i, j]), plus a non-trainable routing-logit `bias` we do not use;
- `decoder`, a nested Sequential saved as one group: its `weight_names` list the three Dense kernels and biases in
  order. The inner names depend on the Keras version (`dense_1/kernel:0`, `decoder/dense_4/kernel:0`, ...), so we
  go by the order of that list and tell kernels (2-D) from biases (1-D) by rank.

Weight names may come back from h5py as bytes or str; both are accepted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from capsnet.config import ModelConfig

if TYPE_CHECKING:
    from capsnet.model import CapsNet


class ReferenceWeightsError(ValueError):
    """The file lacks a layer or weight we need, or a weight's shape does not fit."""


def is_reference_weights(path: str | Path) -> bool:
    """True for a Keras 2 weights file of a model with a `digitcaps` layer; reads only the root attributes."""
    try:
        with h5py.File(path, "r") as f:
            return "digitcaps" in _names(f.attrs, "layer_names")
    except (OSError, TypeError, ValueError):  # not HDF5 (text, empty file), unreadable, or odd attribute types
        return False


def read_reference_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The file's arrays in our layout, keyed `conv1/kernel`, ..., `digit/W`, `decoder/0/kernel`, ..."""
    with h5py.File(path, "r") as f:
        conv1 = _layer_weights(f, "conv1")
        primary = _layer_weights(f, "primarycap_conv2d")
        digitcaps = _layer_weights(f, "digitcaps")
        decoder = _layer_weights(f, "decoder")
    arrays = {**_kernel_and_bias("conv1", conv1, "conv1"), **_kernel_and_bias("primary", primary, "primarycap_conv2d"),
              "digit/W": _digit_weights(digitcaps)}
    kernels = [w for w in decoder.values() if w.ndim == 2]
    biases = [w for w in decoder.values() if w.ndim == 1]
    if not kernels or len(kernels) != len(biases):
        raise ReferenceWeightsError(f"decoder has {len(kernels)} kernels and {len(biases)} biases; expected one "
                                    f"kernel and one bias per Dense layer")
    for i, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
        arrays[f"decoder/{i}/kernel"], arrays[f"decoder/{i}/bias"] = kernel, bias
    return arrays


def reference_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig whose network fits the file (routings and strides are not recorded: they keep the defaults)."""
    arrays = read_reference_weights(path)
    num_classes, _, digit_dim, primary_dim = arrays["digit/W"].shape
    conv, primary = arrays["conv1/kernel"], arrays["primary/kernel"]
    decoder_kernels = [array for key, array in arrays.items() if key.startswith("decoder/") and key.endswith("kernel")]
    channels, pixels = conv.shape[2], decoder_kernels[-1].shape[1]
    # The decoder's last layer draws the whole image; the reference trains on square images.
    side = math.isqrt(pixels // channels)
    if side * side * channels != pixels:
        raise ReferenceWeightsError(f"decoder draws {pixels} values, not a square image of {channels} channels")
    return ModelConfig(
        input_shape=(side, side, channels), num_classes=num_classes, conv_filters=conv.shape[3],
        conv_kernel=conv.shape[0], primary_channels=primary.shape[3] // primary_dim, primary_dim=primary_dim,
        primary_kernel=primary.shape[0], digit_dim=digit_dim,
        decoder_units=tuple(kernel.shape[1] for kernel in decoder_kernels[:-1]),
    )


def load_reference_weights(net: CapsNet, path: str | Path) -> None:
    """Assign the file's weights to `net`; every shape is checked before anything is assigned."""
    arrays = read_reference_weights(path)
    variables = _our_variables(net)
    if arrays.keys() != variables.keys():
        raise ReferenceWeightsError(f"the file's decoder has {_count_dense(arrays)} Dense layers, "
                                    f"ours has {_count_dense(variables)}")
    for key, variable in variables.items():
        if tuple(variable.shape) != arrays[key].shape:
            raise ReferenceWeightsError(f"{key}: the file has shape {list(arrays[key].shape)}, "
                                        f"our model has {list(variable.shape)}")
    for key, variable in variables.items():
        variable.assign(arrays[key])


def _names(attrs: h5py.AttributeManager, key: str) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(attrs.get(key, []))]


def _layer_weights(f: h5py.File, layer: str) -> dict[str, np.ndarray]:
    group = f.get(layer)
    if not isinstance(group, h5py.Group):
        raise ReferenceWeightsError(f"no '{layer}' layer in the reference weights")
    names = _names(group.attrs, "weight_names")
    if not names:
        raise ReferenceWeightsError(f"'{layer}' layer has no weights")
    missing = [name for name in names if not isinstance(group.get(name), h5py.Dataset)]
    if missing:
        raise ReferenceWeightsError(f"'{layer}' layer lacks the datasets {missing}")
    return {name: np.asarray(group[name], dtype=np.float32) for name in names}


def _kernel_and_bias(key: str, weights: dict[str, np.ndarray], layer: str) -> dict[str, np.ndarray]:
    shapes = [w.shape for w in weights.values()]
    if len(shapes) != 2 or len(shapes[0]) != 4 or len(shapes[1]) != 1:
        raise ReferenceWeightsError(f"'{layer}' weights have shapes {shapes}; expected a 4-D kernel and a bias")
    kernel, bias = weights.values()
    return {f"{key}/kernel": kernel, f"{key}/bias": bias}


def _digit_weights(weights: dict[str, np.ndarray]) -> np.ndarray:
    transforms = [w for name, w in weights.items() if name.rsplit("/", 1)[-1].split(":")[0] == "W"]
    if len(transforms) != 1:
        raise ReferenceWeightsError(f"digitcaps has no single weight named W (it has {list(weights)})")
    W = transforms[0]
    if W.ndim != 4:
        raise ReferenceWeightsError(f"digitcaps W has shape {W.shape}; expected [10, 1152, 16, 8] "
                                    f"or [1152, 10, 8, 16]")
    # A network always has more primary capsules than classes, so a longer first axis means the old layout.
    return np.ascontiguousarray(np.transpose(W, (1, 0, 3, 2))) if W.shape[0] > W.shape[1] else W


def _our_variables(net: CapsNet) -> dict:
    conv1, primary = net.eval.get_layer("conv1"), net.eval.get_layer("primary_capsules").conv
    variables = {"conv1/kernel": conv1.kernel, "conv1/bias": conv1.bias, "primary/kernel": primary.kernel,
                 "primary/bias": primary.bias, "digit/W": net.eval.get_layer("digit_capsules").W}
    # The decoder's weighted layers are its Dense layers, in order (the final Reshape has none).
    dense = [layer for layer in net.eval.get_layer("decoder").layers if layer.weights]
    for i, layer in enumerate(dense):
        variables[f"decoder/{i}/kernel"], variables[f"decoder/{i}/bias"] = layer.kernel, layer.bias
    return variables


def _count_dense(weights: dict) -> int:
    return sum(key.startswith("decoder/") and key.endswith("/kernel") for key in weights)
