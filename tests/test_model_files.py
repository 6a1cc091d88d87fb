"""Model files: a `.keras` file carries its architecture, loads in safe mode, and nothing else passes for a CapsNet."""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

from capsnet.config import ModelConfig
from capsnet.inference import ModelLoadError, Predictor, load_capsnet
from capsnet.model import CapsNet, save_model

IMAGES = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def one_routing(tmp_path_factory):
    keras.utils.set_random_seed(7)
    net = CapsNet(ModelConfig(routings=1), precision="mixed_bfloat16")
    return net, save_model(net, tmp_path_factory.mktemp("models") / "r1.keras")


def test_a_keras_file_carries_its_architecture(one_routing):
    net, path = one_routing
    with zipfile.ZipFile(path) as archive:  # the architecture is in the file itself, as Keras' config
        config = json.loads(archive.read("config.json"))
        assert not any(name.startswith("optimizer") for name in archive.namelist())
    assert config["registered_name"] == "capsnet>CapsNet" and config["config"]["config"]["routings"] == 1
    loaded = load_capsnet(path)
    assert isinstance(loaded, CapsNet) and loaded.config == ModelConfig(routings=1)
    assert tuple(loaded.routing(IMAGES)["couplings"].shape) == (3, 1, 10, 1152)  # it routes once, as trained
    assert loaded.eval.get_layer("conv1").compute_dtype == "float32"  # inference in float32 whatever the training
    for ours, theirs in zip(loaded.eval(IMAGES), net.eval(IMAGES), strict=True):  # bf16 compute in the original
        np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs), atol=0.02)


def test_loading_leaves_the_global_dtype_policy_alone(one_routing):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        load_capsnet(one_routing[1])
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
    load_capsnet(one_routing[1])
    assert keras.config.dtype_policy().name == "float32"


def test_routings_can_be_overridden_with_the_same_weights(one_routing):
    net, path = one_routing
    three = load_capsnet(path, routings=3)
    assert three.config.routings == 3 and tuple(three.routing(IMAGES)["couplings"].shape) == (3, 3, 10, 1152)
    np.testing.assert_array_equal(three.eval.get_layer("digit_capsules").get_weights()[0],
                                  net.eval.get_layer("digit_capsules").get_weights()[0])
    assert Predictor(three).predict(IMAGES[0, ..., 0]).lengths.shape == (10,)


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="lambda.keras is not a readable CapsNet model file"):
        load_capsnet(path)


def test_another_keras_model_is_refused(tmp_path):
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)), name="mlp")
    path = tmp_path / "mlp.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="another kind.*'mlp'"):
        load_capsnet(path)


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", b"", b"just text"], ids=["truncated", "empty", "text"])
def test_broken_files_are_refused(tmp_path, content):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="broken.keras is not a readable CapsNet model file"):
        load_capsnet(path)


def test_a_bare_weights_file_needs_its_run(one_routing, tmp_path):
    net, _ = one_routing
    net.save_weights(tmp_path / "loose.weights.h5")
    with pytest.raises(ModelLoadError, match="nothing says which architecture"):
        load_capsnet(tmp_path / "loose.weights.h5")
    (tmp_path / "config.json").write_text(json.dumps({"model": {"routings": 1}}))  # as in a run directory
    assert load_capsnet(tmp_path / "loose.weights.h5").config.routings == 1
