"""The Overlap page (MultiMNIST) through Streamlit's AppTest: it reads a pair, its controls change what it shows, a
link reproduces it, and every other page says what it can do with a model of pairs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_app_explorer import assert_clean, images, open_link

from capsnet.config import ModelConfig, TrainConfig
from capsnet.explorer import state
from capsnet.explorer.navigation import PAGES
from capsnet.model import build_network, save_model

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    """An untrained MultiMNIST CapsNet (narrow, so that it compiles fast): 36x36 inputs, two digits per image."""
    narrow = ModelConfig(conv_filters=32, primary_channels=8, decoder_units=(32, 64))
    config = TrainConfig(dataset="multimnist", model=narrow)
    return save_model(build_network(config.model), tmp_path_factory.mktemp("models") / "multimnist.keras")


@pytest.fixture
def pair_env(monkeypatch, pair_model, tmp_path, no_shipped_models):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(pair_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    return tmp_path


def verdict(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Reads"))


def test_a_test_pair_is_read_and_pulled_apart(pair_env, mnist):
    from capsnet import multimnist

    at = open_link(PAGES["overlap"])
    assert_clean(at)
    pairs = multimnist.test_pairs(mnist.x_test, mnist.y_test)
    a, b = pairs.labels[0]
    caption = next(c for c in images(at) if c.startswith("test pair #0"))
    assert f": {a} (test image #{pairs.sources[0, 0]}) and {b} (#{pairs.sources[0, 1]})" in caption
    assert f"the digits are {a} and {b}" in verdict(at)
    shown = images(at)
    assert "reconstructions over the input (red, green)" in shown
    assert sum(c.startswith("capsule ") and c.endswith(" alone") for c in shown) == 2
    # Another pair: another input, another link.
    at.number_input(key=state.OVERLAP_PAIR).set_value(5).run()
    assert_clean(at)
    assert at.query_params["pair"] == "5"
    assert any(c.startswith("test pair #5") for c in images(at)) and images(at) != shown


def test_compose_places_two_test_digits_and_the_link_reproduces_it(pair_env):
    at = open_link(PAGES["overlap"])
    at.radio(key=state.OVERLAP_SOURCE).set_value("Compose").run()
    at.selectbox(key=state.OVERLAP_CLASS[0]).set_value(1).run()
    at.slider(key=state.OVERLAP_SHIFT_X[1]).set_value(-4).run()
    assert_clean(at)
    parameters = dict(at.query_params)
    assert parameters["digits"] == "Compose" and parameters["class_a"] == "1" and parameters["dx_b"] == "-4"
    first = images(at)
    assert any(c.startswith("1 (test image") and "moved +2, -4" in c for c in first)
    again = open_link(PAGES["overlap"], parameters)  # a new session from the link
    assert_clean(again)
    assert images(again) == first
    assert again.selectbox(key=state.OVERLAP_CLASS[0]).value == 1
    assert again.slider(key=state.OVERLAP_SHIFT_X[1]).value == -4
    broken = open_link(PAGES["overlap"], {"digits": "Compose", "dx_a": "9", "class_b": "eleven"})
    assert_clean(broken)
    assert broken.slider(key=state.OVERLAP_SHIFT_X[0]).value == -2  # out of range: the default


def test_reconstruct_as_any_class_and_the_capsule_sliders(pair_env):
    at = open_link(PAGES["overlap"])
    before = images(at)
    at.selectbox(key=state.OVERLAP_AS_CLASS).set_value(9).run()
    assert "from capsule 9" in images(at) and at.query_params["as"] == "9"
    edited_before = images(at)["with the edited capsule"]
    at.slider[4].set_value(0.25).run()  # a capsule dimension: the edited reconstruction changes, the input does not
    assert_clean(at)
    after = images(at)
    assert after["with the edited capsule"] != edited_before
    assert after[next(c for c in after if c.startswith("test pair"))] == before[next(c for c in before
                                                                                     if c.startswith("test pair"))]
    at.radio(key=state.OVERLAP_EDITED).set_value(1).run()  # the other capsule: sliders of its own, at zero
    assert at.query_params["edit"] == "1"
    assert all(s.value == 0.0 for s in at.slider if s.key and s.key.startswith("overlap.dim."))


@pytest.mark.parametrize("page", [PAGES["draw"], PAGES["routing"], PAGES["latent"], PAGES["reconstruct"],
                                  PAGES["robustness"]])
def test_single_digit_pages_send_a_pair_model_to_the_overlap_page(pair_env, page):
    at = open_link(page)
    assert_clean(at)
    assert any("reads two overlapping digits" in info.value for info in at.info)


def test_the_overlap_page_says_what_it_needs_from_a_single_digit_model(monkeypatch, random_model, tmp_path,
                                                                       no_shipped_models):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    at = open_link(PAGES["overlap"])
    assert_clean(at)
    assert any("needs a CapsNet trained on MultiMNIST" in info.value for info in at.info)


def test_home_says_when_the_shipped_pair_model_is_an_interim_checkpoint(monkeypatch, pair_model, tmp_path,
                                                                           no_shipped_models):
    """`publish --unfinished` ships a run's best checkpoint so far; Home shows its card's figure and says so."""
    import json

    from capsnet.explorer import catalog

    card = tmp_path / "capsnet_multimnist_card.json"
    card.write_text(json.dumps({"test_accuracy": 0.7011, "epochs_trained": 2, "date": "2026-12-07",
                                "interim": {"checkpoint_epoch": 2, "epochs_planned": 50, "run_state": "running"}}))
    monkeypatch.setattr(catalog, "MULTIMNIST_MODEL", pair_model)
    monkeypatch.setattr(catalog, "MULTIMNIST_CARD", card)
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    assert_clean(at)
    assert at.sidebar.selectbox[0].value == "multimnist"
    assert {m.label: m.value for m in at.metric}["Test pairs right"] == "70.11%"
    assert any("interim model" in info.value and "epoch 2 of 50" in info.value for info in at.info)
    card.write_text(json.dumps({"test_accuracy": 0.948, "epochs_trained": 50}))  # the finished model's card
    at.run()
    assert not any("interim model" in info.value for info in at.info)


def test_a_drawing_of_two_digits_becomes_a_centred_36_pixel_input(mnist):
    from capsnet import multimnist

    # Two real digits over each other, drawn large (10x), as on the canvas.
    image, _ = multimnist.compose_pair(mnist.x_test[0], mnist.x_test[1], (-3, -3), (3, 3))
    large = np.kron(image / 255.0, np.ones((8, 8)))
    framed = multimnist.from_drawing(large)
    assert framed.shape == (36, 36)
    rows, cols = np.nonzero(framed > 0.1)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in range(26, 31)  # the span, about 28 px
    centre = (np.indices(framed.shape) * framed).reshape(2, -1).sum(axis=1) / framed.sum()
    assert np.all(np.abs(centre - 18) <= 1)
    from capsnet.preprocess import NoDigit

    with pytest.raises(NoDigit):
        multimnist.from_drawing(np.zeros((100, 100)))
