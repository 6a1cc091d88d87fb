"""A model knows what its classes are: Fashion-MNIST models show "T-shirt/top" … "Ankle boot" in the CLI and on every
page, and test on Fashion-MNIST's images, without being told.

The models here are narrow CapsNets with random weights, saved as a training run saves them: what is checked is where
the names and the test images come from, not accuracy.
"""

import json

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_cli import capsnet

from capsnet.assets import FASHION_CARD, FASHION_MODEL, SAMPLES, SHIPPED
from capsnet.config import CLASS_NAMES, DATASETS, ModelConfig, TrainConfig, class_names
from capsnet.data import Dataset, load_dataset
from capsnet.evaluate import accuracy_report, class_scores
from capsnet.explorer import catalog
from capsnet.explorer.navigation import PAGES
from capsnet.inference import load_network, saved_architecture
from capsnet.model import CapsNet, save_model
from capsnet.rundir import RunDir
from capsnet.sample import load_sample
from capsnet.tools.publish import publish, target_of
from capsnet.train import train

NARROW = dict(conv_filters=16, primary_channels=4, decoder_units=(32, 64))  # fast to evaluate on 10,000 images
FASHION = CLASS_NAMES["fashion_mnist"]


@pytest.fixture(scope="module")
def fashion_model(tmp_path_factory):
    config = TrainConfig(dataset="fashion_mnist", model=ModelConfig(**NARROW)).model  # as training builds it
    return save_model(CapsNet(config), tmp_path_factory.mktemp("fashion") / "fashion.keras")


@pytest.fixture(scope="module")
def fashion_test():
    return load_dataset("fashion_mnist", allow_download=False)  # Debian's dataset-fashion-mnist


def test_training_records_the_dataset_in_the_network_and_its_file(fashion_model):
    assert TrainConfig().model.dataset == "mnist"
    net = load_network(fashion_model)
    assert net.config.dataset == "fashion_mnist"
    assert class_names(net.config)[0] == "T-shirt/top" and class_names(net.config)[9] == "Ankle boot"
    assert class_names(ModelConfig()) == tuple("0123456789")
    assert class_names(ModelConfig(dataset="emnist_letters")) == tuple("0123456789")  # unknown here: numbers


def test_weights_of_an_older_run_take_the_dataset_from_the_runs_config(tmp_path):
    """config.json of a run from before model files recorded their dataset: only the run's `dataset` says."""
    model = {k: v for k, v in json.loads(TrainConfig().to_json())["model"].items() if k != "dataset"}
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "fashion_mnist", "epochs": 3, "model": model}))
    assert saved_architecture(tmp_path / "last.weights.h5").dataset == "fashion_mnist"
    assert TrainConfig.load(tmp_path / "config.json").model.dataset == "fashion_mnist"


def run_cli(*args: str) -> str:
    result = capsnet(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_cli_tests_a_fashion_model_on_fashion_mnist_and_names_its_classes(fashion_model, fashion_test, tmp_path):
    out = run_cli("test", "-w", str(fashion_model), "--save_dir", str(tmp_path))
    per_class = next(line for line in out.splitlines() if line.startswith("per class: "))
    assert [part.rsplit(" ", 1)[0] for part in per_class.removeprefix("per class: ").split(", ")] == list(FASHION)
    # The real images of real_and_recon.png are Fashion-MNIST's first test images, not MNIST's.
    grid = np.asarray(Image.open(tmp_path / "real_and_recon.png").convert("L"))
    np.testing.assert_array_equal(grid[:28, :28], fashion_test.x_test[0])

    out = run_cli("manipulate", "-w", str(fashion_model), "--digit", "9", "--save_dir", str(tmp_path))
    assert out.startswith("class 9 (Ankle boot) (test image ")
    index = int(out.split("test image ")[1].split(")")[0])
    assert fashion_test.y_test[index] == 9  # an ankle boot of Fashion-MNIST's test set


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240).run()
    return at.switch_page(page).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def fashion_app(monkeypatch, fashion_model, tmp_path):
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(fashion_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))


@pytest.mark.slow
def test_every_page_names_fashion_classes_and_shows_fashion_test_images(fashion_app, fashion_test):
    at = open_page(PAGES["routing"])
    assert_clean(at)
    class_box = at.selectbox(key="routing.class")
    assert class_box.options == list(FASHION)
    class_box.set_value(9).run()  # Ankle boot
    assert_clean(at)
    first_boot = int(np.flatnonzero(fashion_test.y_test == 9)[0])
    assert any(f"test image #{first_boot}: Ankle boot" in (i.captions[0] or "") for i in at.get("image"))
    heading = next(m.value for m in at.markdown if m.value.startswith("## Round"))
    assert heading.split(": ", 1)[1] in FASHION

    at = open_page(PAGES["reconstruct"])
    assert_clean(at)
    assert list(at.dataframe[0].value["class"]) == list(FASHION)
    captions = [i.captions[0] for i in at.get("image") if i.captions]
    assert captions and all("→" in c and c.split(": ", 1)[1].split("→")[0] in FASHION for c in captions)
    assert "Debian package" in at.metric[0].help  # the model's own test set, not the MNIST sample

    at = open_page(PAGES["latent"])
    assert_clean(at)
    assert any(m.value.startswith("## Prediction: ") and m.value.split(": ")[1] in FASHION for m in at.markdown)

    at = open_page(PAGES["robustness"])
    assert_clean(at)
    assert any(m.value.startswith("## Prediction: ") and m.value.split(": ")[1] in FASHION for m in at.markdown)
    # The shipped baseline CNN knows MNIST only: it is not offered as a comparison for a Fashion-MNIST model.
    assert not any("Baseline CNN" in c.value for c in at.caption)

    at = open_page(PAGES["draw"])
    assert_clean(at)
    assert any("Ankle boot" in i.value and "handwritten digit" in i.value for i in at.info)

    at = open_page(PAGES["home"])
    assert_clean(at)
    assert any("trained on Fashion-MNIST (T-shirt/top, Trouser" in c.value for c in at.caption)


def test_the_picker_offers_a_shipped_fashion_model(monkeypatch, fashion_model, tmp_path):
    card = tmp_path / "capsnet_fashion_card.json"
    card.write_text(json.dumps({"test_accuracy": 0.9012, "date": "2026-11-28", "epochs_trained": 50}))
    monkeypatch.setattr(catalog, "FASHION_MODEL", fashion_model)
    monkeypatch.setattr(catalog, "FASHION_CARD", card)
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    choice = next(c for c in catalog.available_models() if c.key == "fashion")
    assert "Fashion-MNIST" in choice.label and choice.source == "pretrained"
    shown = catalog.model_card(choice, load_network(fashion_model).config)
    assert (shown["test_accuracy"], shown["dataset"], shown["epochs"]) == (0.9012, "fashion_mnist", 50)


def test_the_fashion_sample_is_fashion_mnist_test_images(fashion_test):
    """The app's fallback where Fashion-MNIST cannot be had: 100 test images a class, as they are in the test set."""
    sample = load_sample(SAMPLES["fashion_mnist"])
    np.testing.assert_array_equal(sample.images, fashion_test.x_test[sample.indices])
    np.testing.assert_array_equal(sample.labels, fashion_test.y_test[sample.indices])
    assert np.bincount(sample.labels, minlength=10).tolist() == [100] * 10


@pytest.mark.slow
def test_publish_ships_a_fashion_run_as_the_fashion_model(fashion_test, tmp_path):
    run = tmp_path / "run"
    data = Dataset(fashion_test.x_train[:200], fashion_test.y_train[:200], fashion_test.x_test[:100],
                   fashion_test.y_test[:100], fashion_test.source)
    train(TrainConfig(dataset="fashion_mnist", epochs=1, batch_size=50, model=ModelConfig(**NARROW)), run, data=data,
          verbose=0)
    assert SHIPPED[target_of(RunDir(run).read_config())] == (FASHION_MODEL, FASHION_CARD)
    model, card_path = tmp_path / "assets" / "capsnet_fashion.keras", tmp_path / "assets" / "card.json"
    card = publish(run, model, card_path, sweep_digits=20)
    net = load_network(model)
    assert net.config.dataset == card["data"]["dataset"] == "fashion_mnist"
    assert "--dataset fashion_mnist" in card["command"] and card["test_images"] == 10000
    assert accuracy_report(class_scores(net, fashion_test.x_test), fashion_test.y_test)["accuracy"] == \
        card["test_accuracy"]


def test_a_model_of_a_dataset_this_version_does_not_know(monkeypatch, tmp_path):
    """A model file naming another dataset (another version's, or edited): its classes are numbered, and the pages
    that need its test images say why there are none instead of failing."""
    path = save_model(CapsNet(ModelConfig(**NARROW, dataset="emnist_letters")), tmp_path / "letters.keras")
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(path))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    at = open_page(PAGES["routing"])
    assert not at.exception
    assert [e.value for e in at.error] == ["No test images for this model: unknown dataset 'emnist_letters'; choose "
                                           f"one of {', '.join(DATASETS)}"]
    at = open_page(PAGES["draw"])
    assert not at.exception and not at.error


@pytest.mark.slow
def test_shipped_fashion_model_reproduces_its_card(fashion_test):
    """`assets/capsnet_fashion.keras`, trained by the CLI with its defaults on Fashion-MNIST: it says so, is as
    accurate on the 10,000 test images as its card claims, and the picker offers it with that card."""
    card = json.loads(FASHION_CARD.read_text())
    net = load_network(FASHION_MODEL)
    assert net.config.dataset == card["config"]["dataset"] == card["data"]["dataset"] == "fashion_mnist"
    assert card["epochs_trained"] == card["config"]["epochs"] == TrainConfig().epochs  # the CLI's defaults
    accuracy = accuracy_report(class_scores(net, fashion_test.x_test), fashion_test.y_test)["accuracy"]
    assert abs(accuracy - card["test_accuracy"]) <= 0.0005 and card["test_images"] == 10000
    choice = next(c for c in catalog.available_models() if c.key == "fashion")
    assert choice.path == FASHION_MODEL
    assert catalog.model_card(choice, net.config)["test_accuracy"] == card["test_accuracy"]
