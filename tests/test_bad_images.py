"""Bad and unusual input images: each gives a digit or the preprocessing's own one-line error, never a traceback.

Every file is made here with Pillow (or by hand, for the decompression bomb), so nothing large is stored."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_app_explorer import open_app

from capsnet.explorer.navigation import PAGES
from capsnet.preprocess import MAX_UPLOAD_BYTES, NoDigit, PreprocessError, UnreadableImage, from_canvas, from_upload
from capsnet.sample import load_sample


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return load_sample().images[0]  # a 7


def paper(digit: np.ndarray, scale: int = 8) -> np.ndarray:
    """The digit in dark ink on white paper, enlarged."""
    return 255 - np.kron(digit, np.ones((scale, scale), np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def assert_reads_as(data: bytes, digit: np.ndarray) -> None:
    image = from_upload(data)
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert correlation(image, digit) > 0.9


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int = 20000) -> bytes:
    """A real decompression bomb: a `side` x `side` 1-bit PNG of one colour, ~50 MB of pixels in ~50 kB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)  # filter byte, then 1 bit a pixel
    idat = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# --- the canvas ----------------------------------------------------------------------------------------------------

def canvas(ink: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[..., :3] = ink[..., None]
    rgba[..., 3] = 255
    return rgba


def test_empty_canvas_is_blank():
    with pytest.raises(NoDigit, match="blank"):
        from_canvas(canvas(np.zeros((280, 280), np.uint8)))


def test_a_single_dot_is_not_a_digit():
    ink = np.zeros((280, 280), np.uint8)
    yy, xx = np.mgrid[:280, :280]
    ink[(yy - 140) ** 2 + (xx - 100) ** 2 <= 9**2] = 255  # one click of the 18 px brush
    with pytest.raises(NoDigit, match="dot"):
        from_canvas(canvas(ink))


def test_a_filled_canvas_is_not_a_digit():
    with pytest.raises(NoDigit, match="mostly ink"):
        from_canvas(canvas(np.full((280, 280), 255, np.uint8)))


def test_a_huge_scribble_is_not_a_digit():
    rng = np.random.default_rng(0)
    ink = Image.new("L", (280, 280))
    draw = ImageDraw.Draw(ink)
    points = [tuple(p) for p in rng.integers(0, 280, (80, 2))]
    draw.line(points, fill=255, width=18)  # back and forth across the whole canvas
    with pytest.raises(NoDigit, match="mostly ink"):
        from_canvas(canvas(np.asarray(ink)))


# --- unreadable files ----------------------------------------------------------------------------------------------

def test_zero_byte_file():
    with pytest.raises(UnreadableImage, match="empty"):
        from_upload(b"")


def test_text_file_named_png():
    with pytest.raises(UnreadableImage, match="not a readable image"):
        from_upload(b"Dear diary, today I wrote the digit 7.\n" * 20)


def test_corrupt_png(digit):
    data = bytearray(encode(Image.fromarray(paper(digit))))
    data[60:120] = bytes(60)  # a damaged stretch of the compressed pixels: CRC and inflate both fail
    with pytest.raises(UnreadableImage, match="not a readable image"):
        from_upload(bytes(data))


def test_decompression_bomb_is_refused_before_decoding():
    data = bomb_png()
    assert len(data) < 200_000
    with pytest.raises(UnreadableImage, match="too large"):
        from_upload(data)


def test_a_file_over_the_size_limit_is_refused_unread():
    with pytest.raises(UnreadableImage, match="larger than"):
        from_upload(b"\x89PNG" + bytes(MAX_UPLOAD_BYTES))


def test_errors_are_value_errors_of_the_modules_own_type():
    assert issubclass(UnreadableImage, PreprocessError) and issubclass(NoDigit, PreprocessError)
    assert issubclass(PreprocessError, ValueError)


# --- unusual but valid files ---------------------------------------------------------------------------------------

def test_sixteen_bit_png(digit):
    assert_reads_as(encode(Image.fromarray(paper(digit).astype(np.uint16) * 257)), digit)


def test_rgba_png_with_a_transparent_background(digit):
    rgba = np.zeros((*paper(digit).shape, 4), np.uint8)
    rgba[..., :3] = 20  # dark ink...
    rgba[..., 3] = 255 - paper(digit)  # ...opaque only where the digit is
    assert_reads_as(encode(Image.fromarray(rgba)), digit)


def test_palette_png(digit):
    assert_reads_as(encode(Image.fromarray(paper(digit)).convert("RGB").quantize(8)), digit)


def test_cmyk_jpeg(digit):
    assert_reads_as(encode(Image.fromarray(paper(digit)).convert("CMYK"), "JPEG", quality=90), digit)


def test_animated_gif_uses_the_first_frame(digit):
    other = load_sample().images[1]  # a 2
    frames = [Image.fromarray(paper(digit)).convert("P"), Image.fromarray(paper(other)).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_reads_as(data, digit)


def test_exif_rotated_photo_is_turned_upright(digit):
    """A phone stores the sensor's pixels and an EXIF orientation; orientation 6 says "turn 90° clockwise"."""
    stored = Image.fromarray(paper(digit)).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6
    assert_reads_as(encode(stored, "JPEG", quality=92, exif=exif), digit)


# --- in the app ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,expected", [
    ("broken.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "not a readable image"),
    ("bomb.png", None, "too large"),
    ("blank.png", encode(Image.new("L", (60, 60), 255)), "No digit found in blank.png"),
], ids=["corrupt", "bomb", "blank"])
def test_draw_page_says_what_is_wrong_with_an_upload(app_env, name, content, expected):
    at = open_app(PAGES["draw"])
    at.file_uploader[0].set_value((name, bomb_png() if content is None else content, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert expected in at.warning[0].value and "\n" not in at.warning[0].value
    assert "Prediction:" not in "\n".join(m.value for m in at.markdown)


# --- arrays into the library ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor():
    from capsnet.inference import Predictor, load_capsnet

    return Predictor(load_capsnet())


@pytest.mark.slow
def test_uint8_digits_are_converted_once(predictor):
    """`assets/test_digits.npz` and the data layer hold uint8 pixels. Passed as they are, they once went in as
    0-255 floats: 29 of these 50 digits were read right. Now uint8 is divided by 255 in the one place that converts
    (`imaging.to_float`), and they read as their float versions do."""
    from capsnet.evaluate import predict_all

    sample = load_sample()
    images, labels = sample.images[:50], sample.labels[:50]
    assert images.dtype == np.uint8
    as_uint8 = [predictor.predict(image) for image in images]
    as_float = [predictor.predict(image / 255.0) for image in images]
    assert sum(p.digit == label for p, label in zip(as_uint8, labels, strict=True)) == 50
    for a, b in zip(as_uint8, as_float, strict=True):
        np.testing.assert_allclose(a.lengths, b.lengths, atol=1e-6)
    np.testing.assert_allclose(predictor.route(images[0]).couplings, predictor.route(images[0] / 255.0).couplings,
                               atol=1e-6)
    lengths = predict_all(predictor.net, images)[0]
    np.testing.assert_allclose(lengths, np.stack([p.lengths for p in as_float]), atol=1e-4)


@pytest.mark.parametrize("image,message", [
    (np.full((28, 28), 255.0), "in \\[0, 1\\].*divide by 255"),  # 0-255 pixels as floats
    (np.full((28, 28), 7, np.int64), "uint8 .* or floats in \\[0, 1\\], got int64"),  # 0-1 or 0-255? no telling
    (np.full((28, 28), np.nan, np.float32), "nan"),
    (np.full((28, 28), -0.5), "from -0.5"),
    (np.zeros((28, 28, 3), np.uint8), "shape \\(28, 28\\), got .* \\(28, 28, 3\\)"),  # RGB
    (np.zeros((2, 28, 28), np.float32), "got .* \\(2, 28, 28\\)"),  # two images
    (np.zeros(784, np.float32), "got .* \\(784,\\)"),
    (np.array(["a"] * 784).reshape(28, 28), "got <U1"),
], ids=["float-0-255", "int64", "nan", "negative", "rgb", "two-images", "flat", "strings"])
def test_arrays_the_predictor_refuses_say_why(predictor, image, message):
    for entry in (predictor.predict, predictor.route, predictor.couplings):
        with pytest.raises(ValueError, match=message):
            entry(image)


def test_a_batch_of_one_and_a_channel_axis_are_fine(predictor):
    image = load_sample().images[0]
    expected = predictor.predict(image).lengths
    for shaped in (image[None], image[..., None], image[None, ..., None]):
        np.testing.assert_allclose(predictor.predict(shaped).lengths, expected, atol=1e-6)


def test_decode_refuses_what_is_not_a_capsule_set(predictor):
    capsules = predictor.predict(load_sample().images[0]).capsules
    for bad, message in ((capsules[:, :8], "shape \\(10, 16\\)"), (capsules[None], "shape \\(10, 16\\)"),
                         (np.full((10, 16), np.inf), "finite"), (capsules.astype(str), "shape \\(10, 16\\)")):
        with pytest.raises(ValueError, match=message):
            predictor.decode(bad, 3)
    for digit in (-1, 10, 2.0, "3"):
        with pytest.raises(ValueError, match="class index from 0 to 9"):
            predictor.decode(capsules, digit)


def test_evaluation_refuses_what_it_would_misread(predictor):
    from capsnet.evaluate import manipulation_grid, predict_all

    images = load_sample().images[:4]
    for bad, message in ((images.astype(np.float32), "divide by 255"), (images.astype(np.int32), "got int32"),
                         (images[..., None].repeat(3, axis=-1), "shape \\[n, 28, 28\\]"),
                         (images.reshape(4, 784), "shape \\[n, 28, 28\\]")):
        with pytest.raises(ValueError, match=message):
            predict_all(predictor.net, bad)
    capsules = predictor.predict(images[0]).capsules
    with pytest.raises(ValueError, match="shape \\(10, 16\\)"):
        manipulation_grid(predictor.net, capsules[:5], 3)
