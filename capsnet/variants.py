"""What routing and reconstruction each buy: CapsNet-v1 to v4, the reference's results table, measured here.

The four variants differ in two training flags only: 1 or 3 routing iterations, with or without the reconstruction
loss. v4 (3 routings, reconstruction) is the shipped MNIST CapsNet; v1 to v3 are trained with the CLI's defaults
otherwise (`python -m capsnet train --routings 1 --lam_recon 0.0 ...`) and published with
`python -m capsnet.tools.publish --variant vN RUN_DIR`, which writes their card, `log.csv` and `log.png` under
`docs/results/variants/vN/` (the models themselves are not shipped).

Two columns compare like with like:
- after 15 epochs: the validation error at the end of epoch 15 in each run's `log.csv` (all 10,000 test images, in
  the run's training precision). The learning-rate schedule does not depend on the number of epochs, so the
  shipped 50-epoch run at its epoch 15 is what a 15-epoch v4 run would have been;
- after 50 epochs: the card's test error, measured by `publish` at float32 on all 10,000 test images.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from capsnet.assets import PRETRAINED_CARD, REPO
from capsnet.config import TrainConfig
from capsnet.rundir import RunDir

RESULTS = REPO / "docs" / "results"  # the shipped MNIST CapsNet's log.csv and figures
VARIANT_RESULTS = RESULTS / "variants"
EPOCH_COLUMNS = (15, 50)  # the table's two budgets, in epochs
LAM_RECON = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "lam_recon")


@dataclass(frozen=True)
class Variant:
    name: str  # "v1" ... "v4"
    routings: int
    reconstruction: bool
    reference_error: float  # test error in %, CapsNet-Keras: the mean of 3 trials after 50 epochs
    paper_error: float  # Sabour, Frosst & Hinton 2017, Table 1

    @property
    def title(self) -> str:
        return f"CapsNet-{self.name}"

    @property
    def parameters(self) -> dict[str, float]:
        """The training parameters that make this variant (everything else: the CLI's defaults)."""
        return {"routings": self.routings, "lam_recon": LAM_RECON if self.reconstruction else 0.0}

    @property
    def flags(self) -> str:
        return f"--routings {self.routings} --lam_recon {self.parameters['lam_recon']:g}"

    @property
    def folder(self) -> Path:
        """Where its log.csv lives: the shipped model's own results for v4."""
        return RESULTS if self.name == SHIPPED_VARIANT else VARIANT_RESULTS / self.name

    @property
    def card(self) -> Path:
        return PRETRAINED_CARD if self.name == SHIPPED_VARIANT else self.folder / "card.json"


VARIANTS = (
    Variant("v1", routings=1, reconstruction=False, reference_error=0.39, paper_error=0.34),
    Variant("v2", routings=1, reconstruction=True, reference_error=0.36, paper_error=0.29),
    Variant("v3", routings=3, reconstruction=False, reference_error=0.40, paper_error=0.35),
    Variant("v4", routings=3, reconstruction=True, reference_error=0.34, paper_error=0.25),
)
SHIPPED_VARIANT = "v4"  # assets/capsnet.keras: 3 routings, reconstruction loss 0.392
BY_NAME = {v.name: v for v in VARIANTS}


def variant_of(parameters: dict) -> Variant | None:
    """The variant that training `parameters` (routings, lam_recon) make, if they make one."""
    for variant in VARIANTS:
        if all(parameters.get(k) == v for k, v in variant.parameters.items()):
            return variant
    return None


def validation_error(log: list[dict[str, float]], epochs: int) -> float | None:
    """The validation error in % at the end of epoch `epochs` (log.csv counts epochs from 0), if the run got there."""
    row = next((r for r in log if int(r.get("epoch", -1)) == epochs - 1), None)
    return None if row is None or "val_accuracy" not in row else round(100 * (1 - row["val_accuracy"]), 2)


@dataclass(frozen=True)
class Result:
    variant: Variant
    epochs_trained: int  # 0: not trained yet
    error_after: dict[int, float | None]  # epochs -> error in %: validation at 15 (log.csv), test at 50 (card)
    error_by_routings: dict[int, float]  # routing iterations at inference -> test error in % (card)
    card: dict

    def row(self) -> dict[str, object]:
        """One row of the table, as the README and the app show it."""
        def percent(value: float | None) -> str:
            return "—" if value is None else f"{value:.2f}"

        return {
            "variant": self.variant.title,
            "routings": self.variant.routings,
            "reconstruction": "yes" if self.variant.reconstruction else "no",
            "epochs trained": str(self.epochs_trained or "not yet"),
            **{f"error % after {e} epochs": percent(self.error_after.get(e)) for e in EPOCH_COLUMNS},
            "error % at 1 / 3 routings": " / ".join(percent(self.error_by_routings.get(r)) for r in (1, 3)),
            "CapsNet-Keras (50 epochs, 3 trials)": f"{self.variant.reference_error:.2f}",
            "paper": f"{self.variant.paper_error:.2f}",
        }


def read_card(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def result(variant: Variant) -> Result:
    """What has been measured of `variant` so far: from its log.csv and its card, whichever exist."""
    log = RunDir(variant.folder).read_log_csv()
    card = read_card(variant.card)
    epochs = int(card.get("epochs_trained") or len(log))
    at_50 = card.get("test_error_percent") if epochs >= 50 else None
    errors = {int(r): float(e) for r, e in card.get("test_error_percent_by_routings", {}).items()}
    return Result(variant, epochs, {15: validation_error(log, 15), 50: at_50}, errors, card)


def results() -> list[Result]:
    return [result(v) for v in VARIANTS]


def markdown_table() -> str:
    """The table as the README holds it: `python -m capsnet.variants` prints it."""
    rows = [result.row() for result in results()]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(cell) for cell in row.values()) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
