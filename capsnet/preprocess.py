"""Turning a drawing or a photo of a digit into what the network was trained on: MNIST-style 28x28 images.

MNIST digits are white ink on black, size-normalised so that the longer side of the ink's bounding box is 20 px
(aspect ratio kept, anti-aliased), then placed in a 28x28 field with their centre of mass at the centre. A digit
drawn on a 280x280 canvas or photographed on paper looks nothing like that until it goes through the same steps, so
both inputs take one path:

    pixels -> grayscale ink on black -> crop to the ink -> longer side 20 px -> centre of mass at (14, 14)

`from_canvas` and `from_upload` differ only in how they find the ink: the canvas is always light ink on a dark
background; an uploaded image may be either way round, so its polarity is read from its border.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from capsnet.imaging import to_float

SIZE = 28  # the network's input
BOX = 20  # MNIST's size normalisation: the longer side of the ink's bounding box
INK_THRESHOLD = 0.2  # of the ink's range: fainter pixels (anti-aliasing, paper texture) do not widen the crop
MIN_CONTRAST = 0.08  # less difference than this between ink and background is an empty image
MAX_SIDE = 1024  # photos are shrunk to this first: the result is 28 px anyway, and big images are slow
IMAGE_TYPES = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")  # file extensions the uploaders accept


class UnreadableImage(ValueError):
    """A file that is not an image Pillow can decode (corrupt, truncated, another format, too large)."""


def from_canvas(rgba: np.ndarray) -> np.ndarray | None:
    """Canvas pixels ([h, w, 4] RGBA, or [h, w, 3] / [h, w]) with light ink on a dark (or transparent) background
    -> [28, 28] float32 in [0, 1], or None when nothing is drawn."""
    return to_mnist(grayscale(rgba, background=0.0))


def from_upload(data: bytes) -> np.ndarray | None:
    """An image file's bytes (PNG, JPEG, ...) with the digit either way round -> [28, 28] float32 in [0, 1], or
    None when the image has no visible ink. Raises `UnreadableImage` for anything Pillow cannot decode."""
    pixels = read_image(data)
    gray = grayscale(pixels, background=None)
    if np.median(border(gray)) > 0.5:  # the edges are paper, not ink: a dark digit on a light background
        gray = 1.0 - gray
    return to_mnist(gray)


def read_image(data: bytes) -> np.ndarray:
    """Decode an image file to uint8 pixels ([h, w] or [h, w, 3|4]), upright (EXIF) and at most MAX_SIDE px."""
    if not data:
        raise UnreadableImage("the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)  # the first frame of an animation
            image = ImageOps.exif_transpose(image)
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float: scale to 8 bits ourselves
                wide = np.asarray(image, dtype=np.float64)
                return np.round(255 * wide / max(wide.max(), 1e-12)).astype(np.uint8)
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Pillow reports truncated and malformed files through all of these
        raise UnreadableImage(f"not a readable image ({type(error).__name__}: {str(error)[:120]})") from None


def grayscale(pixels: np.ndarray, background: float | None) -> np.ndarray:
    """Pixels -> [h, w] luminance in [0, 1]. Transparent parts become `background` (0 black, 1 white); with
    `background=None`, whichever of the two contrasts with the opaque content, so a digit on a transparent sheet
    stays visible whatever its colour."""
    x = to_float(pixels)
    if x.ndim == 2:
        return x
    if x.ndim != 3 or x.shape[-1] not in (2, 3, 4):
        raise ValueError(f"expected [h, w], [h, w, 3] or [h, w, 4] pixels, got shape {x.shape}")
    has_alpha = x.shape[-1] in (2, 4)
    color = x[..., :-1] if has_alpha else x
    gray = color[..., 0] if color.shape[-1] == 1 else color @ np.array([0.299, 0.587, 0.114], np.float32)
    if not has_alpha:
        return gray
    alpha = x[..., -1]
    if background is None:
        opaque = alpha.sum()
        background = 0.0 if opaque == 0 or float((gray * alpha).sum() / opaque) > 0.5 else 1.0
    return gray * alpha + background * (1.0 - alpha)


def border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def to_mnist(ink: np.ndarray) -> np.ndarray | None:
    """[h, w] light ink on a dark background, any size -> [28, 28] float32 MNIST-style, or None if it is blank."""
    ink = np.asarray(ink, np.float32)
    floor = float(np.median(border(ink)))  # the background's level: 0 for the canvas, paper grey for a photo
    span = float(ink.max()) - floor
    if span < MIN_CONTRAST:
        return None
    ink = np.clip((ink - floor) / span, 0.0, 1.0)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]

    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX averages every source pixel into the small image (MNIST's anti-aliasing); it cannot enlarge smoothly
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop).resize(size, resample), np.float32)
    small = np.clip(small, 0.0, 1.0)

    # Place the 20 px box so that its centre of mass lands on pixel (14, 14) -- MNIST's own convention: upscaled
    # MNIST test digits come back through this function with a correlation > 0.99 -- kept wholly inside the field.
    total = small.sum()
    cy, cx = ((np.indices(small.shape) * small).reshape(2, -1).sum(axis=1) / total) if total > 0 else \
        (np.array(small.shape) - 1) / 2
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - small.shape[0]))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - small.shape[1]))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out
