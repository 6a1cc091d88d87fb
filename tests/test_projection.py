"""capsnet.projection: capsule features, PCA, t-SNE, placing new digits, and the disk cache of maps."""

import json

import numpy as np
import pytest

from capsnet import projection
from capsnet.files import PARTIAL_PATTERN
from capsnet.projection import CapsuleSpace, MapStore


def capsules_of(labels: np.ndarray, seed: int = 0, classes: int = 10, dims: int = 16) -> np.ndarray:
    """Digit capsules [n, classes, dims] whose longest capsule is the label's: that capsule ~0.9 long, pointing near
    a direction of its own class, the others ~0.05 long."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(classes, dims))
    capsules = rng.normal(scale=0.05 / np.sqrt(dims), size=(len(labels), classes, dims))
    for i, label in enumerate(labels):
        vector = directions[label] + 0.3 * rng.normal(size=dims)
        capsules[i, label] = 0.9 * vector / np.linalg.norm(vector)
    return capsules.astype(np.float32)


def test_capsule_features_are_the_winning_capsule_or_all_of_them():
    labels = np.array([3, 0, 9, 3])
    capsules = capsules_of(labels)
    winning = projection.capsule_features(capsules, "winning")
    assert winning.shape == (4, 16)
    np.testing.assert_array_equal(winning, capsules[np.arange(4), labels])
    assert projection.capsule_features(capsules, "all").shape == (4, 160)
    with pytest.raises(ValueError):
        projection.capsule_features(capsules, "some")
    with pytest.raises(ValueError):
        projection.capsule_features(capsules[0], "all")


def test_pca_finds_a_plane_and_fixes_its_signs():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(500, 2))
    plane = np.linalg.qr(raw - raw.mean(axis=0))[0] * [500.0, 200.0]  # uncorrelated; the first varies most
    basis_in = np.linalg.qr(rng.normal(size=(16, 2)))[0]  # an orthonormal plane in 16-D
    features = plane @ basis_in.T + 3.0 + rng.normal(scale=1e-3, size=(500, 16))
    basis = projection.fit_pca(features)
    points = basis.transform(features)
    assert points.shape == (500, 2) and points.dtype == np.float32
    # the plane's coordinates come back, each up to a sign
    for axis in range(2):
        assert abs(np.corrcoef(points[:, axis], plane[:, axis])[0, 1]) > 0.999
    assert points[:, 0].var() > points[:, 1].var()
    # the same features with the SVD's sign ambiguity: the same picture (largest loading positive)
    assert np.all(basis.axes[np.argmax(np.abs(basis.axes), axis=0), [0, 1]] > 0)
    np.testing.assert_allclose(projection.fit_pca(features[::-1]).transform(features), points, atol=1e-4)


def test_tsne_separates_clusters_and_repeats_with_its_seed():
    labels = np.repeat(np.arange(3), 40)
    features = projection.capsule_features(capsules_of(labels, seed=2, classes=3), "all")
    points = projection.tsne(features)
    assert points.shape == (120, 2) and points.dtype == np.float32
    assert projection.neighbour_agreement(points, labels) == 1.0
    np.testing.assert_array_equal(projection.tsne(features), points)


def test_neighbour_agreement_tells_islands_from_a_mix():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 50)
    islands = rng.normal(scale=0.1, size=(200, 2)) + 10.0 * np.stack([labels, labels % 2], axis=1)
    assert projection.neighbour_agreement(islands, labels) == 1.0
    assert projection.neighbour_agreement(rng.normal(size=(200, 2)), labels) < 0.5


def test_place_lands_on_a_known_digit_and_between_neighbours():
    features = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]], np.float32)
    points = np.array([[5.0, 5.0], [7.0, 5.0], [-50.0, -50.0]], np.float32)
    np.testing.assert_array_equal(projection.place(features, points, features[1]), points[1])
    between = projection.place(features, points, np.array([0.25, 0.0]), k=2)
    assert 5.0 < between[0] < 6.0 and between[1] == pytest.approx(5.0)  # nearer the first, never the far one


def test_map_key_follows_the_model_and_the_images():
    images = np.zeros((5, 28, 28), np.uint8)
    labels = np.arange(5)
    key = projection.map_key("abc", images, labels)
    assert key == projection.map_key("abc", images.copy(), labels.copy())
    assert key != projection.map_key("abd", images, labels)
    changed = images.copy()
    changed[2, 3, 4] = 1
    assert key != projection.map_key("abc", changed, labels)
    assert key != projection.map_key("abc", images[:4], labels[:4])


def test_file_digest_is_the_content(tmp_path):
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"x" * 3_000_000)
    assert projection.file_digest(a) == projection.file_digest(b)
    b.write_bytes(b"x" * 2_999_999 + b"y")
    assert projection.file_digest(a) != projection.file_digest(b)


class Counting:
    """A capsules source that counts its calls (classifying every test digit is what the cache saves)."""

    def __init__(self, capsules: np.ndarray):
        self.capsules, self.calls = capsules, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.capsules


@pytest.fixture
def labels():
    return np.repeat(np.arange(10), 12)


def test_a_map_is_computed_once_and_then_read_from_disk(tmp_path, labels, monkeypatch):
    source = Counting(capsules_of(labels))
    calls = []
    real_tsne = projection.tsne
    monkeypatch.setattr(projection, "tsne", lambda features: calls.append(features.shape) or real_tsne(features))
    space = CapsuleSpace(MapStore("k1", tmp_path, shipped=None), source)
    assert not space.ready() and not space.has("tsne", "all")
    predicted = space.predicted()
    np.testing.assert_array_equal(predicted, labels)
    assert space.ready() and source.calls == 1
    pca = space.points("pca", "all")
    tsne = space.points("tsne", "all")
    assert pca.shape == tsne.shape == (120, 2)
    assert space.points("tsne", "all") is not None and calls == [(120, 160)]  # once, on all 10x16 features
    assert sorted(p.name for p in (tmp_path / "maps" / "k1").iterdir()) == sorted(
        f"{name}.npy" for name in ["predicted", "confidence", "winning", "pca-winning", "pca-all", "tsne-all",
                                   "pca-winning-mean", "pca-winning-axes", "pca-all-mean", "pca-all-axes"])

    # A new process: the same key reads everything from disk, classifies nothing and runs no t-SNE.
    monkeypatch.setattr(projection, "tsne", lambda features: pytest.fail("t-SNE computed again"))
    again = CapsuleSpace(MapStore("k1", tmp_path, shipped=None), Counting(None))
    np.testing.assert_array_equal(again.points("tsne", "all"), tsne)
    np.testing.assert_array_equal(again.points("pca", "all"), pca)
    np.testing.assert_array_equal(again.predicted(), predicted)
    assert again._capsules is None
    # Another key (another model or test set) is another map.
    assert not CapsuleSpace(MapStore("k2", tmp_path, shipped=None), Counting(None)).ready()


def test_a_test_digit_lands_on_its_own_point(tmp_path, labels):
    capsules = capsules_of(labels, seed=4)
    space = CapsuleSpace(MapStore("k", tmp_path, shipped=None), lambda: capsules)
    for method in ("pca", "tsne"):
        for kind in ("winning", "all"):
            points = space.points(method, kind)
            np.testing.assert_allclose(space.place(capsules[7], method, kind), points[7], atol=1e-5)


def test_shipped_maps_are_read_when_their_key_matches(tmp_path, labels):
    space = CapsuleSpace(MapStore("shipped-key", tmp_path / "build", shipped=None), lambda: capsules_of(labels))
    shipped = tmp_path / "assets" / "maps"
    path = projection.ship(space, shipped / "model.npz")
    assert path.stat().st_size < 20_000
    store = MapStore("shipped-key", tmp_path / "cache", shipped=shipped)
    read = CapsuleSpace(store, lambda: pytest.fail("classified although the map is shipped"))
    assert read.ready()
    np.testing.assert_allclose(read.points("tsne", "winning"), space.points("tsne", "winning"), atol=0.05)
    np.testing.assert_array_equal(read.predicted(), labels)
    store.put("extra", np.arange(3))  # writes go to the cache folder, never into the shipped file
    assert (tmp_path / "cache" / "maps" / "shipped-key" / "extra.npy").is_file()
    assert not MapStore("other-key", tmp_path / "cache", shipped=shipped).has("predicted")
    assert not list((tmp_path / "cache").rglob(PARTIAL_PATTERN))


def test_a_damaged_cache_file_is_computed_again(tmp_path, labels):
    source = Counting(capsules_of(labels))
    CapsuleSpace(MapStore("k", tmp_path, shipped=None), source).points("pca", "winning")
    (tmp_path / "maps" / "k" / "pca-winning.npy").write_bytes(b"not numpy")
    space = CapsuleSpace(MapStore("k", tmp_path, shipped=None), source)
    assert space.points("pca", "winning").shape == (120, 2) and source.calls == 2


def test_an_unwritable_cache_keeps_the_map_in_memory(tmp_path, labels):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    store = MapStore("k", blocked, shipped=None)
    space = CapsuleSpace(store, Counting(capsules_of(labels)))
    assert space.points("pca", "all").shape == (120, 2) and space.ready()
    assert store.unwritable and str(blocked) in store.unwritable


def test_the_cache_root_is_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPSNET_CACHE_DIR", str(tmp_path / "c"))
    assert projection.cache_root() == tmp_path / "c"
    monkeypatch.delenv("CAPSNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert projection.cache_root() == tmp_path / "xdg" / "capsnet-explorer"


@pytest.mark.parametrize("model, card", [("capsnet", "model_card.json"),
                                         ("capsnet_fashion", "capsnet_fashion_card.json")])
def test_the_shipped_maps_belong_to_the_shipped_models(model, card):
    """assets/maps/ holds each shipped model's map of its full test set: its key names the model file and the test
    images as the data layer finds them here, and its predictions are the model's (the card's error count)."""
    from capsnet.data import DataUnavailable, load_dataset

    shipped = projection.SHIPPED_MAPS / f"{model}.npz"
    assert shipped.is_file() and shipped.stat().st_size < 600_000
    card = json.loads((projection.SHIPPED_MAPS.parent / card).read_text())
    dataset = card.get("data", {}).get("dataset") or card["config"].get("dataset", "mnist")
    try:
        data = load_dataset(dataset, allow_download=False)
    except DataUnavailable:
        pytest.skip(f"no local {dataset} test set")
    key = projection.map_key(projection.file_digest(projection.SHIPPED_MAPS.parent / f"{model}.keras"),
                             data.x_test, data.y_test)
    store = MapStore(key, shipped=projection.SHIPPED_MAPS)
    assert store.shipped, "the shipped map's key does not match the model and test set"
    space = CapsuleSpace(store, lambda: pytest.fail("classified although the map is shipped"))
    for method in projection.METHODS:
        for kind in projection.KINDS:
            assert space.points(method, kind).shape == (len(data.y_test), 2)
    accuracy = float(np.mean(space.predicted() == data.y_test))
    assert accuracy == pytest.approx(card["test_accuracy"], abs=5e-4)
