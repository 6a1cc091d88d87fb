"""The explorer's pages through Streamlit's AppTest: every page renders, and each interaction does what it says.

A run starts at app.py (its `st.navigation`) and switches pages the way a user does, so page links resolve as under
`streamlit run`.
The model is the `random_model` fixture, passed in through $CAPSNET_WEIGHTS as a deployment would.
"""

import base64
import io
import json
import os

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from streamlit.testing.v1 import AppTest
from train_support import write_tiny_mnist

from capsnet.config import ModelConfig
from capsnet.explorer import catalog, state
from capsnet.explorer.navigation import PAGES
from capsnet.inference import load_capsnet
from capsnet.model import CapsNet, save_model
from capsnet.rundir import RunDir
from capsnet.sample import load_sample

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

TIMEOUT = 300  # the first Reconstruct run or a map classifies 1,000 test digits, on a CPU that may be training
EXPLORER_PAGES = [PAGES["draw"], PAGES["routing"], PAGES["robustness"], PAGES["reconstruct"], PAGES["latent"]]


@pytest.fixture(scope="module")
def one_routing_model(tmp_path_factory):
    """A model file whose architecture differs from the default: 1 routing iteration."""
    return save_model(CapsNet(ModelConfig(routings=1)), tmp_path_factory.mktemp("models") / "r1.keras")


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def images(at: AppTest) -> dict[str, str]:
    """caption -> media URL; Streamlit names media files by a hash of their content, so a new URL is a new image."""
    return {image.captions[0]: image.value[0] for image in at.get("image") if image.captions}


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_home_shows_the_active_models_card(app_env, random_model):
    at = open_app()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Source"] == "environment" and metrics["Routing iterations"] == "3"
    assert at.sidebar.selectbox[0].value == "env"
    assert any(str(random_model) in c.value for c in at.caption)


@pytest.mark.parametrize("page", EXPLORER_PAGES)
def test_every_page_renders(app_env, page):
    at = open_app(page)
    assert_clean(at)
    if page == PAGES["draw"]:
        assert "Draw a digit on the canvas" in at.info[0].value  # an empty canvas is a hint, not an error
    elif page == PAGES["routing"]:
        assert at.select_slider[0].value == 3 and len(at.get("plotly_chart")) == 4  # last round shown first
    elif page == PAGES["robustness"]:
        assert len(at.slider) == 5 and "Prediction:" in texts(at)
    elif page == PAGES["reconstruct"]:
        assert at.metric[0].label.startswith("Test accuracy on 1,000")
        assert len([i for i in at.get("image") if "→" in i.captions[0]]) == 20
    else:
        assert len(at.slider) == 16 and "Prediction:" in texts(at)


def test_without_any_model_pages_say_so(monkeypatch, tmp_path, no_shipped_models):
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    at = open_app()
    assert_clean(at)
    assert "No trained model exists yet" in at.warning[0].value
    for page in EXPLORER_PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert "no usable model to explore yet" in at.info[0].value


@pytest.mark.parametrize("content", [b"garbage", None], ids=["corrupt", "missing"])
def test_a_bad_model_file_is_a_message_on_every_page(app_env, monkeypatch, content):
    bad = app_env / "bad.keras"
    if content is not None:
        bad.write_bytes(content)
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(bad))
    at = open_app()
    assert not at.exception
    assert "Cannot load the model" in at.error[0].value
    for page in EXPLORER_PAGES:
        at.switch_page(page).run()
        assert not at.exception
        assert "Cannot load the model" in at.error[0].value and "no usable model" in at.info[0].value


def test_latent_slider_moves_the_reconstruction(app_env):
    at = open_app(PAGES["latent"])
    before = images(at)
    at.slider[3].set_value(0.25).run()
    after = images(at)
    assert_clean(at)
    assert after["edited reconstruction"] != before["edited reconstruction"]
    assert after["reconstruction"] == before["reconstruction"]  # only the edited one follows the slider
    at.button[0].click().run()  # reset
    assert at.slider[3].value == 0.0
    assert images(at)["edited reconstruction"] == before["edited reconstruction"]
    at.toggle[0].set_value(True).run()  # absolute values: the sliders start at the capsule's own values
    assert_clean(at)
    assert [s.min for s in at.slider][:1] == [-1.0]


def test_draw_canvas_data_gives_a_prediction(app_env):
    at = open_app(PAGES["draw"])
    seven = np.zeros((280, 280, 4), np.uint8)
    seven[..., 3] = 255
    seven[50:70, 60:220, :3] = 255  # the bar
    for row in range(70, 240):  # the stem, slanting left
        col = 200 - (row - 70) // 2
        seven[row, col - 10:col + 10, :3] = 255
    data_url = "data:image/png;base64," + base64.b64encode(png(seven)).decode()
    # What streamlit-drawable-canvas reports: Fabric.js JSON of the strokes and the pixels as a PNG data URL.
    at.session_state[f"{state.CANVAS}.0"] = {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": data_url}}
    at.run()
    assert_clean(at)
    assert "Prediction:" in texts(at)
    captions = images(at)
    assert "what the model sees (28×28)" in captions
    assert any(caption.startswith("reconstruction from capsule") for caption in captions)
    assert [e.label for e in at.expander] == ["How the capsules routed"]
    assert at.session_state[state.DRAWING].shape == (28, 28)  # handed on to the Latent page
    at.switch_page(PAGES["latent"]).run()
    at.radio[0].set_value("Last drawing").run()
    assert_clean(at)
    assert "your last drawing" in images(at)


def test_draw_png_upload(app_env):
    digit = load_sample().images[0]
    scan = 255 - np.kron(digit, np.ones((6, 6), np.uint8))  # dark ink on white paper, 168x168
    at = open_app(PAGES["draw"])
    at.file_uploader[0].set_value(("scan.png", png(scan), "image/png")).run()
    assert_clean(at)
    assert "Prediction:" in texts(at)
    seen = at.session_state[state.DRAWING]
    assert np.corrcoef(seen.ravel(), digit.ravel())[0, 1] > 0.95  # inverted, cropped, scaled and centred


@pytest.mark.parametrize("content", [b"this is not an image", b""], ids=["garbage", "empty"])
def test_draw_corrupt_upload_is_a_message(app_env, content):
    at = open_app(PAGES["draw"])
    at.file_uploader[0].set_value(("broken.png", content, "image/png")).run()
    assert not at.exception
    assert "Could not read broken.png" in at.warning[0].value
    assert "Prediction:" not in texts(at)


def test_model_upload_good_and_bad(app_env, one_routing_model):
    at = open_app()
    at.file_uploader[0].set_value(("bad.keras", b"not a zip", "application/octet-stream")).run()
    assert not at.exception
    assert "bad.keras is not a Keras .keras archive" in at.error[0].value
    at.file_uploader[0].set_value(("mine.keras", one_routing_model.read_bytes(), "application/zip")).run()
    assert_clean(at)
    assert "(1 routing iteration)" in at.success[0].value and "now the active model" in at.success[0].value
    assert at.sidebar.selectbox[0].value.startswith("upload:")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Source"] == "upload" and metrics["Routing iterations"] == "1"  # the file's own, not a default
    at.switch_page(PAGES["draw"]).run()  # the choice follows the user to other pages, and routes once
    assert at.sidebar.selectbox[0].value.startswith("upload:")


def test_reconstruct_filters_and_sends_a_digit_to_latent(app_env):
    at = open_app(PAGES["reconstruct"])
    at.sidebar.selectbox(key="reconstruct.class").set_value(4).run()
    at.sidebar.toggle(key="reconstruct.shuffle").set_value(True).run()
    assert_clean(at)
    captions = [i.captions[0] for i in at.get("image") if "→" in i.captions[0]]
    assert captions and all(c.split(": ")[1].startswith("4→") for c in captions)
    test_index = captions[2].split(":")[0].lstrip("#")
    at.button[2].click().run()
    assert_clean(at)
    assert at.selectbox(key=state.LATENT_CLASS).value == 4
    assert f"test image #{test_index}: 4" in images(at)


def test_catalog_lists_finished_runs_only(app_env, one_routing_model, no_shipped_models):
    root = app_env / "runs"
    for name, run_state in [("20260101-done", "finished"), ("20260102-busy", "running"),
                            ("20260103-empty", "finished")]:
        run = RunDir(root / name)
        run.config_file.parent.mkdir(parents=True)
        run.config_file.write_text(json.dumps({"model": {"routings": 1}}))
        run.write_status(run_state, pid=os.getpid())  # a live pid: "running" stays running
        if name != "20260103-empty":
            run.final_model.symlink_to(one_routing_model)
    choices = catalog.available_models()
    assert [c.key for c in choices] == ["env", "run:20260101-done"]
    card = catalog.model_card(choices[1], load_capsnet(choices[1].path).config)
    assert card["routings"] == 1 and card["trained"]


def test_catalog_reads_the_shipped_model_card(app_env, random_model, monkeypatch):
    """The card `python -m capsnet.tools.publish` writes, as the Home page reads it."""
    card_path = app_env / "model_card.json"
    card_path.write_text(json.dumps({"test_accuracy": 0.9963, "date": "2026-11-25", "epochs_trained": 50,
                                     "config": {"model": {"routings": 3}}}))
    monkeypatch.setattr(catalog, "PRETRAINED_MODEL", random_model)
    monkeypatch.setattr(catalog, "PRETRAINED_CARD", card_path)
    monkeypatch.delenv("CAPSNET_WEIGHTS")
    choice = catalog.available_models()[0]
    assert choice.source == "pretrained"
    card = catalog.model_card(choice, ModelConfig())
    assert (card["test_accuracy"], card["trained"], card["epochs"]) == (0.9963, "2026-11-25", 50)
    at = open_app()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == "99.63%" and metrics["Trained"] == "2026-11-25"


# --- shareable state: a page's choices are in its URL, and opening that URL in a new session reproduces them -------

def open_link(page: str, parameters: dict[str, str] | None = None) -> AppTest:
    """A new session whose first request is `page` with these query parameters, as a shared link opens."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(parameters or {})
    return at.switch_page(page).run()


def test_latent_link_carries_the_digit_and_the_sliders(app_env):
    dims = ["0"] * 16
    dims[2] = "0.25"
    at = open_link(PAGES["latent"], {"class": "4", "example": "1", "dims": ",".join(dims)})
    assert_clean(at)
    assert at.selectbox(key=state.LATENT_CLASS).value == 4 and at.number_input[0].value == 1
    assert [s.value for s in at.slider][:3] == [0.0, 0.0, 0.25]
    assert at.query_params["class"] == "4" and at.query_params["dims"].split(",")[2] == "0.25"
    at.button[0].click().run()  # reset: the sliders go back to the capsule, and the link no longer moves them
    assert all(s.value == 0.0 for s in at.slider) and "dims" not in at.query_params
    broken = open_link(PAGES["latent"], {"dims": "1,2,three", "class": "eleven"})
    assert_clean(broken)
    assert all(s.value == 0.0 for s in broken.slider) and broken.selectbox(key=state.LATENT_CLASS).value == 0


def test_reconstruct_link_carries_the_filters(app_env):
    at = open_link(PAGES["reconstruct"], {"class": "3", "shown": "30", "wrong": "false", "shuffle": "true",
                                          "seed": "7"})
    assert_clean(at)
    assert at.selectbox(key=state.RECONSTRUCT_CLASS).value == 3 and at.slider[0].value == 30
    assert at.toggle(key=state.RECONSTRUCT_SHUFFLE).value and at.number_input[0].value == 7
    at.slider[0].set_value(40).run()
    assert at.query_params["shown"] == "40" and at.query_params["class"] == "3"


def test_the_model_is_in_the_link(app_env, one_routing_model, monkeypatch):
    uploads = app_env / "uploads"
    uploads.mkdir(exist_ok=True)
    (uploads / "other.keras").write_bytes(one_routing_model.read_bytes())
    keys = [choice.key for choice in catalog.available_models()]
    assert len(keys) >= 2
    at = open_link(PAGES["routing"], {"model": keys[-1]})
    assert_clean(at)
    assert at.selectbox(key=state.MODEL_PICKER).value == keys[-1] and at.query_params["model"] == keys[-1]
    plain = open_link(PAGES["routing"], {"model": "no such model"})
    assert plain.selectbox(key=state.MODEL_PICKER).value == keys[0] and "model" not in plain.query_params


def test_each_uploader_states_the_limit_the_app_enforces(app_env):
    """Streamlit's own ceiling (200 MB) is not what the app accepts: each uploader carries the app's limit, so the
    browser refuses a larger file before sending it, with that figure."""
    from capsnet import preprocess

    def limits(at: AppTest) -> dict[str, int]:
        return {uploader.proto.label: uploader.proto.max_upload_size_mb for uploader in at.get("file_uploader")}

    at = open_app()
    assert limits(at) == {"Upload a model file": catalog.MAX_UPLOAD_MB}
    at.switch_page(PAGES["draw"]).run()
    assert_clean(at)
    assert list(limits(at).values()) == [preprocess.MAX_UPLOAD_MB]
    at.switch_page(PAGES["routing"]).run()
    at.radio(key=state.ROUTING_SOURCE).set_value("Upload").run()
    assert_clean(at)
    assert list(limits(at).values()) == [preprocess.MAX_UPLOAD_MB]
    assert preprocess.MAX_UPLOAD_MB < 200 and catalog.MAX_UPLOAD_MB < 200  # tighter than .streamlit/config.toml's


def test_test_digits_fetched_while_the_app_runs_replace_the_sample(app_env, monkeypatch, mnist):
    """Before MNIST is here the pages show the shipped sample; once it is fetched (`python -m capsnet data`) they
    show it at the next rerun: the process-wide caches are keyed on what the data folders hold."""
    for variable in ("CAPSNET_DATA", "KERAS_HOME", "CAPSNET_SYSTEM_DATASETS"):
        monkeypatch.setenv(variable, str(app_env / "empty" / variable))
    at = open_app(PAGES["reconstruct"])
    assert_clean(at)
    assert at.metric[0].label == "Test accuracy on 1,000 images" and "sample" in at.metric[0].help

    write_tiny_mnist(mnist, app_env / "empty" / "CAPSNET_DATA", n_test=300)
    at.run()
    assert_clean(at)
    assert at.metric[0].label == "Test accuracy on 300 images" and "data directory" in at.metric[0].help
