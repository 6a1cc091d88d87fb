"""The Attack page and the Routing page's "what the primary capsules see" through Streamlit's AppTest: controls change
what is shown, links reproduce it, the curves are the model cards', and models the page cannot fully attack (the
baseline CNN, a MultiMNIST model) say what it can do."""

import json
import re

import numpy as np
import pytest
from test_app_explorer import assert_clean, images, open_app, open_link, texts

from capsnet.assets import BASELINE_CARD, BASELINE_MODEL, FASHION_CARD, PRETRAINED_CARD
from capsnet.config import ModelConfig
from capsnet.explorer import attacking, state
from capsnet.explorer.navigation import PAGES
from capsnet.model import CapsNet, save_model
from capsnet.sample import load_test_digits

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

ATTACK = PAGES["attack"]


@pytest.fixture
def shipped_app(monkeypatch, tmp_path):
    """The shipped models, as a fresh checkout offers them."""
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))


def heading(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("## Prediction"))


def verdict(at) -> str:
    return next(c.value for c in at.caption if " · " in c.value)


def flags(at) -> dict[str, tuple[bool, float, float]]:
    """'Adversarial' / 'Original' -> (flagged, distance, threshold), as the page words them."""
    found = {}
    for text in texts(at).splitlines():
        match = re.match(r"\*\*(\w+): (flagged|not flagged)\*\*: reconstruction distance ([\d.]+) (above|below) the "
                         r"threshold ([\d.]+)", text)
        if match:
            found[match[1]] = (match[2] == "flagged", float(match[3]), float(match[5]))
    return found


def chart(at, index: int = -1) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_controls_change_the_attack_and_land_in_the_url(shipped_app):
    at = open_app(ATTACK)
    assert_clean(at)
    at.selectbox(key=state.ATTACK_CLASS).set_value(7).run()
    assert heading(at).startswith("## Prediction: 7 →")
    start = images(at)
    at.slider(key=state.ATTACK_EPSILON).set_value(0.0).run()  # no budget: nothing moves
    assert_clean(at)
    assert heading(at) == "## Prediction: 7 → 7" and "did not change" in verdict(at)
    untouched = images(at)
    assert untouched["adversarial: what the model sees"] == untouched["test image #0: 7"]

    at.radio(key=state.ATTACK_METHOD).set_value("pgd").run()
    at.slider(key=state.ATTACK_EPSILON).set_value(0.3).run()
    at.selectbox(key=state.ATTACK_TARGET).set_value(3).run()
    assert_clean(at)
    assert heading(at) == "## Prediction: 7 → 3" and "The attack succeeded." in verdict(at)
    assert "PGD, 10 steps, ε = 0.3, targeted at class 3" in verdict(at)
    attacked = images(at)
    assert attacked["adversarial: what the model sees"] != start["adversarial: what the model sees"]
    reconstructions = ("reconstruction from capsule 3 (adversarial)", "reconstruction from capsule 7 (original)")
    assert attacked[reconstructions[0]] != attacked[reconstructions[1]]
    found = flags(at)
    for flagged, distance, limit in found.values():
        assert flagged == (distance > limit)  # the words follow the numbers
    assert found["Adversarial"][1] > found["Original"][1]  # the reconstruction of a 3 does not fit the attacked 7
    assert found["Adversarial"][0] and not found["Original"][0]
    assert dict(at.query_params).items() >= {"class": "7", "attack": "pgd", "eps": "0.3", "target": "3"}.items()
    bars = chart(at, 0)["data"]
    assert [trace["name"] for trace in bars] == ["original", "adversarial"]
    assert np.argmax(bars[0]["y"]) == 7 and np.argmax(bars[1]["y"]) == 3


def test_a_link_reproduces_the_attack(shipped_app):
    parameters = {"class": "2", "example": "3", "attack": "pgd", "eps": "0.15", "steps": "4", "target": "8"}
    linked = open_link(ATTACK, parameters)
    assert_clean(linked)
    assert linked.selectbox(key=state.ATTACK_CLASS).value == 2 and linked.number_input[0].value == 3
    assert linked.radio(key=state.ATTACK_METHOD).value == "pgd"
    assert linked.slider(key=state.ATTACK_EPSILON).value == 0.15 and linked.slider(key=state.ATTACK_STEPS).value == 4
    assert linked.selectbox(key=state.ATTACK_TARGET).value == 8
    by_hand = open_app(ATTACK)
    by_hand.selectbox(key=state.ATTACK_CLASS).set_value(2).run()
    by_hand.number_input(key=state.ATTACK_POSITION).set_value(3).run()
    by_hand.radio(key=state.ATTACK_METHOD).set_value("pgd").run()
    by_hand.slider(key=state.ATTACK_EPSILON).set_value(0.15).run()
    by_hand.slider(key=state.ATTACK_STEPS).set_value(4).run()
    by_hand.selectbox(key=state.ATTACK_TARGET).set_value(8).run()
    assert images(by_hand) == images(linked) and heading(by_hand) == heading(linked)
    assert {k: by_hand.query_params[k] for k in parameters} == parameters

    broken = open_link(ATTACK, {"eps": "0.9", "attack": "deepfool", "target": "99", "steps": "many", "class": "-1"})
    assert_clean(broken)
    assert broken.slider(key=state.ATTACK_EPSILON).value == attacking.DEFAULTS[state.ATTACK_EPSILON]
    assert broken.radio(key=state.ATTACK_METHOD).value == "fgsm"
    assert broken.selectbox(key=state.ATTACK_TARGET).value == attacking.UNTARGETED
    assert broken.selectbox(key=state.ATTACK_CLASS).value == 0


def test_another_page_can_send_a_test_digit(shipped_app):
    digits = load_test_digits("mnist")  # the full test set, or the shipped sample where MNIST is not yet here
    position = len(digits.labels) * 3 // 8
    at = open_app()
    at.session_state[state.ATTACK_PICK] = position  # what attacking.send_to_attack leaves for the page
    at.switch_page(ATTACK).run()
    assert_clean(at)
    label = int(digits.labels[position])
    caption = f"test image #{digits.indices[position]}: {label}"
    assert caption in images(at) and at.selectbox(key=state.ATTACK_CLASS).value == label
    linked = open_link(ATTACK, attacking.link_parameters(digits.labels, position))  # the same digit, by link
    assert caption in images(linked)


def test_the_curves_are_the_model_cards(shipped_app):
    at = open_app(ATTACK)
    assert_clean(at)
    figure = chart(at)
    card, cnn = (json.loads(path.read_text())["attack_curves"] for path in (PRETRAINED_CARD, BASELINE_CARD))
    panels = {}
    for trace in figure["data"]:
        panels.setdefault(trace["name"], []).append(trace["y"])
    shown = ("success_rate", "flagged", "auc")
    assert panels == {
        "Pretrained MNIST model (shipped): FGSM": [card["attacks"]["fgsm"][k] for k in shown],
        "Pretrained MNIST model (shipped): PGD": [card["attacks"]["pgd"][k] for k in shown],
        "Pretrained MNIST model (shipped): FGSM, failed": [card["attacks"]["fgsm"]["flagged_failed"]],
        "Pretrained MNIST model (shipped): PGD, failed": [card["attacks"]["pgd"]["flagged_failed"]],
        "Baseline CNN (shipped): FGSM": [cnn["attacks"]["fgsm"]["success_rate"]],
        "Baseline CNN (shipped): PGD": [cnn["attacks"]["pgd"]["success_rate"]],
    }
    assert f"{card['detection']['threshold']:.2f}" in texts(at) and "its model card" in " ".join(
        c.value for c in at.caption)


def test_the_fashion_model_names_its_classes(shipped_app):
    at = open_link(ATTACK, {"model": "fashion", "class": "9", "attack": "pgd", "eps": "0.2", "target": "0"})
    assert_clean(at)
    assert heading(at).startswith("## Prediction: Ankle boot →")
    assert at.selectbox(key=state.ATTACK_TARGET).options[:2] == ["none (untargeted)", "T-shirt/top"]
    assert "targeted at class 0" in verdict(at)
    card = json.loads(FASHION_CARD.read_text())["attack_curves"]
    names = {trace["name"] for trace in chart(at)["data"]}
    assert {name.removesuffix(", failed") for name in names} == {
        "Pretrained Fashion-MNIST model (shipped): FGSM", "Pretrained Fashion-MNIST model (shipped): PGD"}
    assert chart(at)["data"][0]["y"] == card["attacks"]["fgsm"]["success_rate"]  # the CNN knows MNIST only: alone


def test_the_baseline_cnn_is_attacked_without_detection(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(BASELINE_MODEL))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    at = open_link(ATTACK, {"class": "4", "attack": "pgd", "eps": "0.3"})
    assert_clean(at)
    assert "baseline CNN" in at.info[0].value and "no reconstruction" in at.info[0].value
    assert set(images(at)) == {"test image #4: 4", "perturbation (red: brighter, blue: darker, full colour at ±ε)",
                               "adversarial: what the model sees"}
    assert not flags(at)
    scores = chart(at, 0)
    assert scores["layout"]["title"]["text"] == "Class probabilities"
    assert sum(scores["data"][0]["y"]) == pytest.approx(1.0, abs=1e-4)
    card = json.loads(BASELINE_CARD.read_text())["attack_curves"]
    assert [trace["y"] for trace in chart(at)["data"]] == [card["attacks"]["fgsm"]["success_rate"],
                                                           card["attacks"]["pgd"]["success_rate"]]


def test_a_multimnist_model_is_told_what_the_page_does(monkeypatch, tmp_path):
    config = ModelConfig(input_shape=(36, 36, 1), dataset="multimnist", conv_filters=16, primary_channels=4,
                         decoder_units=(32, 64))
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(save_model(CapsNet(config), tmp_path / "multi.keras")))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    at = open_app(ATTACK)
    assert_clean(at)
    assert "two overlapping digits" in at.info[0].value and "Pick a one-digit model" in at.info[0].value
    assert not at.get("image") and not at.slider


def test_a_model_without_curves_is_measured_on_request(monkeypatch, tmp_path, random_model):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(attacking, "CURVE_DIGITS", 8)  # seconds, not half an hour
    at = open_app(ATTACK)
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1 and "the first 8 test digits" in " ".join(c.value for c in at.caption)
    at.button[0].click().run()
    assert_clean(at)
    data = chart(at)["data"]
    models = list(dict.fromkeys(trace["name"].split(": ")[0] for trace in data))
    assert models == ["$CAPSNET_WEIGHTS (random.keras)", "Baseline CNN (shipped)"]
    ours = [trace for trace in data if trace["name"].startswith("$CAPSNET_WEIGHTS")]
    assert len(ours) == 8 and all(y is None or 0 <= y <= 1 for trace in ours for y in trace["y"])


# --- the Routing page: what the primary capsules see ---------------------------------------------------------------

def test_routing_shows_what_the_primary_capsules_see(shipped_app):
    at = open_app(PAGES["routing"])
    assert_clean(at)
    shown = images(at)
    lengths_caption = next(c for c in shown if c.startswith("primary-capsule lengths: 32 types"))
    assert "CapsNet: the length of capsule 0" in shown and "baseline CNN: its logit for 0 (it reads 0)" in shown
    assert not any(c.startswith("conv1:") for c in shown)
    at.selectbox(key=state.ROUTING_CLASS).set_value(6).run()
    assert images(at)[lengths_caption] != shown[lengths_caption]  # another digit, other capsules fire
    at.toggle(key=state.ROUTING_CONV1).set_value(True).run()
    assert_clean(at)
    assert "conv1: 256 feature maps of 20×20, one colour scale (black: 0)" in images(at)
    assert at.query_params["conv1"] == "true"
    linked = open_link(PAGES["routing"], {"class": "6", "conv1": "true"})
    assert_clean(linked)
    assert images(linked) == images(at)
    fashion = open_link(PAGES["routing"], {"model": "fashion"})
    assert_clean(fashion)
    assert any("No baseline CNN for this dataset" in c.value for c in fashion.caption)
    assert "CapsNet: the length of capsule T-shirt/top" in images(fashion)


def test_without_a_usable_model_the_page_says_so(monkeypatch, tmp_path, no_shipped_models):
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    at = open_app(ATTACK)
    assert_clean(at)
    assert "no usable model to explore yet" in at.info[0].value
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(tmp_path / "bad.keras"))
    at = open_app(ATTACK)
    assert not at.exception
    assert "Cannot load the model" in at.error[0].value and "no usable model" in at.info[0].value
