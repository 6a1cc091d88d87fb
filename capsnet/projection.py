"""Capsule space as a map: every test digit's digit capsules projected to two dimensions, cached on disk.

Each test digit is a point. Its features are either its winning capsule (the 16-D vector of the longest capsule,
the one the decoder reads) or all its capsules (10x16 = 160-D). Two projections:

- PCA, by one SVD (a fraction of a second on 10,000 digits): linear, so a new digit lands exactly where its own
  projection says;
- t-SNE (scikit-learn's Barnes-Hut, after PCA to 50 dimensions for the 160-D features): it keeps neighbourhoods, so
  classes become islands, and the model's confusions show as islands that touch. It takes minutes on a 2-core CPU,
  so it is computed once per model and test set and kept on disk. A new digit (a drawing) is placed at the
  inverse-distance-weighted mean of the map positions of its nearest test digits in capsule space (t-SNE has no
  transform for new points).

What is cached depends on the model file's content and the test images, never on a path or an mtime: `map_key`.
`MapStore` reads a shipped file (`assets/maps/*.npz`, written by `python -m capsnet.projection --ship` for the
shipped models) when its key matches, and otherwise a folder per key under the cache root (`$CAPSNET_CACHE_DIR`,
default `~/.cache/capsnet-explorer`), written atomically so that concurrent sessions never read half a file.

`python -m capsnet.projection -w MODEL` computes a model's map, prints how long each step took and how well each
projection keeps the classes apart (`neighbour_agreement`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsnet.assets import SHIPPED_MAPS
from capsnet.files import written_whole

try:
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency
except ImportError:  # an install from before scikit-learn was required: PCA still works, t-SNE says what is missing
    def threadpool_limits(limits: int) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

KINDS = ("winning", "all")  # the features: the winning 16-D capsule, or all 10x16
METHODS = ("pca", "tsne")
TSNE_PERPLEXITY = 30.0
TSNE_SEED = 0
TSNE_INPUT_DIMS = 50  # wider features are reduced by PCA first (the usual t-SNE practice; also much faster)
NEIGHBOURS = 10  # test digits that place a new digit on a t-SNE map, and that `neighbour_agreement` consults
FORMAT = 1  # part of every key: bump it when what is stored changes meaning


# --- features and projections ----------------------------------------------------------------------------------

def winners(capsules: np.ndarray) -> np.ndarray:
    """[n, classes, dims] -> [n]: the longest capsule of each digit, the model's prediction."""
    return np.argmax(np.linalg.norm(np.asarray(capsules, np.float32), axis=-1), axis=-1)


def capsule_features(capsules: np.ndarray, kind: str) -> np.ndarray:
    """Digit capsules [n, classes, dims] -> the features a map projects: [n, dims] (`kind` "winning": each digit's
    longest capsule) or [n, classes * dims] ("all")."""
    capsules = np.asarray(capsules, np.float32)
    if capsules.ndim != 3:
        raise ValueError(f"capsules must be [n, classes, dims], not {capsules.shape}")
    if kind == "winning":
        return capsules[np.arange(len(capsules)), winners(capsules)]
    if kind == "all":
        return capsules.reshape(len(capsules), -1)
    raise ValueError(f"unknown capsule features {kind!r}: one of {KINDS}")


@dataclass(frozen=True)
class Basis:
    """A linear projection: (features - mean) @ axes."""

    mean: np.ndarray  # [dims]
    axes: np.ndarray  # [dims, components]

    def transform(self, features: np.ndarray) -> np.ndarray:
        with threadpool_limits(1):  # see fit_pca
            return ((np.asarray(features, np.float64) - self.mean) @ self.axes).astype(np.float32)


def fit_pca(features: np.ndarray, components: int = 2) -> Basis:
    """The first principal axes of `features` [n, dims]. Each axis' sign is fixed (its largest loading positive), so
    that the same features always give the same picture, whatever the SVD routine returns."""
    features = np.asarray(features, np.float64)
    mean = features.mean(axis=0)
    centred = features - mean
    # The covariance's eigenvectors (dims x dims), on one thread: far cheaper than an SVD of the whole [n, dims]
    # array, and BLAS threads that wait on each other on a busy machine only slow it down.
    with threadpool_limits(1):
        _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :components]  # eigh sorts ascending
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return Basis(mean, axes * np.where(signs == 0, 1.0, signs))


def tsne(features: np.ndarray, seed: int = TSNE_SEED, perplexity: float = TSNE_PERPLEXITY) -> np.ndarray:
    """scikit-learn's t-SNE of `features` [n, dims] -> [n, 2] float32, seeded (the same input gives the same map)."""
    from sklearn.manifold import TSNE  # scikit-learn is slow to import: only when a map is computed

    features = np.asarray(features, np.float32)
    if features.shape[1] > TSNE_INPUT_DIMS:
        features = fit_pca(features, TSNE_INPUT_DIMS).transform(features)
    perplexity = min(perplexity, (len(features) - 1) / 3)  # scikit-learn requires perplexity < n
    # One thread: where the cores are busy (a training beside the app), OpenMP's threads spin at every barrier and
    # take longer than one thread alone (README, "Capsule space": the timings).
    with threadpool_limits(1):
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                      random_state=seed).fit_transform(features)
    return points.astype(np.float32)


def place(features: np.ndarray, points: np.ndarray, feature: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Where a new digit with `feature` [dims] lands on a map of `points` [n, 2] made from `features` [n, dims]: the
    inverse-distance-weighted mean position of its `k` nearest neighbours in feature space (exactly a neighbour's
    position when it coincides with one)."""
    features = np.asarray(features, np.float32)
    distances = np.linalg.norm(features - np.asarray(feature, np.float32), axis=1)
    nearest = np.argsort(distances)[:k]
    if distances[nearest[0]] < 1e-6:
        return np.asarray(points[nearest[0]], np.float32)
    weights = 1.0 / distances[nearest]
    return (weights @ np.asarray(points, np.float64)[nearest] / weights.sum()).astype(np.float32)


def neighbour_agreement(points: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> float:
    """How well a map keeps classes apart: the share of points whose `k` nearest other points on it are mostly of
    their own class (leave-one-out k-NN accuracy). 1.0: every class its own island."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    _, nearest = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    votes = labels[nearest[:, 1:]]  # the first neighbour is the point itself
    majority = np.array([np.bincount(row).argmax() for row in votes])
    return float(np.mean(majority == labels))


# --- the disk cache --------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """Where computed maps are kept: `$CAPSNET_CACHE_DIR`, else `$XDG_CACHE_HOME/capsnet-explorer` (default
    `~/.cache/capsnet-explorer`). Outside the repository: user models' maps are not the project's files."""
    if env := os.environ.get("CAPSNET_CACHE_DIR"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "capsnet-explorer"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content (a 33 MB model file: ~0.1 s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def map_key(model_digest: str, images: np.ndarray, labels: np.ndarray) -> str:
    """What a map depends on: the model file's content, the test images and their labels, and FORMAT."""
    digest = hashlib.sha256(f"capsule-map {FORMAT} {model_digest}".encode())
    for array in (np.asarray(images, np.uint8), np.asarray(labels, np.int64)):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:24]


class MapStore:
    """Named arrays of one map (one `map_key`): read from a shipped .npz whose key matches, else from this key's
    folder under `root`; written to that folder only, each array atomically (written aside, then renamed)."""

    def __init__(self, key: str, root: Path | None = None, shipped: Path | None = SHIPPED_MAPS):
        self.key = key
        self.folder = (root or cache_root()) / "maps" / key
        self.unwritable: str | None = None  # why the folder could not be written, if it could not
        self.memory: dict[str, np.ndarray] = {}  # what could not be written: kept for this process at least
        self.shipped: dict[str, np.ndarray] = {}
        for path in sorted(shipped.glob("*.npz")) if shipped is not None and shipped.is_dir() else []:
            try:
                with np.load(path) as archive:
                    if "key" in archive.files and str(archive["key"]) == key:
                        self.shipped = {name: archive[name] for name in archive.files if name != "key"}
                        break
            except (OSError, ValueError):  # a damaged shipped file is a cache miss, not an error
                continue

    def get(self, name: str) -> np.ndarray | None:
        if name in self.shipped:
            return self.shipped[name]
        if name in self.memory:
            return self.memory[name]
        try:
            return np.load(self.folder / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, name: str, array: np.ndarray) -> None:
        """Written aside, then renamed; a folder that cannot be written (read-only, full) keeps the array in memory
        instead and says why in `unwritable`: the map still works, it is only computed again by the next process."""
        try:
            with written_whole(self.folder / f"{name}.npy") as partial:
                np.save(partial, np.asarray(array), allow_pickle=False)
        except OSError as error:
            self.memory[name] = np.asarray(array)
            self.unwritable = f"{self.folder}: {error.strerror or error}"

    def has(self, name: str) -> bool:
        return name in self.shipped or name in self.memory or (self.folder / f"{name}.npy").is_file()


# --- one model's map -------------------------------------------------------------------------------------------

class CapsuleSpace:
    """One model's capsule space on one set of test images: predictions and projections, read from `store` where
    they are, otherwise computed (from `capsules`, called at most once: classifying 10,000 digits takes a minute or
    more) and stored."""

    def __init__(self, store: MapStore, capsules: Callable[[], np.ndarray]):
        self.store = store
        self._capsules_of = capsules
        self._capsules: np.ndarray | None = None
        self._lock = threading.Lock()  # sessions sharing this map compute each part once

    def capsules(self) -> np.ndarray:
        if self._capsules is None:
            self._capsules = np.asarray(self._capsules_of(), np.float32)
        return self._capsules

    def ready(self) -> bool:
        """Whether the predictions and PCA maps are on disk (otherwise the first call classifies every digit)."""
        return all(self.store.has(name) for name in ("predicted", "confidence", "winning",
                                                     *(f"pca-{kind}" for kind in KINDS)))

    def _summarise(self) -> None:
        """Everything but t-SNE, at once: predictions, lengths, winning capsules, PCA bases and maps."""
        capsules = self.capsules()
        lengths = np.linalg.norm(capsules, axis=-1)
        predicted = np.argmax(lengths, axis=-1)
        self.store.put("predicted", predicted.astype(np.int16))
        self.store.put("confidence", lengths[np.arange(len(lengths)), predicted].astype(np.float32))
        self.store.put("winning", capsule_features(capsules, "winning"))  # for placing drawings on t-SNE maps
        for kind in KINDS:
            features = capsule_features(capsules, kind)
            basis = fit_pca(features)
            self.store.put(f"pca-{kind}-mean", basis.mean.astype(np.float32))
            self.store.put(f"pca-{kind}-axes", basis.axes.astype(np.float32))
            self.store.put(f"pca-{kind}", basis.transform(features))

    def _get(self, name: str) -> np.ndarray:
        value = self.store.get(name)
        if value is None:
            with self._lock:
                if self.store.get(name) is None:  # missing, or unreadable: computed (again)
                    self._summarise()
            value = self.store.get(name)
        return value

    def predicted(self) -> np.ndarray:
        return self._get("predicted").astype(np.int64)

    def confidence(self) -> np.ndarray:
        return self._get("confidence").astype(np.float32)

    def has(self, method: str, kind: str) -> bool:
        return self.store.has(f"{method}-{kind}")

    def points(self, method: str, kind: str) -> np.ndarray:
        """[n, 2]: the map of `kind` features by `method`."""
        if method not in METHODS or kind not in KINDS:
            raise ValueError(f"unknown map {method}-{kind}")
        if method == "pca":
            return self._get(f"pca-{kind}").astype(np.float32)
        points = self.store.get(f"tsne-{kind}")
        if points is None:
            with self._lock:
                points = self.store.get(f"tsne-{kind}")
                if points is None:
                    points = tsne(capsule_features(self.capsules(), kind))
                    self.store.put(f"tsne-{kind}", points)
        return np.asarray(points, np.float32)

    def basis(self, kind: str) -> Basis:
        return Basis(self._get(f"pca-{kind}-mean").astype(np.float64), self._get(f"pca-{kind}-axes").astype(np.float64))

    def place(self, capsules: np.ndarray, method: str, kind: str) -> np.ndarray:
        """[2]: where a new digit with digit capsules [classes, dims] lands on the map of `kind` by `method`. PCA
        projects it exactly. On t-SNE it joins its nearest test digits among those the model reads as the same class,
        by their winning capsules: different classes' capsules are different spaces, and in the 160-D features two
        digits of different predicted classes are far apart anyway (each has one long capsule, in its own place)."""
        one = np.asarray(capsules, np.float32)[None]
        if method == "pca":
            return self.basis(kind).transform(capsule_features(one, kind))[0]
        digit = int(winners(one)[0])
        same = np.flatnonzero(self.predicted() == digit)
        if len(same) == 0:  # no test digit is read as this class: the drawing joins them all
            same = np.arange(len(self.predicted()))
        winning = self._get("winning").astype(np.float32)[same]
        return place(winning, self.points(method, kind)[same], capsule_features(one, "winning")[0])


def ship(space: CapsuleSpace, path: Path) -> Path:
    """Everything the explorer reads of a map, in one compressed file (for `assets/maps/`): small float types, as
    they are only drawn."""
    arrays = {"key": np.array(space.store.key), "predicted": space.predicted().astype(np.uint8),
              "confidence": space.confidence().astype(np.float16),
              "winning": space._get("winning").astype(np.float16)}
    for kind in KINDS:
        basis = space.basis(kind)
        arrays[f"pca-{kind}-mean"], arrays[f"pca-{kind}-axes"] = basis.mean.astype(np.float32), basis.axes.astype(
            np.float32)
        for method in METHODS:
            arrays[f"{method}-{kind}"] = space.points(method, kind).astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m capsnet.projection -w MODEL`: compute (or read) a model's map on its full test set, timing each
    step; `--ship` also writes it into assets/maps/ (for the shipped models)."""
    parser = argparse.ArgumentParser(prog="python -m capsnet.projection", description=main.__doc__)
    parser.add_argument("-w", "--weights", help="model file (default: the shipped MNIST CapsNet)")
    parser.add_argument("--count", type=int, help="only the first N test images")
    parser.add_argument("--ship", action="store_true", help="also write assets/maps/<model file stem>.npz")
    parser.add_argument("--fresh", action="store_true",
                        help="compute everything again (in a temporary folder, ignoring shipped maps): to time it")
    args = parser.parse_args(argv)

    from capsnet.assets import PRETRAINED_MODEL
    from capsnet.evaluate import predict_all
    from capsnet.inference import load_capsnet
    from capsnet.sample import load_test_digits

    path = Path(args.weights) if args.weights else PRETRAINED_MODEL
    net = load_capsnet(path)
    digits = load_test_digits(net.config.dataset)
    images, labels = digits.images[:args.count], digits.labels[:args.count]
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], object]) -> object:
        started = time.perf_counter()
        value = work()
        timings[name] = round(time.perf_counter() - started, 2)
        return value

    key = map_key(timed("model digest", lambda: file_digest(path)), images, labels)
    store = MapStore(key, Path(tempfile.mkdtemp()), shipped=None) if args.fresh else MapStore(key)
    space = CapsuleSpace(store, lambda: timed("classify", lambda: predict_all(net, images)[2]))
    predicted = timed("predictions and PCA (after classifying)", space.predicted)
    report: dict[str, object] = {"model": str(path), "test images": f"{len(labels)} from {digits.source}",
                                 "key": key, "errors": int(np.sum(predicted != labels))}
    for kind in KINDS:
        for method in METHODS:
            points = timed(f"{method} {kind}", lambda method=method, kind=kind: space.points(method, kind))
            report[f"{NEIGHBOURS}-NN agreement, {method} {kind}"] = round(neighbour_agreement(points, labels), 4)
    if args.ship:
        report["shipped"] = str(ship(space, SHIPPED_MAPS / f"{path.stem}.npz"))
    print(json.dumps({**report, "seconds": timings}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
