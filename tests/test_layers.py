"""Capsule layers and the network: squash, routing, lengths, masking, shapes, parameters, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from capsnet.config import ModelConfig
from capsnet.layers import DigitCapsule, Length, Mask, PrimaryCapsule, squash
from capsnet.losses import margin_loss
from capsnet.model import CapsNet


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_squash_keeps_direction_and_bounds_length():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 16)).astype(np.float32) * rng.uniform(0.01, 100, size=(64, 1)).astype(np.float32)
    squashed = ops.convert_to_numpy(squash(vectors))
    lengths = np.linalg.norm(squashed, axis=-1)
    assert np.all(lengths >= 0) and np.all(lengths < 1)
    cosine = np.sum(squashed * vectors, -1) / (lengths * np.linalg.norm(vectors, axis=-1))
    np.testing.assert_allclose(cosine, 1.0, atol=1e-5)
    # Paper eq. 1: |v| = |s|^2 / (1 + |s|^2)
    norm = np.linalg.norm(vectors, axis=-1)
    np.testing.assert_allclose(lengths, norm**2 / (1 + norm**2), rtol=1e-4)


def test_squash_of_zero_is_zero():
    assert np.all(ops.convert_to_numpy(squash(np.zeros((2, 8), np.float32))) == 0)


def test_layer_shapes():
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    features = keras.layers.Conv2D(256, 9, activation="relu")(images)
    primary = PrimaryCapsule()(features)
    assert tuple(primary.shape) == (3, 1152, 8)
    layer = DigitCapsule(routings=3)
    digits = layer(primary)
    assert tuple(digits.shape) == (3, 10, 16)
    predictions, couplings, rounds = layer(primary, return_trace=True)
    assert tuple(predictions.shape) == (3, 10, 1152, 16)
    assert tuple(couplings.shape) == (3, 3, 10, 1152)
    assert tuple(rounds.shape) == (3, 3, 10, 16)
    np.testing.assert_allclose(ops.convert_to_numpy(rounds[:, -1]), ops.convert_to_numpy(digits), atol=1e-6)
    assert tuple(Length()(digits).shape) == (3, 10)
    assert tuple(Mask()(digits).shape) == (3, 160)


@pytest.mark.parametrize("routings", [1, 3])
def test_coupling_coefficients_sum_to_one_over_output_capsules(routings):
    primary = squash(np.random.default_rng(1).normal(size=(4, 1152, 8)).astype(np.float32))
    _, couplings, _ = DigitCapsule(routings=routings)(primary, return_trace=True)
    couplings = ops.convert_to_numpy(couplings)
    np.testing.assert_allclose(couplings.sum(axis=2), 1.0, atol=1e-5)
    # The first round is uniform; later rounds move away from it as agreement accumulates.
    np.testing.assert_allclose(couplings[:, 0], 0.1, atol=1e-6)
    if routings > 1:
        assert np.abs(couplings[:, -1] - 0.1).max() > 1e-4


def test_length_gradient_is_finite_at_zero():
    zeros = tf.zeros((2, 10, 16))
    with tf.GradientTape() as tape:
        tape.watch(zeros)
        total = tf.reduce_sum(Length()(zeros))
    gradient = tape.gradient(total, zeros).numpy()
    assert np.all(np.isfinite(gradient))


def test_mask_by_label_and_by_longest_capsule():
    capsules = np.zeros((2, 10, 16), np.float32)
    capsules[0, 3] = 0.5
    capsules[0, 7] = 0.1
    capsules[1, 1] = 0.9
    by_longest = ops.convert_to_numpy(Mask()(capsules)).reshape(2, 10, 16)
    assert np.all(by_longest[0, 3] == 0.5) and np.all(by_longest[0, 7] == 0)
    assert np.all(by_longest[1, 1] == 0.9)
    label = keras.utils.to_categorical([7, 1], 10)
    by_label = ops.convert_to_numpy(Mask()([capsules, label])).reshape(2, 10, 16)
    assert np.all(by_label[0, 7] == 0.1) and np.all(by_label[0, 3] == 0)


def test_margin_loss_matches_hand_computation():
    y_true = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    lengths = np.array([[0.05, 0.95, 0.3], [0.5, 0.2, 0.0]], np.float32)
    # Row 1: present 0.95 >= 0.9 -> 0; absent 0.05 < 0.1 -> 0; absent 0.3 -> 0.5 * 0.2^2 = 0.02.
    # Row 2: present 0.5 -> (0.4)^2 = 0.16; absent 0.2 -> 0.5 * 0.1^2 = 0.005; absent 0.0 -> 0.
    expected = np.array([0.02, 0.165], np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(margin_loss(y_true, lengths)), expected, rtol=1e-5)


def test_parameter_count_is_the_papers():
    net = CapsNet()
    assert net.train.count_params() == 8_215_568
    assert net.eval.count_params() == 8_215_568


def test_initial_capsules_are_not_vanishingly_small(mnist):
    """Glorot on W starts the digit capsules ~5e-8 long and training stalls; ours starts them 100x longer."""
    keras.utils.set_random_seed(0)
    net = CapsNet()
    images = mnist.x_train[:16, ..., None].astype(np.float32) / 255.0
    ours = np.linalg.norm(ops.convert_to_numpy(net.eval(images)[2]), axis=-1)
    weights = net.eval.get_layer("digit_capsules").W
    weights.assign(keras.initializers.GlorotUniform(seed=0)(weights.shape))
    glorot = np.linalg.norm(ops.convert_to_numpy(net.eval(images)[2]), axis=-1)
    assert ours.mean() > 100 * glorot.mean()
    assert ours.min() > 1e-6


def test_mixed_precision_keeps_capsule_math_in_float32():
    net = CapsNet(precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # building a model leaves the global policy alone
    assert net.eval.get_layer("conv1").compute_dtype == "bfloat16"
    for name in ("digit_capsules", "length"):
        assert net.eval.get_layer(name).compute_dtype == "float32"
    lengths, recon, capsules = net.eval(np.zeros((1, 28, 28, 1), np.float32))
    assert lengths.dtype == capsules.dtype == recon.dtype == "float32"


def test_weights_round_trip_gives_identical_outputs(tmp_path):
    keras.utils.set_random_seed(3)
    net = CapsNet()
    path = tmp_path / "net.weights.h5"
    net.save_weights(path)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    other = CapsNet()
    before = [ops.convert_to_numpy(t) for t in other.eval(images)]
    other.load_weights(path)
    after = [ops.convert_to_numpy(t) for t in other.eval(images)]
    expected = [ops.convert_to_numpy(t) for t in net.eval(images)]
    for a, e in zip(after, expected, strict=True):
        np.testing.assert_array_equal(a, e)
    assert not np.array_equal(before[0], expected[0])


def test_layers_serialize_without_custom_objects():
    layer = DigitCapsule(num_capsules=5, capsule_dim=4, routings=2, name="caps")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, DigitCapsule)
    assert (restored.num_capsules, restored.capsule_dim, restored.routings) == (5, 4, 2)
    primary = keras.layers.deserialize(keras.layers.serialize(PrimaryCapsule(4, 16, 5, 1)))
    assert (primary.capsule_dim, primary.n_channels, primary.kernel_size, primary.strides) == (4, 16, 5, 1)


def test_decoder_reads_only_the_selected_capsule():
    net = CapsNet(ModelConfig(routings=1))
    capsules = np.random.default_rng(0).normal(size=(1, 10, 16)).astype(np.float32) * 0.2
    one_hot = keras.utils.to_categorical([4], 10)
    image = ops.convert_to_numpy(net.decoder([capsules, one_hot]))
    changed = capsules.copy()
    changed[0, 2] += 1.0  # another class's capsule: must not matter
    same = ops.convert_to_numpy(net.decoder([changed, one_hot]))
    np.testing.assert_array_equal(image, same)
    changed[0, 4, 0] += 1.0
    assert not np.allclose(ops.convert_to_numpy(net.decoder([changed, one_hot])), image)


def test_routing_model_exposes_couplings():
    net = CapsNet()
    couplings = net.routing(np.zeros((2, 28, 28, 1), np.float32))["couplings"]
    assert tuple(couplings.shape) == (2, 3, 10, 1152)


@pytest.mark.parametrize("batch", [1, 23])
@pytest.mark.parametrize("kernel_size, strides, size", [(9, 2, 20), (3, 2, 7), (4, 3, 11), (3, 1, 6)])
def test_the_cpu_training_convolution_has_the_convolutions_gradients(kernel_size, strides, size, batch):
    """`capsnet.patchconv` (the primary capsules' convolution in training on TensorFlow's CPU) computes the input's
    gradient as folded matrix products, a few images at a time: same values and same gradients as `tf.nn.conv2d`,
    eagerly and in a graph (where its gradients are ordered, and the batch may be unknown until it runs), for even
    and odd image sizes and strides, and batches smaller and larger than its number of pieces."""
    from capsnet import patchconv

    rng = np.random.default_rng(3)
    images = tf.constant(rng.normal(size=(batch, size, size, 5)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 5, 6)).astype("float32"))
    out = (size - kernel_size) // strides + 1
    weights = tf.constant(rng.normal(size=(batch, out, out, 6)).astype("float32"))

    def value_and_grads(convolve, images):
        with tf.GradientTape() as tape:
            tape.watch([images, kernel])
            features = convolve(images, kernel)
            loss = tf.reduce_sum(features * weights)
        return [features, *tape.gradient(loss, [images, kernel])]

    expected = value_and_grads(lambda x, k: tf.nn.conv2d(x, k, strides, "VALID"), images)
    ours = lambda x, k: patchconv.convolve(x, k, strides)  # noqa: E731
    any_batch = tf.function(lambda x: value_and_grads(ours, x),
                            input_signature=[tf.TensorSpec((None, size, size, 5), tf.float32)])
    for got in (value_and_grads(ours, images), tf.function(lambda: value_and_grads(ours, images))(),
                any_batch(images)):
        for value, reference in zip(got, expected, strict=True):
            assert value.shape == reference.shape
            np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(reference))))


def test_primary_capsules_train_through_the_cpu_convolution(monkeypatch):
    """In training on TensorFlow's CPU the primary capsules take `patchconv`'s path (and only then), with the same
    capsules and the same gradients as the plain convolution's."""
    from capsnet import layers, patchconv

    calls = []
    convolve = patchconv.convolve
    monkeypatch.setattr(patchconv, "convolve", lambda *args: calls.append(args) or convolve(*args))
    layer = PrimaryCapsule(capsule_dim=8, n_channels=4, kernel_size=9, strides=2)
    x = tf.constant(np.random.default_rng(4).normal(size=(3, 20, 20, 16)).astype("float32"))
    layer.build(x.shape)

    def capsules_and_grads(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            capsules = layer(x, training=training)
            loss = tf.reduce_sum(capsules * tf.range(capsules.shape[-1], dtype="float32"))
        return [capsules, *tape.gradient(loss, [x, *layer.trainable_variables])]

    trained, inferred = capsules_and_grads(True), capsules_and_grads(False)
    assert len(calls) == (1 if layers.tensorflow_on_cpu() else 0)
    for value, reference in zip(trained, inferred, strict=True):
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-5)
