"""The photo renderer (capsnet/tools/photos.py) and the photo benchmark: deterministic, photo-like, and read right.

The preprocessing before photos were taken seriously read 74% of these photos (gradient 20%, shadow 13%, sheet edge
7%: `python -m capsnet bench --photos --baseline OLD_PREPROCESS.py`); the thresholds below are well above that. The
clean images with thick or soft strokes (thumbnails of a few pixels, marker, a digit filling the frame, soft focus)
are held to the plain MNIST steps as well: the photo corrections once made blobs of them."""

import io

import numpy as np
import pytest
from PIL import Image

from capsnet.preprocess import from_upload, plain_from_upload, unblocked
from capsnet.tools import photos

SMALL_BENCH = 12  # digits per condition
PHOTO_CONDITIONS = [c for c in photos.CONDITIONS if c not in photos.LOW_RES]


@pytest.fixture(scope="module")
def digits():
    return photos.sample_digits(6)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255


def test_renders_are_deterministic_for_a_seed(digits):
    images, _ = digits
    for condition in photos.CONDITIONS:
        assert photos.photo(images[0], condition, seed=5, index=2) == photos.photo(images[0], condition, seed=5,
                                                                                   index=2)
    assert photos.photo(images[0], "realistic", seed=5) != photos.photo(images[0], "realistic", seed=6)
    a, b = photos.sample_digits(20, seed=1), photos.sample_digits(20, seed=1)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("condition", PHOTO_CONDITIONS)
def test_renders_look_like_photos_not_mnist(digits, condition):
    images, _ = digits
    for index, digit in enumerate(images[:3]):
        gray = decoded(photos.photo(digit, condition, index=index))
        assert len(np.unique((gray * 255).astype(np.uint8))) > 20  # shades of grey, not black and white
        assert np.median(gray) > 0.2  # paper, not MNIST's black
        assert gray.min() < np.median(gray) - 0.1  # and some ink darker than the paper
        assert min(gray.shape) >= 64


def ink_box(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the darkest pixels' bounding box, as fractions of the frame."""
    rows, cols = np.nonzero(gray < np.percentile(gray, 0.5) + 0.05)
    shape = np.array(gray.shape)
    box = np.array([rows.max() - rows.min() + 1, cols.max() - cols.min() + 1])
    return np.array([rows.min() + rows.max(), cols.min() + cols.max()]) / 2 / shape, box / shape


def test_off_centre_digits_are_small_and_away_from_the_centre(digits):
    images, _ = digits
    boxes = [ink_box(decoded(photos.photo(d, "off_centre", index=i))) for i, d in enumerate(images)]
    offsets = [np.abs(centre - 0.5).max() for centre, _ in boxes]
    assert np.mean(offsets) > 0.12
    assert np.median([size.max() for _, size in boxes]) < 0.4


def test_frames_range_from_small_to_large():
    sides = [photos.scene_for("off_centre", np.random.default_rng(i)).frame[0] for i in range(60)]
    assert min(sides) < 150 and max(sides) > 800


@pytest.mark.parametrize("condition", list(photos.LOW_RES))
def test_thumbnails_are_a_few_pixels_enlarged(digits, condition):
    """Each is a side x side image enlarged 6-30 times: by repeating pixels (which `unblocked` undoes exactly), or
    smoothly; and the digit fills it."""
    side, resample = photos.LOW_RES[condition]
    for index, digit in enumerate(digits[0]):
        gray = decoded(photos.photo(digit, condition, index=index))
        assert gray.shape[0] == gray.shape[1] and gray.shape[0] % side == 0 and 6 <= gray.shape[0] // side <= 30
        assert (unblocked(gray).shape == (side, side)) == (resample == "nearest")
        ink = np.abs(gray - np.median(gray[[0, -1]])) > 0.25  # away from the ground, either way round
        rows, cols = np.nonzero(ink)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 >= 0.6 * gray.shape[0]


def stroke_width(gray: np.ndarray) -> float:
    """Mean width of the dark strokes in a photo, as a fraction of the ink's height (2 x area / boundary)."""
    ink = gray < (np.median(gray) + gray.min()) / 2
    padded = np.pad(ink, 1)
    inner = ink & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rows = np.nonzero(ink)[0]
    return 2 * ink.sum() / max((ink & ~inner).sum(), 1) / (np.ptp(rows) + 1)


def test_marker_strokes_are_broad_and_fill_photos_are_full(digits):
    images, _ = digits
    clean = [stroke_width(decoded(photos.photo(d, "clean", index=i))) for i, d in enumerate(images)]
    marker = [stroke_width(decoded(photos.photo(d, "marker", index=i))) for i, d in enumerate(images)]
    # 1.5-2.5x MNIST's width by design; measured as 2 x area / boundary the gain reads lower (~1.5x on these six),
    # since a bold tip also rounds the strokes' ends and fills small loops, which adds boundary as well as area.
    assert np.median(marker) > 1.35 * np.median(clean)
    for index, digit in enumerate(images):
        _, size = ink_box(decoded(photos.photo(digit, "fill", index=index)))
        assert size.max() >= 0.8


def test_soft_focus_is_softer_than_blur(digits):
    """Soft focus spreads a stroke over more than its width: more of the ink's range is in between."""
    def in_between(condition: str) -> float:
        shares = []
        for index, digit in enumerate(digits[0]):
            gray = decoded(photos.photo(digit, condition, index=index))
            low, high = np.percentile(gray, [0.5, 50])
            level = (gray - low) / (high - low)
            shares.append(np.mean((level > 0.2) & (level < 0.8)) / max(np.mean(level < 0.8), 1e-6))
        return float(np.median(shares))

    assert in_between("soft_focus") > in_between("blur") > in_between("clean")


@pytest.fixture(scope="module")
def small_bench() -> dict:
    """A small benchmark through the real upload path, read by the full preprocessing and by the plain MNIST
    steps alone, on the same photos."""
    return photos.benchmark(SMALL_BENCH, preprocessors={"preprocess": from_upload, "plain": plain_from_upload})


@pytest.mark.slow
def test_the_shipped_model_reads_the_photos(small_bench):
    """Far above the old preprocessing's 74% (and its 7-20% on gradients, shadows and sheet edges)."""
    report = small_bench["preprocess"]
    assert report["photo_accuracy"] >= 0.95, report
    worst = min(c["accuracy"] for c in report["per_condition"].values())
    assert worst >= 0.83, report["per_condition"]  # at most 2 of 12 wrong in any condition


def test_never_worse_than_the_plain_steps(small_bench):
    """The lighting and stroke steps may only help: on every condition the full preprocessing reads at least as
    many as a contrast stretch and MNIST's steps alone, but for one digit (at 12 digits a condition, one digit is
    8 points; `bench --photos` measures the point, README), and no fewer over all."""
    full, plain = small_bench["preprocess"], small_bench["plain"]
    for condition in photos.CONDITIONS:
        assert full["per_condition"][condition]["correct"] >= plain["per_condition"][condition]["correct"] - 1, \
            (condition, full["per_condition"][condition], plain["per_condition"][condition])
    assert full["correct"] >= plain["correct"]
