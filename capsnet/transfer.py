"""Starting a CapsNet from a trained one of another input size (`python -m capsnet train -w MODEL`).

Convolutions do not care how large the image is, so a network for 36x36 MultiMNIST can begin with the two
convolutions of the shipped 28x28 MNIST CapsNet unchanged. What does depend on the size is carried over by position:

- the digit capsules' transformation matrices W [classes, positions x types, 16, 8]: each primary-capsule position
  of the larger grid takes the matrices of the source position that sees the same part of a centred digit (the
  nearest one at the border);
- the decoder's hidden layers unchanged, and its output layer's pixels placed at the centre of the larger frame
  (the source's darkest background bias everywhere else).

Anything else must match in shape, or the transfer is refused with the layer's name.
"""

from __future__ import annotations

import numpy as np

from capsnet.model import CapsNet


def primary_grid(config) -> tuple[int, int]:
    """The primary capsules' grid (rows, columns) of a CapsNet: a valid convolution, then a strided one."""
    return tuple((size - config.conv_kernel + 1 - config.primary_kernel) // config.primary_strides + 1
                 for size in config.input_shape[:2])


def nearest_source_positions(source_size: int, target_size: int, source_grid: int, target_grid: int,
                             stride: int) -> np.ndarray:
    """For each grid row (or column) of the target, the source row seeing the same part of a centred digit: the
    image grows by the same margin on every side, so positions move by margin / stride."""
    offset = (target_size - source_size) / 2 / stride
    return np.clip(np.round(np.arange(target_grid) - offset).astype(int), 0, source_grid - 1)


def transfer_weights(source: CapsNet, target: CapsNet) -> None:
    """Fill `target`'s weights from `source`'s, as the module's docstring says."""
    s_config, t_config = source.config, target.config
    for field in ("num_classes", "conv_filters", "conv_kernel", "primary_channels", "primary_dim", "primary_kernel",
                  "primary_strides", "digit_dim", "decoder_units"):
        if getattr(s_config, field) != getattr(t_config, field):
            raise ValueError(f"cannot start from this model: its {field} is {getattr(s_config, field)}, "
                             f"the new network's {getattr(t_config, field)}")
    (s_rows, s_cols), (t_rows, t_cols) = primary_grid(s_config), primary_grid(t_config)
    rows = nearest_source_positions(s_config.input_shape[0], t_config.input_shape[0], s_rows, t_rows,
                                    s_config.primary_strides)
    cols = nearest_source_positions(s_config.input_shape[1], t_config.input_shape[1], s_cols, t_cols,
                                    s_config.primary_strides)
    types = s_config.primary_channels
    for s_layer, t_layer in zip(source.eval.layers, target.eval.layers, strict=True):
        if s_layer.name == "digit_capsules":
            (w,) = s_layer.get_weights()
            grid = w.reshape(w.shape[0], s_rows, s_cols, types, *w.shape[2:])
            grown = grid[:, rows][:, :, cols]
            t_layer.set_weights([grown.reshape(w.shape[0], t_rows * t_cols * types, *w.shape[2:])])
        elif s_layer.name == "decoder":
            t_layer.set_weights(_grown_decoder(s_layer.get_weights(), s_config.input_shape, t_config.input_shape))
        else:
            s_weights, t_weights = s_layer.get_weights(), t_layer.get_weights()
            if [w.shape for w in s_weights] != [w.shape for w in t_weights]:
                raise ValueError(f"cannot start from this model: layer {s_layer.name} differs in shape")
            t_layer.set_weights(s_weights)


def _grown_decoder(weights: list[np.ndarray], source_shape: tuple[int, ...],
                   target_shape: tuple[int, ...]) -> list[np.ndarray]:
    *hidden, kernel, bias = weights
    (s_h, s_w, channels), (t_h, t_w, _) = source_shape, target_shape
    top, left = (t_h - s_h) // 2, (t_w - s_w) // 2
    grown_kernel = np.zeros((kernel.shape[0], t_h, t_w, channels), kernel.dtype)
    grown_kernel[:, top:top + s_h, left:left + s_w] = kernel.reshape(-1, s_h, s_w, channels)
    grown_bias = np.full((t_h, t_w, channels), bias.min(), bias.dtype)
    grown_bias[top:top + s_h, left:left + s_w] = bias.reshape(s_h, s_w, channels)
    return [*hidden, grown_kernel.reshape(kernel.shape[0], -1), grown_bias.reshape(-1)]


def initial_weights(target: CapsNet, source) -> None:
    """Start `target` from a trained network: its weights as they are where the architectures match, else carried
    over by `transfer_weights`."""
    if isinstance(source, CapsNet) and isinstance(target, CapsNet) and \
            source.config.input_shape != target.config.input_shape:
        transfer_weights(source, target)
        return
    target.eval.set_weights(source.eval.get_weights())
