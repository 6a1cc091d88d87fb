"""The Robustness page: its sliders transform the digit and the prediction follows; the sweeps are drawn."""

import json

import pytest
from test_app_explorer import assert_clean, open_app

from capsnet.assets import BASELINE_CARD, PRETRAINED_CARD
from capsnet.explorer import resources, state
from capsnet.explorer.navigation import PAGES


@pytest.fixture
def shipped_model_app(monkeypatch, tmp_path):
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)  # the shipped model: predictions worth following
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(resources, "SWEEP_DIGITS", 40)  # the page's sweeps on 40 digits: seconds, not minutes


def heading(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("## Prediction"))


def test_sliders_move_the_digit_and_the_prediction_follows(shipped_model_app):
    at = open_app(PAGES["robustness"])
    assert_clean(at)
    at.selectbox(key=state.ROBUST_CLASS).set_value(6).run()
    assert heading(at) == "## Prediction: 6"
    untouched = {i.captions[0]: i.value[0] for i in at.get("image") if i.captions}
    at.slider(key=state.ROBUST_TRANSFORM + "rotation").set_value(180 / 2).run()
    at.slider(key=state.ROBUST_TRANSFORM + "scale").set_value(1.0).run()
    assert_clean(at)
    turned = {i.captions[0]: i.value[0] for i in at.get("image") if i.captions}
    assert turned["transformed: what the model sees"] != untouched["transformed: what the model sees"]
    assert [c for c in at.caption if "rotation 90" in c.value]
    at.button[0].click().run()  # reset
    assert at.slider(key=state.ROBUST_TRANSFORM + "rotation").value == 0.0
    assert heading(at) == "## Prediction: 6"
    # The shipped models' cards carry their sweeps: the comparison is drawn at once, from them.
    sweeps = json.loads(at.get("plotly_chart")[-1].proto.spec)
    card = json.loads(PRETRAINED_CARD.read_text())["affine_sweeps"]
    baseline = json.loads(BASELINE_CARD.read_text())["affine_sweeps"]
    by_model = {}
    for trace in sweeps["data"]:
        by_model.setdefault(trace["name"], []).append(trace["y"])
    assert list(by_model.values()) == [[card[n]["accuracy"] for n in card], [baseline[n]["accuracy"] for n in card]]


@pytest.mark.slow
def test_a_model_without_stored_sweeps_is_measured_on_request(monkeypatch, tmp_path, random_model):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(resources, "SWEEP_DIGITS", 40)  # 40 digits a point: seconds, not a minute
    at = open_app(PAGES["robustness"])
    assert len(at.get("plotly_chart")) == 1  # the sweeps wait for the user to ask: they take a minute
    at.button[1].click().run()
    assert_clean(at)
    data = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"]
    names = list(dict.fromkeys(trace["name"] for trace in data))
    assert len(names) == 2 and names[1] == "Baseline CNN (shipped)"
    mine = [trace for trace in data if trace["name"] == names[0]]
    assert len(mine) == 4 and all(0 <= y <= 1 for trace in mine for y in trace["y"])  # one per transformation
    assert max(mine[0]["y"]) < 0.5  # an untrained network: near chance, whatever the rotation


def test_a_link_reproduces_the_pages_choices(shipped_model_app):
    from streamlit.testing.v1 import AppTest
    from test_app_explorer import REPO, TIMEOUT

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({"class": "3", "example": "2", "rotation": "30", "scale": "not a number", "shear": "99"})
    at.switch_page(PAGES["robustness"]).run()
    assert_clean(at)
    assert at.selectbox(key=state.ROBUST_CLASS).value == 3 and at.number_input[0].value == 2
    assert at.slider(key=state.ROBUST_TRANSFORM + "rotation").value == 30.0
    assert at.slider(key=state.ROBUST_TRANSFORM + "scale").value == 1.0  # unreadable: ignored
    assert at.slider(key=state.ROBUST_TRANSFORM + "shear").value == 0.0  # out of the slider's range: ignored
    at.slider(key=state.ROBUST_TRANSFORM + "shift_x").set_value(4.5).run()
    assert at.query_params["shift_x"] == "4.5" and at.query_params["rotation"] == "30.0"
    assert at.query_params["class"] == "3"

    routing = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    routing.query_params.update({"class": "7", "round": "2"})
    routing.switch_page(PAGES["routing"]).run()
    assert_clean(routing)
    assert routing.select_slider(key=state.ROUTING_ROUND).value == 2
    assert next(m.value for m in routing.markdown if m.value.startswith("## Round")).startswith("## Round 2: ")
    assert ": 7" in " ".join(i.captions[0] for i in routing.get("image") if i.captions)
