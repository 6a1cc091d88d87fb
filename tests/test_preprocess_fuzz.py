"""Fuzzing the preprocessing: any array of any shape and dtype into `from_canvas`, and any bytes into `from_upload`,
give a valid [28, 28] float32 image in [0, 1] or the module's own `PreprocessError` -- never another exception."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from capsnet.preprocess import PreprocessError, from_canvas, from_upload
from capsnet.tools import photos

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = st.sampled_from([np.bool_, np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64, np.float16,
                          np.float32, np.float64, np.complex64])


def assert_valid_or_own_error(make) -> None:
    try:
        image = make()
    except PreprocessError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert isinstance(image, np.ndarray) and image.shape == (28, 28) and image.dtype == np.float32
    assert np.all(np.isfinite(image)) and image.min() >= 0.0 and image.max() <= 1.0


@FUZZ
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=48)))
def test_any_array_into_the_canvas(pixels):
    """NaN and infinities, int64 extremes, 0-size dimensions, 1-D, 5-D, 4+ channels: all of them."""
    assert_valid_or_own_error(lambda: from_canvas(pixels))


@FUZZ
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([1, 2, 3, 4, 5]), st.integers(0, 2**32 - 1))
def test_random_pictures_into_the_canvas(height, width, channels, seed):
    """Larger arrays than the strategy above makes: noise, blobs and lines with and without alpha."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width, channels)) ** rng.uniform(0.2, 8) * 255).astype(np.uint8)
    assert_valid_or_own_error(lambda: from_canvas(pixels))


@FUZZ
@given(st.binary(max_size=4000))
def test_any_bytes_as_an_upload(data):
    assert_valid_or_own_error(lambda: from_upload(data))


def real_files() -> list[bytes]:
    digits, _ = photos.sample_digits(3)
    files = [photos.photo(digits[0], "realistic", index=0), photos.photo(digits[1], "scanner", index=1)]
    for fmt in ("GIF", "BMP", "WEBP", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(255 - np.kron(digits[2], np.ones((3, 3), np.uint8))).save(buffer, format=fmt)
        files.append(buffer.getvalue())
    return files


REAL_FILES = real_files()


@FUZZ
@given(st.sampled_from(range(len(REAL_FILES))),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.sampled_from("fit")),
                min_size=1, max_size=8))
def test_mutated_real_files_as_uploads(which, mutations):
    """Real JPEG, PNG, GIF, BMP, WebP and TIFF files with bytes flipped (f), inserted (i) or cut off (t)."""
    data = bytearray(REAL_FILES[which])
    for where, value, kind in mutations:
        at = int(where * len(data))
        if kind == "f":
            data[at] = value
        elif kind == "i":
            data[at:at] = bytes([value]) * (value % 16 + 1)
        else:
            del data[max(at, 1):]
    assert_valid_or_own_error(lambda: from_upload(bytes(data)))


@pytest.mark.parametrize("data", REAL_FILES, ids=["jpeg", "png", "gif", "bmp", "webp", "tiff"])
def test_the_unmutated_files_read(data):
    assert from_upload(data).shape == (28, 28)


@FUZZ
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12)))
def test_any_array_into_the_one_conversion(images):
    """`imaging.to_float`, where every image enters a network: the same shape as float32 in [0, 1], or a one-line
    ValueError that says what came -- never 0-255 values passed on as if they were in [0, 1]."""
    from capsnet.imaging import to_float

    try:
        converted = to_float(images)
    except ValueError as error:
        assert str(error).startswith("expected") and "\n" not in str(error)
        return
    assert converted.shape == images.shape and converted.dtype == np.float32
    if converted.size:
        assert np.all(np.isfinite(converted)) and converted.min() >= 0.0 and converted.max() <= 1.0
    if images.dtype == np.uint8:
        np.testing.assert_allclose(converted * 255, images, atol=1e-3)
