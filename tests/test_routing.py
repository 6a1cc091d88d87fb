"""The Routing page: what it shows is the model's own routing, and the page's controls change what it shows."""

import numpy as np
import pytest
from test_app_explorer import assert_clean, open_app

from capsnet.config import ModelConfig
from capsnet.explorer import explore, state
from capsnet.explorer.navigation import PAGES
from capsnet.inference import Predictor, load_capsnet
from capsnet.layers import squash
from capsnet.sample import load_sample


def procedure_1(primary: np.ndarray, weights: np.ndarray, routings: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's routing, written out in NumPy from the primary capsules and W: couplings and outputs per round."""
    votes = np.einsum("ik,jidk->jid", primary, weights)
    logits = np.zeros(votes.shape[:2])
    couplings, outputs = [], []
    for _ in range(routings):
        c = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
        v = np.asarray(squash(np.einsum("ji,jid->jd", c, votes)))
        logits = logits + np.einsum("jd,jid->ji", v, votes)
        couplings.append(c)
        outputs.append(v)
    return np.stack(couplings), np.stack(outputs)


@pytest.fixture(scope="module")
def shipped():
    net = load_capsnet()
    return net, Predictor(net)


def test_the_page_shows_the_models_own_routing(shipped):
    net, predictor = shipped
    sample = load_sample()
    image = sample.images[0].astype(np.float32) / 255
    trace = predictor.route(image)
    weights = net.eval.get_layer("digit_capsules").get_weights()[0]
    couplings, outputs = procedure_1(trace.primary.astype(np.float64), weights.astype(np.float64), 3)
    np.testing.assert_allclose(trace.couplings, couplings, atol=1e-5)
    np.testing.assert_allclose(trace.capsules, outputs, atol=1e-5)
    prediction = predictor.predict(image)
    np.testing.assert_allclose(trace.capsules[-1], prediction.capsules, atol=1e-5)  # the last round is the output
    assert int(np.argmax(trace.lengths[-1])) == prediction.digit == sample.labels[0]
    # Agreement sharpens the decision: the winner's share of the couplings grows round after round.
    winner = prediction.digit
    assert trace.couplings[0, winner].mean() == pytest.approx(0.1)
    assert trace.couplings[-1, winner].mean() > trace.couplings[1, winner].mean() > 0.1


def test_receptive_fields_cover_the_image_as_the_convolutions_do():
    assert explore.receptive_field(0, 0) == (0, 0, 17)
    top, left, size = explore.receptive_field(5, 5)
    assert top + size == 27 and left + size == 27  # 9 + 8 + 2 * 5: the last position sees up to pixel 26
    for index in (0, 31, 32, 1151):
        row, column, kind = explore.capsule_position(index)
        one_hot = np.zeros((1, 10, 1152))
        one_hot[0, 3, index] = 1
        assert explore.coupling_map(one_hot, 3)[0, row, column] == pytest.approx(1 / 32)  # the same layout
        assert kind == index % 32


def test_votes_and_senders(shipped):
    _, predictor = shipped
    image = load_sample().images[1].astype(np.float32) / 255
    trace = predictor.route(image)
    winner = int(np.argmax(trace.lengths[-1]))
    couplings = trace.couplings[-1]
    points, agreed = explore.vote_projection(trace.predictions, couplings, winner)
    assert points.shape == (1152, 2) and agreed.shape == (2,)
    assert points[:, 0].var() >= points[:, 1].var()  # principal components, in order
    heavy = couplings[winner] > np.quantile(couplings[winner], 0.9)
    # The coupling-weighted mean sits with the strongly coupled votes, away from the uniform mean (the origin).
    assert np.linalg.norm(agreed - points[heavy].mean(axis=0)) < np.linalg.norm(points[heavy].mean(axis=0))
    sent = explore.contributions(trace.predictions, couplings, winner)
    heat = explore.sender_heatmap(sent)
    assert heat.shape == (28, 28) and heat.max() == pytest.approx(1.0)
    assert heat[image > 0.5].mean() > heat[image == 0].mean()  # votes come from where the ink is
    only_corner = np.zeros(1152)
    only_corner[:32] = 1.0  # position (0, 0): pixels 0-16 only
    corner = explore.sender_heatmap(only_corner)
    assert corner[:17, :17].min() == 1.0 and corner[17:, :].max() == 0.0 and corner[:, 17:].max() == 0.0
    overlay = explore.heat_overlay(image, heat)
    assert overlay.shape == (28, 28, 3) and 0 <= overlay.min() and overlay.max() <= 1


def test_routing_page_steps_through_the_rounds(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))  # the shipped model: routing worth watching
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    at = open_app(PAGES["routing"])
    assert_clean(at)
    assert at.select_slider[0].value == 3
    last = at.markdown
    final_heading = next(m.value for m in last if m.value.startswith("## Round"))
    assert final_heading.startswith("## Round 3: ")
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    at.select_slider(key=state.ROUTING_ROUND).set_value(1).run()
    assert_clean(at)
    assert next(m.value for m in at.markdown if m.value.startswith("## Round")).startswith("## Round 1: ")
    changed = [a != b for a, b in zip(charts, [c.proto.spec for c in at.get("plotly_chart")], strict=True)]
    assert changed == [True, True, True, True]  # lengths, rounds marker, couplings, votes all follow the round
    at.selectbox(key=state.ROUTING_CLASS).set_value(7).run()
    assert_clean(at)
    assert ": 7" in " ".join(i.captions[0] for i in at.get("image") if i.captions)


def test_a_one_routing_model_says_there_is_nothing_to_step_through(monkeypatch, tmp_path):
    from capsnet.config import ModelConfig
    from capsnet.model import CapsNet, save_model

    path = save_model(CapsNet(ModelConfig(routings=1)), tmp_path / "r1.keras")
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(path))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    at = open_app(PAGES["routing"])
    assert_clean(at)
    assert not at.select_slider and "routes once" in at.info[0].value


@pytest.mark.slow
def test_routing_an_upload_and_refusing_a_bad_one(monkeypatch, tmp_path):
    from test_app_explorer import png

    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    sample = load_sample()
    at = open_app(PAGES["routing"])
    at.radio(key=state.ROUTING_SOURCE).set_value("Upload").run()
    scan = 255 - np.kron(sample.images[2], np.ones((6, 6), np.uint8))  # dark ink on white paper
    at.file_uploader[0].set_value(("scan.png", png(scan), "image/png")).run()
    assert_clean(at)
    heading = next(m.value for m in at.markdown if m.value.startswith("## Round"))
    assert heading == f"## Round 3: {sample.labels[2]}"
    at.file_uploader[0].set_value(("broken.png", b"not an image", "image/png")).run()
    assert_clean(at)
    assert at.warning[0].value.startswith("Could not use broken.png:")


def test_the_layout_follows_the_models_config():
    """36x36 images (MultiMNIST) give a 10x10 grid of primary capsules: maps, positions and heat follow the config."""
    config = ModelConfig(input_shape=(36, 36, 1))
    assert (config.primary_grid, config.primary_capsules, config.receptive_field) == (10, 3200, 17)
    index = (7 * 10 + 9) * 32 + 5
    assert explore.capsule_position(index, config) == (7, 9, 5)
    one_hot = np.zeros((1, 10, 3200))
    one_hot[0, 2, index] = 1
    assert explore.coupling_map(one_hot, 2, config)[0, 7, 9] == pytest.approx(1 / 32)
    heat = explore.sender_heatmap(one_hot[0, 2], config)
    assert heat.shape == (36, 36) and heat[14:31, 18:35].min() == 1.0 and heat.sum() == 17 * 17
    rows = explore.top_senders(one_hot[0, 2], one_hot[0, 2], config, 1)
    assert rows[0]["position"] == "(7, 9)" and rows[0]["pixels"] == "rows 14–30, cols 18–34"
