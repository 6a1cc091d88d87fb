"""capsnet.attack: FGSM and PGD against a linear classifier whose gradient is known by hand, the DARCCC threshold and
ROC AUC on constructed distances, the sweeps on the shipped CapsNet, the CLI, and the same attack on JAX."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import REPO
from test_cli import capsnet
from train_support import write_tiny_mnist

from capsnet import attack
from capsnet.assets import BASELINE_MODEL
from capsnet.attack import Attack, AttackModel, detection_threshold, fgsm, flagged_share, pgd, roc_auc
from capsnet.inference import load_network

# A linear classifier on 2x2 images: s = x.ravel() @ W. Class 0 scores highest on the grey image below; the margin
# against it comes from class 1, whose column minus class 0's has the sign pattern SIGN.
W = np.array([[3.0, 1.0, 0.0], [-2.0, 1.0, 0.5], [1.0, 2.0, -1.0], [-1.0, -3.5, 0.5]], np.float32)
SIGN = np.sign(W[:, 1] - W[:, 0]).reshape(2, 2)  # [[-1, +1], [+1, -1]]


def linear_classifier() -> keras.Model:
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)])
    model.layers[-1].set_weights([W])
    return model


@pytest.fixture(scope="module")
def linear() -> AttackModel:
    return AttackModel.of(linear_classifier())


GREY = np.full((1, 2, 2), 0.5, np.float32)


def test_the_linear_classifier_is_as_described(linear):
    scores = linear.scores(GREY)[0]
    assert np.argmax(scores) == 0 and np.argsort(scores)[-2] == 1  # class 0 first, class 1 the runner-up
    assert np.allclose(linear.margin_gradient(GREY, [0])[0], (W[:, 1] - W[:, 0]).reshape(2, 2))
    assert np.allclose(linear.score_gradient(GREY, [2])[0], W[:, 2].reshape(2, 2))


def test_fgsm_moves_every_pixel_by_epsilon_along_the_gradients_sign(linear):
    adversarial = fgsm(linear, GREY, [0], 0.1)
    assert np.allclose(adversarial[0], 0.5 + 0.1 * SIGN)
    assert linear.scores(adversarial)[0, 1] - linear.scores(adversarial)[0, 0] > \
        linear.scores(GREY)[0, 1] - linear.scores(GREY)[0, 0]  # the margin to class 1 shrank


def test_targeted_fgsm_moves_towards_the_target(linear):
    """Towards class 2: minimise max_{k != 2} s_k - s_2; class 0 is the best other, so the step is sign(w2 - w0)."""
    adversarial = fgsm(linear, GREY, [2], 0.2, targeted=True)
    assert np.allclose(adversarial[0], 0.5 + 0.2 * np.sign(W[:, 2] - W[:, 0]).reshape(2, 2))


def test_attacks_stay_in_the_pixel_range(linear):
    """On this image class 2 is the runner-up: the step is sign(w2 - w0) = (-, +, -, +), down where the pixels are 0
    and up where they are 1, so every pixel stays where it is."""
    corners = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
    step = np.sign(linear.margin_gradient(corners, [0]))
    assert np.array_equal(step[0], np.sign(W[:, 2] - W[:, 0]).reshape(2, 2))
    assert np.allclose(fgsm(linear, corners, [0], 0.3), corners)
    assert np.allclose(pgd(linear, corners, [0], 0.3, steps=3), corners)


def test_pgd_is_projected_into_the_epsilon_ball(linear):
    one_step = pgd(linear, GREY, [0], 0.1, steps=1)
    assert np.allclose(one_step, fgsm(linear, GREY, [0], 0.1))  # one step of 2.5 eps, projected: FGSM
    # Five steps of 0.05 along a constant gradient sign: 0.25 in all, cut back to the ball's face at 0.1.
    assert np.allclose(pgd(linear, GREY, [0], 0.1, steps=5)[0], 0.5 + 0.1 * SIGN)
    small = pgd(linear, GREY, [0], 0.1, steps=5, step_size=0.01)  # 0.05 in all: inside the ball
    assert np.allclose(small[0], 0.5 + 0.05 * SIGN)


def test_pgd_follows_the_gradient_as_it_changes():
    """Two pixels p, q and scores s0 = 0, s1 = p + q, s2 = 3q - 1, true class 0. At (0.1, 0.5) class 1 is the
    runner-up: the first step raises both pixels. At (0.25, 0.65) class 2 has overtaken it (0.95 against 0.9): the
    margin's gradient is now class 2's, (0, 3), so the second step raises q alone. A gradient computed once would have
    raised p again."""
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.layers[-1].set_weights([np.array([[0, 1, 0], [0, 1, 3], [0, 0, 0], [0, 0, 0]], np.float32),
                                  np.array([0, 0, -1], np.float32)])
    target = AttackModel.of(model)
    image = np.array([[[0.1, 0.5], [0.0, 0.0]]], np.float32)
    moved = pgd(target, image, [0], 0.3, steps=2, step_size=0.15)
    assert np.allclose(moved[0], [[0.25, 0.8], [0.0, 0.0]])  # q: 0.5 + 0.3, the ball's face


def test_uint8_pixels_are_attacked_as_their_float_versions(linear):
    """The data layer and `assets/test_digits.npz` hold uint8 pixels: as 0-255 floats an epsilon of 0.1 would move
    nothing that shows, and the reconstruction distances would be 255 times too large."""
    pixels = np.array([[[128, 0], [255, 64]]], np.uint8)
    floats = pixels / np.float32(255)
    assert np.allclose(linear.scores(pixels), linear.scores(floats))
    assert np.allclose(fgsm(linear, pixels, [0], 0.1), fgsm(linear, floats, [0], 0.1))
    assert np.allclose(pgd(linear, pixels, [0], 0.1, steps=3), pgd(linear, floats, [0], 0.1, steps=3))
    assert np.allclose(attack.reconstruction_distances(pixels, floats * 0), np.linalg.norm(floats))
    with pytest.raises(ValueError, match="divide by 255"):
        fgsm(linear, pixels.astype(np.float32), [0], 0.1)


def test_attack_names_its_method_and_refuses_bad_ones(linear):
    assert np.allclose(Attack("fgsm", 0.1).run(linear, GREY, [0]), fgsm(linear, GREY, [0], 0.1))
    assert np.allclose(Attack("pgd", 0.1, steps=1, target=2).run(linear, GREY, [0]),
                       fgsm(linear, GREY, [2], 0.1, targeted=True))
    assert "targeted at class 2" in Attack("pgd", 0.1, steps=4, target=2).describe()
    with pytest.raises(ValueError):
        Attack("deepfool", 0.1)
    with pytest.raises(ValueError):
        Attack("pgd", 0.1, steps=0)


# --- detection by reconstruction ----------------------------------------------------------------------------------

def test_threshold_and_flagged_share_on_constructed_distances():
    clean = np.arange(1, 101, dtype=np.float64)  # 1 … 100
    threshold = detection_threshold(clean)
    assert 95 < threshold < 96
    assert flagged_share(clean, threshold) == 0.05  # by construction: 5% of clean digits are flagged
    assert flagged_share(np.array([50.0, 96.0, 200.0, 1.0]), threshold) == 0.5
    assert flagged_share(np.array([]), threshold) is None
    assert detection_threshold(clean, 50) == 50.5


def test_roc_auc_on_constructed_distances():
    assert roc_auc([1, 2, 3], [4, 5]) == 1.0  # every adversarial digit further than every clean one
    assert roc_auc([4, 5], [1, 2, 3]) == 0.0
    assert roc_auc([2, 2, 2], [2, 2]) == 0.5  # ties count half
    assert roc_auc([1, 2, 3], [2, 4]) == 0.75  # pairs: 2 beats 1, ties 2, loses to 3; 4 beats all three -> 4.5/6
    assert roc_auc([], [1.0]) is None
    rng = np.random.default_rng(0)
    negatives, positives = rng.integers(0, 6, 40), rng.integers(2, 9, 30)
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for n, p in itertools.product(negatives, positives)]
    assert roc_auc(negatives, positives) == pytest.approx(np.mean(pairs))  # the definition, pair by pair


# --- on real networks ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_capsnet():
    return load_network()


@pytest.mark.slow
def test_sweeps_on_the_shipped_capsnet(shipped_capsnet, mnist):
    images, labels = mnist.x_test[:24], mnist.y_test[:24]
    curves = attack.measure(shipped_capsnet, images, labels, epsilons=(0.0, 0.3), pgd_steps=3)
    fgsm_curve, pgd_curve = curves["attacks"]["fgsm"], curves["attacks"]["pgd"]
    assert fgsm_curve["success_rate"][0] == pgd_curve["success_rate"][0] == 0.0  # epsilon 0 changes nothing
    assert pgd_curve["success_rate"][1] > 0.3  # 0.3 is a large budget: most digits fall
    detection = curves["detection"]
    examine = attack.capsnet_examiner(shipped_capsnet)
    predicted, clean = examine(images.astype(np.float32) / 255)
    assert detection["threshold"] == pytest.approx(detection_threshold(clean), abs=1e-3)
    assert curves["clean_correct"] == int((predicted == labels).sum())
    assert 0.0 <= pgd_curve["flagged"][1] <= 1.0 and 0.0 <= pgd_curve["auc"][1] <= 1.0
    assert fgsm_curve["flagged"][0] is None  # no successful attack at epsilon 0: nothing to flag


def test_the_cnn_is_attacked_through_its_logits(mnist):
    cnn = load_network(BASELINE_MODEL)
    images = mnist.x_test[:16].astype(np.float32) / 255
    target = AttackModel.of(cnn)
    logits = target.scores(images)
    probabilities = cnn.eval.predict(images[..., None], verbose=0)
    assert np.allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), probabilities, atol=1e-5)
    adversarial = pgd(target, images, mnist.y_test[:16], 0.2, steps=5)
    assert np.abs(adversarial - images).max() <= 0.2 + 1e-6
    assert (np.argmax(target.scores(adversarial), 1) != mnist.y_test[:16]).mean() > 0.5
    curves = attack.measure(cnn, mnist.x_test[:16], mnist.y_test[:16], epsilons=(0.2,), pgd_steps=2)
    assert curves["detection"] is None and "flagged" not in curves["attacks"]["pgd"]  # no reconstruction


@pytest.mark.slow
def test_cli_prints_the_curves(tmp_path, mnist):
    data = write_tiny_mnist(mnist, tmp_path / "data", n_test=12)
    result = capsnet("test", "--attack", "-w", BASELINE_MODEL, "--save_dir", tmp_path / "out", data=data)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    curves = report["attack_curves"]
    assert curves["test_digits"] == 12 and curves["epsilons"] == list(attack.EPSILONS)
    assert len(curves["attacks"]["pgd"]["success_rate"]) == len(attack.EPSILONS)
    assert "attack: pgd eps=0.3" in result.stderr


@pytest.mark.slow
def test_the_attack_runs_on_jax(tmp_path):
    """The same hand-checked FGSM and PGD with Keras on JAX, in a process where TensorFlow cannot be imported."""
    pytest.importorskip("jax")
    blocker = tmp_path / "no-tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is not installed here')\n")
    script = textwrap.dedent(f"""
        import json
        import keras
        import numpy as np
        from capsnet.attack import AttackModel, fgsm, pgd

        model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(3, use_bias=False)])
        model.layers[-1].set_weights([np.array({W.tolist()}, np.float32)])
        target = AttackModel.of(model)
        grey = np.full((1, 2, 2), 0.5, np.float32)
        print(json.dumps({{"backend": keras.backend.backend(), "fgsm": fgsm(target, grey, [0], 0.1).tolist(),
                          "pgd": pgd(target, grey, [0], 0.1, steps=5).tolist()}}))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert np.allclose(report["fgsm"][0], 0.5 + 0.1 * SIGN) and np.allclose(report["pgd"][0], 0.5 + 0.1 * SIGN)


def test_multimnist_models_are_out_of_scope():
    from capsnet.config import ModelConfig

    assert attack.applies_to(load_network(BASELINE_MODEL))
    assert not attack.applies_to(type("Net", (), {"config": ModelConfig(input_shape=(36, 36, 1))})())


def test_card_entries(mnist):
    """What `python -m capsnet.tools.publish` adds to a card: the curves on the first N test digits; nothing for a
    network the attacks do not fit."""
    from capsnet.config import ModelConfig
    from capsnet.model import CapsNet

    narrow = ModelConfig(conv_filters=16, primary_channels=4, decoder_units=(32, 64))
    entries = attack.attack_card_entries(CapsNet(narrow), mnist, digits=6)
    curves = entries["attack_curves"]
    assert curves["test_digits"] == 6 and round(6 * curves["detection"]["clean_flagged"]) <= 1  # above the 95th %
    assert set(curves["attacks"]) == {"fgsm", "pgd"}
    multi = ModelConfig(input_shape=(36, 36, 1), dataset="multimnist", conv_filters=16, primary_channels=4,
                        decoder_units=(32, 64))
    assert attack.attack_card_entries(CapsNet(multi), mnist, digits=6) == {}
