"""Digit images as arrays: one conversion from uint8 pixels (`to_float`), grids of digits, and PNG encoding.

Images are float32 in [0, 1], white ink on black, [28, 28] each (MNIST's layout); a batch is [n, 28, 28].
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels (0-255), booleans or floats already in [0, 1] -> float32 in [0, 1]: the one conversion of
    images on their way into a network. Anything else raises a ValueError that says what came: other integer types
    (0-255 or 0-1? no way to tell) and floats outside [0, 1] (0-255 values as floats, say) would otherwise be read
    wrongly without a word."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if images.dtype == np.bool_:
        return images.astype(np.float32)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"expected images as uint8 pixels (0-255) or floats in [0, 1], got {images.dtype}")
    if images.size:
        low, high = float(np.min(images)), float(np.max(images))
        if not (low >= 0.0 and high <= 1.0):  # NaN fails this too
            hint = "; 0-255 pixels: pass them as uint8, or divide by 255" if 1.0 < high <= 255.0 and low >= 0 else ""
            raise ValueError(f"expected float images in [0, 1], got values from {low:g} to {high:g}{hint}")
    return images.astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def tile(images: np.ndarray, columns: int, gap: int = 0, gap_value: float = 0.5) -> np.ndarray:
    """[n, h, w] -> one image, row by row, `columns` wide, with `gap` pixels of `gap_value` between images."""
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), gap_value if gap else 0.0, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return grid


def real_over_reconstruction(real: np.ndarray, reconstructed: np.ndarray, columns: int = 10,
                             gap: int = 0) -> np.ndarray:
    """Real digits in the top rows and their reconstructions in the same places below (the paper's figure 3).
    Takes one image ([28, 28]) or a batch; with `gap`, grey lines separate the digits (black would vanish into
    their background)."""
    real, reconstructed = to_float(real), to_float(reconstructed)
    if real.ndim == 2:
        real, reconstructed = real[None], reconstructed[None]
    columns = min(columns, len(real))
    top, bottom = tile(real, columns, gap), tile(reconstructed, columns, gap)
    return np.concatenate([top, np.full((gap, top.shape[1]), 0.5, np.float32), bottom], axis=0)


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling ([h, w] or [h, w, channels]), so 28x28 digits keep crisp pixels when shown large."""
    return np.repeat(np.repeat(np.asarray(image, np.float32), scale, axis=0), scale, axis=1)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """A [h, w] image in [0, 1] as PNG bytes, optionally enlarged `scale` times."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(enlarge(image, scale) if scale > 1 else image)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image, scale))
    return path
