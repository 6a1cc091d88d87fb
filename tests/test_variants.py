"""capsnet.variants: the routing x reconstruction table (CapsNet-v1 to v4), its rows read from logs and cards, the
tool that publishes a variant's run, and the README's table against the cards."""

import csv
import json
import re

import pytest
from conftest import REPO

from capsnet.config import ModelConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.evaluate import accuracy_report, class_scores
from capsnet.inference import load_network
from capsnet.variants import BY_NAME, SHIPPED_VARIANT, VARIANTS, result, validation_error, variant_of


def test_the_four_variants_are_routing_times_reconstruction():
    assert {(v.routings, v.reconstruction) for v in VARIANTS} == {(1, False), (1, True), (3, False), (3, True)}
    assert BY_NAME["v1"].flags == "--routings 1 --lam_recon 0"
    assert BY_NAME["v2"].parameters == {"routings": 1, "lam_recon": TrainConfig().lam_recon}
    # The shipped model is v4: the CLI's defaults.
    defaults = TrainConfig()
    assert variant_of({"routings": defaults.model.routings, "lam_recon": defaults.lam_recon}).name == SHIPPED_VARIANT
    assert variant_of({"routings": 2, "lam_recon": 0.0}) is None


def test_validation_error_is_read_at_the_epoch_asked():
    log = [{"epoch": 0, "val_accuracy": 0.98}, {"epoch": 14, "val_accuracy": 0.9951}, {"epoch": 15}]
    assert validation_error(log, 15) == 0.49  # log.csv counts epochs from 0
    assert validation_error(log, 16) is None  # a row without validation
    assert validation_error(log, 50) is None  # not trained that far


def test_the_shipped_variants_row_comes_from_its_log_and_card():
    """v4's row: the shipped run's log.csv at epoch 15, the shipped card at 50 epochs."""
    with open(REPO / "docs" / "results" / "log.csv") as f:
        at_15 = next(row for row in csv.DictReader(f) if row["epoch"] == "14")
    card = json.loads((REPO / "assets" / "model_card.json").read_text())
    row = result(BY_NAME["v4"]).row()
    assert row["error % after 15 epochs"] == f"{100 * (1 - float(at_15['val_accuracy'])):.2f}"
    assert row["error % after 50 epochs"] == f"{card['test_error_percent']:.2f}"
    assert row["epochs trained"] == str(card["epochs_trained"]) == "50"


def readme_table() -> dict[str, dict[str, str]]:
    """The README's variant table: variant -> column -> cell."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:end]:
        cells = [re.sub(r"\*\*|`", "", cell).strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_the_readme_table_matches_the_cards():
    table = readme_table()
    assert list(table) == [v.title for v in VARIANTS]
    for variant in VARIANTS:
        expected = result(variant).row()
        for column, cell in table[variant.title].items():
            assert cell == str(expected[column]), (variant.title, column)


@pytest.mark.slow
def test_the_shipped_variants_routing_figures_reload(mnist):
    """Each figure in a kept model's card is reproduced by reloading it: v4 is the shipped model."""
    card = result(BY_NAME["v4"]).card
    errors = card.get("test_error_percent_by_routings")
    if not errors:
        pytest.skip("the shipped card has no errors by routing iterations yet (publish --routings-only)")
    for routings, error in errors.items():
        net = load_network(REPO / "assets" / "capsnet.keras", routings=int(routings))
        measured = 100 * accuracy_report(class_scores(net, mnist.x_test), mnist.y_test)["error"]
        assert measured == pytest.approx(error, abs=0.015), routings  # one image in 10,000 is 0.01


@pytest.mark.slow
def test_publishing_a_variant_checks_its_flags_and_writes_its_results(mnist, tmp_path):
    """A tiny narrow v1 run: its card (errors at 1 and 3 routings on all 10,000 test images, sweeps), log.csv and
    log.png in the folder; the same run refused as v2, whose reconstruction weight it lacks."""
    from capsnet.tools.publish import publish_variant
    from capsnet.train import train

    data = Dataset(mnist.x_train[:200], mnist.y_train[:200], mnist.x_test[:100], mnist.y_test[:100], mnist.source)
    narrow = ModelConfig(conv_filters=16, primary_channels=4, decoder_units=(32, 64), routings=1)
    train(TrainConfig(epochs=1, batch_size=50, lam_recon=0.0, model=narrow), tmp_path / "run", data=data, verbose=0)

    with pytest.raises(ValueError, match="is not CapsNet-v2 .*lam_recon 0.0"):
        publish_variant(tmp_path / "run", BY_NAME["v2"], tmp_path / "v2", sweep_digits=20)
    assert not (tmp_path / "v2").exists()

    card = publish_variant(tmp_path / "run", BY_NAME["v1"], tmp_path / "v1", sweep_digits=20)
    assert json.loads((tmp_path / "v1" / "card.json").read_text()) == card
    assert (tmp_path / "v1" / "log.csv").is_file() and (tmp_path / "v1" / "log.png").is_file()
    assert card["variant"] == "v1" and card["test_images"] == 10000 and card["epochs_trained"] == 1
    assert set(card["test_error_percent_by_routings"]) == {"1", "3"}
    assert card["test_error_percent_by_routings"]["1"] == pytest.approx(card["test_error_percent"], abs=1e-9)
    assert set(card["affine_sweeps"]) == {"rotation", "scale", "shear", "translation"}
