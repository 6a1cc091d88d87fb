"""Loading CapsNet-Keras (Keras 2) weight files: both `digitcaps` layouts, varying decoder names, and bad files.

The files are written here with h5py the way Keras 2 `save_weights` writes them, filled with random numbers. A model
loaded from a file must compute exactly what a model computes when given the same numbers through its own layers.
"""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from capsnet.config import ModelConfig
from capsnet.model import CapsNet
from capsnet.reference import (
    ReferenceWeightsError,
    is_reference_weights,
    load_reference_weights,
    read_reference_weights,
    reference_model_config,
)

# Layers of the reference training model, in order; only conv1, primarycap_conv2d, digitcaps and decoder hold weights.
REFERENCE_LAYERS = ["input_1", "conv1", "primarycap_conv2d", "primarycap_reshape", "primarycap_squash", "digitcaps",
                    "input_2", "mask_1", "capsnet", "decoder"]


@pytest.fixture(scope="module")
def nets():
    """Two full-size networks: one loads files, the other gets the same numbers through its layers."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield CapsNet(), CapsNet()
    finally:
        keras.config.set_dtype_policy(previous)


def random_model(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Our layout, keyed as `read_reference_weights` returns it; scaled so activations neither vanish nor saturate."""
    rng = np.random.default_rng(seed)
    net_shapes = {"conv1": (config.conv_kernel, config.conv_kernel, config.input_shape[2], config.conv_filters),
                  "primary": (config.primary_kernel, config.primary_kernel, config.conv_filters,
                              config.primary_channels * config.primary_dim)}
    units = [config.num_classes * config.digit_dim, *config.decoder_units, int(np.prod(config.input_shape))]
    net_shapes.update({f"decoder/{i}": (units[i], units[i + 1]) for i in range(len(units) - 1)})
    weights = {}
    for key, shape in net_shapes.items():
        weights[f"{key}/kernel"] = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        weights[f"{key}/bias"] = rng.normal(scale=0.1, size=shape[-1])
    side = config.input_shape[0] - config.conv_kernel + 1
    num_primary = ((side - config.primary_kernel) // config.primary_strides + 1) ** 2 * config.primary_channels
    weights["digit/W"] = rng.normal(scale=0.05, size=(config.num_classes, num_primary, config.digit_dim,
                                                      config.primary_dim))
    return {key: value.astype(np.float32) for key, value in weights.items()}


def write_reference(path, weights: dict[str, np.ndarray], *, old_layout: bool, dense_names: list[str],
                    str_names: bool = False, skip: tuple[str, ...] = ()) -> None:
    """A Keras 2 weights file of the reference training model holding `weights` (our layout)."""
    W = weights["digit/W"]
    if old_layout:
        # The old layer predicted u_hat[j|i] = u[i] @ W[i, j]: [input capsules, classes, in dim, out dim], plus a
        # routing-logit bias.
        digitcaps = {"digitcaps/W:0": np.einsum("jidk->ijkd", W),
                     "digitcaps/bias:0": np.random.default_rng(9).normal(size=(1, W.shape[1], W.shape[0], 1, 1))}
    else:
        digitcaps = {"digitcaps/W:0": W}
    decoder = {}
    for i, name in enumerate(dense_names):
        decoder[f"{name}/kernel:0"] = weights[f"decoder/{i}/kernel"]
        decoder[f"{name}/bias:0"] = weights[f"decoder/{i}/bias"]
    groups = {
        "conv1": {"conv1/kernel:0": weights["conv1/kernel"], "conv1/bias:0": weights["conv1/bias"]},
        "primarycap_conv2d": {"primarycap_conv2d/kernel:0": weights["primary/kernel"],
                              "primarycap_conv2d/bias:0": weights["primary/bias"]},
        "digitcaps": digitcaps,
        "decoder": decoder,
    }
    encode = str if str_names else (lambda name: name.encode("utf8"))
    layer_names = [name for name in REFERENCE_LAYERS if name not in skip]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [encode(name) for name in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for layer in layer_names:
            group = f.create_group(layer)
            layer_weights = groups.get(layer, {})
            group.attrs["weight_names"] = [encode(name) for name in layer_weights]
            for name, value in layer_weights.items():
                group.create_dataset(name, data=value)


def assign_directly(net, weights: dict[str, np.ndarray]) -> None:
    layer = net.eval.get_layer
    layer("conv1").set_weights([weights["conv1/kernel"], weights["conv1/bias"]])
    layer("primary_capsules").conv.set_weights([weights["primary/kernel"], weights["primary/bias"]])
    layer("digit_capsules").set_weights([weights["digit/W"]])
    dense = [d for d in layer("decoder").layers if d.weights]
    for i, d in enumerate(dense):
        d.set_weights([weights[f"decoder/{i}/kernel"], weights[f"decoder/{i}/bias"]])


def outputs(net, images: np.ndarray) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(output) for output in net.eval(images)]


@pytest.mark.parametrize("old_layout, dense_names, str_names", [
    (False, ["dense_4", "dense_5", "dense_6"], False),  # Keras 2.0/2.1: global layer counters
    (True, ["decoder/dense_1", "decoder/dense_2", "decoder/dense_3"], True),  # later Keras 2: scoped names
], ids=["new-layout", "old-layout"])
def test_loaded_model_computes_as_if_assigned_directly(nets, tmp_path, old_layout, dense_names, str_names):
    loaded, expected = nets
    weights = random_model(ModelConfig(), seed=int(old_layout))
    path = tmp_path / "trained_model.h5"
    write_reference(path, weights, old_layout=old_layout, dense_names=dense_names, str_names=str_names)

    load_reference_weights(loaded, path)
    assign_directly(expected, weights)

    images = np.random.default_rng(2).random((4, 28, 28, 1), dtype=np.float32)
    lengths, reconstruction, capsules = outputs(expected, images)
    assert lengths.std() > 1e-3 and reconstruction.std() > 1e-3  # the comparison below is not between blanks
    for got, want in zip(outputs(loaded, images), (lengths, reconstruction, capsules), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert reference_model_config(path) == ModelConfig()


def test_is_reference_weights(nets, tmp_path):
    weights = random_model(ModelConfig(), seed=0)
    new, old = tmp_path / "new.h5", tmp_path / "old.h5"
    write_reference(new, weights, old_layout=False, dense_names=["dense_1", "dense_2", "dense_3"])
    write_reference(old, weights, old_layout=True, dense_names=["dense_1", "dense_2", "dense_3"], str_names=True)
    ours, text, empty = tmp_path / "ours.weights.h5", tmp_path / "notes.txt", tmp_path / "empty.h5"
    nets[0].save_weights(ours)
    text.write_text("not a weights file\n")
    empty.touch()
    assert is_reference_weights(new) and is_reference_weights(old)
    assert not any(is_reference_weights(path) for path in (ours, text, empty))


def test_wrong_shaped_digitcaps_W_is_named(tmp_path):
    weights = {**random_model(ModelConfig(), seed=0), "digit/W": np.ones((3, 4), np.float32)}
    path = tmp_path / "bad.h5"
    write_reference(path, weights, old_layout=False, dense_names=["dense_1", "dense_2", "dense_3"])
    with pytest.raises(ReferenceWeightsError, match=r"digitcaps W has shape \(3, 4\)"):
        read_reference_weights(path)


def test_missing_decoder_is_named(tmp_path):
    path = tmp_path / "no_decoder.h5"
    write_reference(path, random_model(ModelConfig(), seed=0), old_layout=False, dense_names=[], skip=("decoder",))
    assert is_reference_weights(path)
    with pytest.raises(ReferenceWeightsError, match="no 'decoder' layer"):
        read_reference_weights(path)


def test_other_sizes_give_their_config_and_do_not_fit_the_default_network(nets, tmp_path):
    config = ModelConfig(input_shape=(20, 20, 1), num_classes=5, conv_filters=16, conv_kernel=5, primary_channels=4,
                         primary_dim=6, primary_kernel=5, digit_dim=12, decoder_units=(32, 48))
    path = tmp_path / "small.h5"
    write_reference(path, random_model(config, seed=3), old_layout=True, dense_names=["d1", "d2", "d3"])
    assert reference_model_config(path) == config
    load_reference_weights(CapsNet(config), path)

    loaded = nets[0]
    before = keras.ops.convert_to_numpy(loaded.eval.get_layer("conv1").kernel)
    with pytest.raises(ReferenceWeightsError, match=r"conv1/kernel: the file has shape \[5, 5, 1, 16\], "
                                                    r"our model has \[9, 9, 1, 256\]"):
        load_reference_weights(loaded, path)
    # Shapes are all checked before anything is assigned.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.eval.get_layer("conv1").kernel), before)
