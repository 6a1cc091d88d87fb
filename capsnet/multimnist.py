"""MultiMNIST (the paper's section 6): two MNIST digits of different classes, overlaid in one 36x36 image.

The rule, as in the paper and TensorFlow's official capsules code (`input_data/mnist/mnist_shift.py`):

1. each digit is padded to 36x36 and shifted by a whole number of pixels in [-4, 4] on each axis (ink moved past
   the edge is cut; with a 4-pixel margin none is);
2. the two are combined pixel by pixel as min(a + b, 255);
3. the two digits are of different classes and come from the same split.

Training pairs are made on the fly: batch `i` of an epoch is a pure function of (seed, epoch, i), as for MNIST
(`capsnet.pipeline`), so a resumed run sees what an uninterrupted one would have. An epoch pairs every training
digit once with a random partner. The test set is fixed: every MNIST test digit with one partner, drawn from
`TEST_SEED`; `test_pairs` regenerates it bit for bit (its checksum is in the tests).

Each pair keeps its two shifted single digits: the decoder's targets, one reconstruction per digit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from capsnet.imaging import to_float
from capsnet.pipeline import BatchStream

FRAME = 36  # pixels a side
MAX_SHIFT = 4  # pixels, on each axis
TEST_SEED = 2017  # the fixed test set's partners and shifts
DIGITS = 2  # digits per image


@dataclass
class Pairs:
    """Overlaid pairs: what the network reads, what each digit looked like alone, and what they are."""

    images: np.ndarray  # uint8 [n, 36, 36]: the overlays
    digits: np.ndarray  # uint8 [n, 2, 36, 36]: each digit shifted alone (the reconstruction targets)
    labels: np.ndarray  # int64 [n, 2]: the two classes (always different)
    shifts: np.ndarray  # int64 [n, 2, 2]: (dy, dx) of each digit
    sources: np.ndarray  # int64 [n, 2]: each digit's index in its split

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> Pairs:
        return Pairs(self.images[index], self.digits[index], self.labels[index], self.shifts[index],
                     self.sources[index])

    def checksum(self) -> str:
        """sha256 of the overlays, the labels and the shifts: the same seed gives the same set."""
        digest = hashlib.sha256()
        for array in (self.images, self.labels, self.shifts, self.sources):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def shifted_in_frame(images: np.ndarray, shifts: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Digits [n, h, w] centred in a `frame`-sized square, then moved by `shifts` [n, 2] = (dy, dx) pixels (down and
    right positive); what leaves the frame is cut, what enters is black."""
    images = np.asarray(images)
    n, height, width = images.shape
    shifts = np.asarray(shifts, np.int64).reshape(n, 2)
    reach = int(np.abs(shifts).max(initial=0))
    top, left = (frame - height) // 2 + reach, (frame - width) // 2 + reach
    canvas = np.zeros((n, frame + 2 * reach, frame + 2 * reach), images.dtype)
    canvas[:, top:top + height, left:left + width] = images
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (frame, frame), axis=(1, 2))
    return windows[np.arange(n), reach - shifts[:, 0], reach - shifts[:, 1]]


def overlay(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two uint8 images combined as min(a + b, 255)."""
    return np.minimum(first.astype(np.uint16) + second, 255).astype(np.uint8)


def draw_partners(labels: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each index in `chosen`, a random index of the split whose label differs."""
    labels = np.asarray(labels)
    partners = rng.integers(0, len(labels), size=len(chosen))
    same = labels[partners] == labels[chosen]
    while same.any():  # ~10% redraws per round: a few rounds settle every pair
        partners[same] = rng.integers(0, len(labels), size=int(same.sum()))
        same = labels[partners] == labels[chosen]
    return partners


def make_pairs(images: np.ndarray, labels: np.ndarray, chosen: np.ndarray, rng: np.random.Generator,
               max_shift: int = MAX_SHIFT) -> Pairs:
    """Pair each digit in `chosen` (indices into uint8 `images` [n, 28, 28]) with a random digit of another class."""
    if len(np.unique(labels)) < 2:
        raise ValueError("MultiMNIST pairs need digits of at least two classes")
    chosen = np.asarray(chosen, np.int64)
    sources = np.stack([chosen, draw_partners(labels, chosen, rng)], axis=1)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(len(chosen), DIGITS, 2))
    digits = np.stack([shifted_in_frame(images[sources[:, k]], shifts[:, k]) for k in range(DIGITS)], axis=1)
    return Pairs(overlay(digits[:, 0], digits[:, 1]), digits, np.asarray(labels)[sources].astype(np.int64), shifts,
                 sources)


def test_pairs(images: np.ndarray, labels: np.ndarray, seed: int = TEST_SEED) -> Pairs:
    """The fixed test set: every digit of the split once, as the first of a pair, with a partner drawn from `seed`."""
    return make_pairs(images, labels, np.arange(len(images)), np.random.default_rng([seed]))


test_pairs.__test__ = False  # not a pytest test, despite the name


# --- the network's side -------------------------------------------------------------------------------------------

def model_inputs(pairs: Pairs, num_classes: int = 10) -> tuple:
    """The training view's (inputs, targets) for a batch of pairs: the overlay and both labels in; the margin loss
    reads both classes at once, each reconstruction its own digit."""
    one_hot = np.eye(num_classes, dtype=np.float32)[pairs.labels]  # [b, 2, classes]
    images = to_float(pairs.images)[..., None]
    return (images, one_hot), {"length": one_hot.sum(axis=1), "reconstruction": to_float(pairs.digits)[..., None]}


class PairBatches(BatchStream):
    """An endless stream of fresh MultiMNIST batches from a split's digits; `fit` takes `steps_per_epoch` of them.
    Each epoch pairs every digit (in a new order) with a new partner and new shifts."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0,
                 num_classes: int = 10, *, first_step: int = 0):
        super().__init__(images, labels, batch_size, seed, first_epoch, first_step)
        self.num_classes = num_classes

    def batch(self, epoch: int, index: int) -> tuple:
        rng = np.random.default_rng([self.seed, epoch, index])
        return model_inputs(make_pairs(self.images, self.labels, self.chosen(epoch, index), rng), self.num_classes)


def top_classes(lengths: np.ndarray, k: int = DIGITS) -> np.ndarray:
    """[n, classes] capsule lengths -> [n, k] the k longest capsules' classes, longest first."""
    return np.argsort(-np.asarray(lengths), axis=1, kind="stable")[:, :k]


def pair_report(lengths: np.ndarray, labels: np.ndarray) -> dict:
    """The paper's metric: an image is right only when its two longest capsules are its two classes (in any order);
    also the share of images with at least one of the two right."""
    predicted = np.sort(top_classes(lengths, DIGITS), axis=1)
    truth = np.sort(np.asarray(labels), axis=1)
    both = np.all(predicted == truth, axis=1)
    hits = (predicted[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    named = (top_classes(lengths, DIGITS)[:, :, None] == truth[:, None, :]).any(axis=1)  # [n, 2] each digit named
    classes = np.asarray(lengths).shape[1]
    per_class = [float(named[truth == c].mean()) if (truth == c).any() else 0.0 for c in range(classes)]
    return {
        "accuracy": float(both.mean()),
        "error": float(1.0 - both.mean()),
        "errors": int((~both).sum()),
        "count": int(len(truth)),
        "at_least_one_accuracy": float((hits >= 1).mean()),
        "per_class_accuracy": [round(a, 6) for a in per_class],  # of the pairs holding the class: named in the top 2
    }


def predict_pairs(net, images: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A MultiMNIST CapsNet on uint8 or float images [n, 36, 36] -> (capsule lengths [n, classes], the two longest
    capsules' classes [n, 2], each one's reconstruction [n, 2, 36, 36]: the decoder once per capsule, masked by it)."""
    x = to_float(images).reshape((-1, *net.config.input_shape))
    lengths, _, capsules = net.eval.predict(x, batch_size=batch_size, verbose=0)
    top = top_classes(lengths, DIGITS)
    reconstructions = np.stack([decode_as(net, capsules, top[:, k], batch_size) for k in range(DIGITS)], axis=1)
    return lengths, top, reconstructions


def decode_as(net, capsules: np.ndarray, classes: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Reconstructions [n, h, w] from digit capsules [n, classes, dims], each masked by its own entry of `classes`."""
    one_hot = np.eye(net.config.num_classes, dtype=np.float32)[np.asarray(classes)]
    return net.decoder.predict([capsules, one_hot], batch_size=batch_size, verbose=0)[..., 0]


def coloured_overlay(image: np.ndarray, first: np.ndarray, second: np.ndarray, ink: float = 0.35) -> np.ndarray:
    """The paper's figure 5: the input in dim grey, one reconstruction in red and the other in green over it
    (where they overlap, yellow). All [h, w] in [0, 1]; returns RGB [h, w, 3]."""
    image, first, second = (to_float(a) for a in (image, first, second))
    base = ink * image
    return np.clip(np.stack([base + first, base + second, base], axis=-1), 0.0, 1.0)


def real_and_recon(images: np.ndarray, reconstructions: np.ndarray, columns: int = 10) -> np.ndarray:
    """Inputs (top rows) over their coloured reconstructions (bottom rows), as one RGB image."""
    from capsnet.imaging import tile

    real = np.repeat(to_float(images)[..., None], 3, axis=-1)
    coloured = np.stack([coloured_overlay(np.zeros_like(r[0]), r[0], r[1]) for r in reconstructions])
    rows = [np.stack([tile(batch[..., c], columns) for c in range(3)], axis=-1) for batch in (real, coloured)]
    return np.concatenate(rows, axis=0)


def pick_pair(lengths: np.ndarray, labels: np.ndarray, digit: int) -> int:
    """Index of the first pair holding `digit` whose two digits the model names (else the first holding it)."""
    holding = np.flatnonzero((np.asarray(labels) == digit).any(axis=1))
    if len(holding) == 0:
        raise ValueError(f"no pair holds the digit {digit}")
    named = np.sort(top_classes(lengths[holding]), axis=1) == np.sort(labels[holding], axis=1)
    right = holding[named.all(axis=1)]
    return int(right[0] if len(right) else holding[0])


def compose_pair(first: np.ndarray, second: np.ndarray, first_shift: tuple[int, int],
                 second_shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two 28x28 uint8 digits, each moved by its (dy, dx), overlaid by the rule: (overlay [36, 36], digits
    [2, 36, 36]), both uint8."""
    digits = shifted_in_frame(np.stack([first, second]), np.array([first_shift, second_shift]))
    return overlay(digits[0], digits[1]), digits


def from_drawing(ink: np.ndarray, span: int = 28, frame: int = FRAME) -> np.ndarray:
    """Drawn ink ([h, w] in [0, 1], white on black, two digits over each other) -> a [36, 36] float32 input: the
    drawing's box scaled so its longer side is `span` pixels (two overlapping 20-pixel digits, shifted apart, span
    20 to 28), centred by its centre of mass, as the pairs of the training set are."""
    from capsnet.preprocess import NoDigit, resize

    ink = np.asarray(ink, np.float32)
    rows, cols = np.nonzero(ink > 0.1)
    if len(rows) == 0:
        raise NoDigit("the canvas is empty: draw two digits over each other")
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = span / max(crop.shape)
    small = np.clip(resize(crop, (max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)))), 0, 1)
    total = small.sum()
    cy, cx = (np.indices(small.shape) * small).reshape(2, -1).sum(axis=1) / total
    top = int(np.clip(round(frame / 2 - cy), 0, frame - small.shape[0]))
    left = int(np.clip(round(frame / 2 - cx), 0, frame - small.shape[1]))
    out = np.zeros((frame, frame), np.float32)
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out
