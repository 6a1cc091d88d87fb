"""Turning a drawing or a photo of a digit into what the network was trained on: MNIST-style 28x28 images.

MNIST digits are saturated white ink on pure black, size-normalised so that the longer side of the ink's bounding
box is 20 px (aspect ratio kept, anti-aliased), with strokes 2-3 px wide, placed in a 28x28 field with their centre
of mass at the centre. A canvas drawing is almost that already; a phone photo is far from it: grey paper under
uneven light, faint pencil, shadows, specks, a desk beyond the sheet, a small digit somewhere in a big frame. Both
take one path, and only the first step differs:

    canvas: light ink on black -------------------------------------------------> darkness in [0, 1]
    photo:  decode -> grayscale -> 256-512 px -> which way round -> divided by    -^
            the paper's own brightness (a smooth upper envelope: lamps, gradients, shadows)
    darkness -> the digit among specks, lines, edges -> its contrast normalised -> crop
             -> strokes at least MNIST-wide -> longer side 20 px -> centre of mass at (14, 14)

`canvas_stages` and `upload_stages` return every stage a user may want to see (`Stages`); `from_canvas` and
`from_upload` return the 28x28 image alone. Anything that cannot give a digit raises a `PreprocessError` whose
message is meant for the user: `UnreadableImage` for files that do not decode, `NoDigit` for inputs without one.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from capsnet.config import DIGIT_SIZE

SIZE = DIGIT_SIZE  # the network's input
BOX = 20  # MNIST's size normalisation: the longer side of the ink's bounding box
IMAGE_TYPES = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")  # file extensions the uploaders accept
MAX_UPLOAD_MB = 25  # a phone's photo is 2-12 MB; a larger image file is refused unread (the uploaders say so first)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 2**20
MAX_PIXELS = 50_000_000  # more pixels than a 48-megapixel phone camera: a decompression bomb, refused before decoding

WORK_SIDE = 512  # uploads are decoded to this size, the digit found in it: a thin pen in a big photo is a pixel
MIN_WORK_SIDE = 256  # ...and smaller ones enlarged to this, so that the pixel-sized steps below (GRAIN, the bridging
                     # of grainy strokes) stay finer than the gaps between a small photo's digit and its neighbours
LIGHT_SIDE = 96  # the paper's brightness is estimated at this resolution...
LIGHT_WINDOW = 0.2  # ...by a closing wider than any stroke (a fraction of the longer side)
GRAIN = 5  # px: the digit is looked for in darkness averaged over this window
POLARITY_SIDE = 64  # which way round the ink is, from a local median at this resolution: light ink on a dark
LIGHT_INK_ODDS = 2.0  # ground (rare in photos) must stray from it this many times more than dark ink would...
FLAT = 0.05  # ...unless most of the image lies this close to its darkest level: a digital image's black ground
PREVIEW_SIDE = 140  # the stages a page shows
BLOCK_TOLERANCE = 6 / 255  # neighbouring pixels this close are one pixel repeated (a nearest-neighbour enlargement)
MAX_NATIVE_SIDE = 24  # ...which is undone when the image it enlarged was a thumbnail (8x8 to 16x16 digit sets);
                      # MNIST's own 28 px enlarged so reads as itself already (correlation 0.998)
SCAN_SIDE = 96  # whether an upload is a clean scan is judged at this resolution, from Otsu's split into two tones:
SCAN_CONTRAST = 0.3  # ...ground and ink at least this far apart (the ground's median, the ink's 10th percentile),
SCAN_EVENNESS = 0.4  # ...the ground as bright everywhere to within this fraction of that contrast (4x4 tiles),
SCAN_NOISE = 0.06  # ...with grain or sensor noise (its deviation) below this fraction of it,
SCAN_FRAME = 0.45  # ...and at most this fraction of the frame's edge dark, in no stretch longer than this one:
SCAN_FRAME_RUN = 0.2  # a digit filling the frame touches its edge here and there, a desk or a shadow runs along it
SCAN_GROUND = 0.5  # ...the ground being at least this fraction of the image
SCAN_FLAT = 0.01  # light ink on a dark ground is a digital image's (MNIST, a screenshot, a thumbnail), whose ground is
                  # this flat: a photo's blown-out lamp on dim paper would otherwise pass for light ink

MIN_CONTRAST = 0.08  # darkness below this is paper, whatever the noise
CANVAS_FLOOR = 0.01  # the canvas has no noise: its faintest anti-aliasing is ink
NOISE_SIGMAS = 4.0  # darkness this many noise deviations above the paper's median may be ink
INK_PERCENTILE = 90  # of the digit's darkness: its ink level, which maps to 1 (and the noise floor to 0)
MASK_INK = 0.35  # of the ink level: what counts as ink when telling the digit from ruled lines and texture
EDGE_REACH = 0.08  # of the longer side: how far from the digit's ink its faint edges may reach
INK_THRESHOLD = 0.2  # of the normalised ink: fainter pixels (anti-aliasing) do not widen the crop
EDGE_WEIGHT = 0.1  # what touches the frame's edge (the sheet's edge, a desk, ruled lines, a shadow) counts this
                   # much when choosing the digit: a digit is rarely cut off by the frame...
EDGE_RUN = 0.1  # ...and less again where it runs along the frame for more than this fraction of the frame's
                # height + width: a digit cut off by the frame touches it across a stroke or two, a desk all along
PART_MASS = 0.03  # a part of the digit (a 5's bar) carries at least this much of the main stroke's ink...
PART_GAP = 0.5  # ...lies within this fraction of the digit's size of it...
PART_DARKNESS = 0.5  # ...and is at least this dark, on average, relative to it: the same pen
MAX_INK_FRACTION = 0.5  # more of the frame than this is ink: a filled canvas or a huge scribble, not a digit
MIN_ELONGATION = 1.6  # longer side squared over ink area: a dot is ~1.3, the lowest of 2,000 MNIST digits 1.78
STROKE_SCALE = 4  # strokes are measured and widened at this multiple of the 20 px box
MIN_STROKE = 5.0  # px at that scale: thinner than almost all of MNIST (5th percentile 6.4, median 10, from
STROKE = 8.0  # 2 x area / boundary); such strokes are widened to this, MNIST's first quartile
SOLID = 0.64  # of a 28x28 digit's inked pixels (> 0.05), the share above 0.5; lower than MNIST's 10th percentile
              # (median 0.72, of the 10,000 test digits) is a soft digit -- out of focus, or a few pixels enlarged --
SHARPNESS = 12.0  # ...whose strokes are made solid before size normalisation, as MNIST's were: a steep S-curve...
SHARPEN_AT = 0.5  # ...around this level of the ink


DRAWING, CLEAN_SCAN, PHOTO = "drawing", "clean scan", "photo"
READINGS = {
    DRAWING: "Read as a drawing: light ink on black, taken as it is.",
    CLEAN_SCAN: "Read as a clean scan: two tones on an even background, so no lighting correction.",
    PHOTO: "Read as a photo: lighting corrected (the paper's uneven brightness divided out).",
}


class PreprocessError(ValueError):
    """An input that gives no digit; the message says why, for the user."""


class UnreadableImage(PreprocessError):
    """A file that is not an image Pillow can decode (corrupt, truncated, another format, too large)."""


class NoDigit(PreprocessError):
    """An image without a digit in it: blank, a dot, all ink."""


@dataclass(frozen=True)
class Stages:
    """What the preprocessing saw and kept, at most PREVIEW_SIDE px, and the network's input."""

    found: np.ndarray  # [h, w] the input in grayscale, as found
    ink: np.ndarray  # [h, w] the ink kept as the digit, white on black
    image: np.ndarray  # [28, 28] float32 in [0, 1]
    reading: str = DRAWING  # how it was read: DRAWING (the canvas), CLEAN_SCAN or PHOTO (see `upload_stages`)

    @property
    def explanation(self) -> str:
        """One line for the user: which way the preprocessing read the input."""
        return READINGS[self.reading]


def from_canvas(pixels: np.ndarray) -> np.ndarray:
    """Canvas pixels ([h, w, 4] RGBA, or [h, w, 3] / [h, w]) with light ink on a dark (or transparent) background
    -> [28, 28] float32 in [0, 1]. Raises `NoDigit` when nothing (or everything) is drawn."""
    return canvas_stages(pixels).image


def from_upload(data: bytes) -> np.ndarray:
    """An image file's bytes (PNG, JPEG, ...), a photo or scan with the digit either way round -> [28, 28] float32
    in [0, 1]. Raises `UnreadableImage` for files that do not decode, `NoDigit` for images without a digit."""
    return upload_stages(data).image


def canvas_stages(pixels: np.ndarray) -> Stages:
    gray = grayscale(pixels, background=0.0)
    return find_digit(shrink(gray, WORK_SIDE), gray, noise_floor=CANVAS_FLOOR)


def upload_stages(data: bytes) -> Stages:
    """An upload is read one of two ways, decided before anything is corrected: a clean scan (two tones, an even
    ground: a scan, a screenshot, a thumbnail, MNIST itself) only has its ink's contrast stretched; anything else is
    a photo, whose lighting is estimated and divided out. The lighting estimate takes broad ink for shade, so
    applying it to a clean image with thick or soft strokes could only turn them into a blob or hollow outlines."""
    gray = grayscale(read_image(data), background=None)
    native = unblocked(gray)
    work = shrink(native, WORK_SIDE)
    if max(work.shape) < MIN_WORK_SIDE:
        scale = MIN_WORK_SIDE / max(work.shape)
        work = resize(work, (round(work.shape[0] * scale), round(work.shape[1] * scale)), smooth=native is not gray)
    measured = tones(work)
    if measured.clean:
        dark = np.clip((work - measured.ground) / (measured.ink - measured.ground), 0.0, 1.0)
        return dataclasses.replace(find_digit(dark, gray, noise_floor=measured.floor, sharpen=True),
                                   reading=CLEAN_SCAN)
    return dataclasses.replace(find_digit(darkness(work), gray), reading=PHOTO)


def plain_from_upload(data: bytes) -> np.ndarray:
    """The plain reading of an image file, without the photo steps: ink either way round, its contrast stretched
    from the background's level (the median) to the ink's (the 99.5th percentile), then MNIST's own steps. What the
    full preprocessing is held against on images that need none of its corrections (tests, `bench --photos`)."""
    gray = shrink(grayscale(read_image(data), background=None), WORK_SIDE)
    ink = gray if light_ink(gray) else 1.0 - gray
    ground, peak = float(np.median(ink)), float(np.percentile(ink, 99.5))
    if peak - ground < MIN_CONTRAST:
        raise NoDigit("it looks blank: no ink stands out from the background")
    return to_mnist(np.clip((ink - ground) / (peak - ground), 0.0, 1.0))


# --- pixels in -----------------------------------------------------------------------------------------------------

def read_image(data: bytes) -> np.ndarray:
    """Decode an image file to uint8 pixels ([h, w] or [h, w, 3|4]): the first frame, upright (EXIF), at most
    WORK_SIDE px."""
    if not data:
        raise UnreadableImage("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UnreadableImage(f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    too_large = f"the image is too large (at most {MAX_PIXELS // 10**6} megapixels)"
    try:
        with warnings.catch_warnings():  # Pillow warns of (and then refuses) huge images itself; we refuse them all
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.width * image.height > MAX_PIXELS:  # read from the header: nothing is decoded yet
                raise UnreadableImage(f"{too_large}: {image.width}×{image.height} pixels")
            image.seek(0)  # the first frame of an animation
            image.thumbnail((WORK_SIDE, WORK_SIDE))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale where that suffices
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float: scale to 8 bits ourselves
                wide = np.nan_to_num(np.asarray(image, dtype=np.float64))
                wide -= wide.min()
                return np.round(255 * wide / max(wide.max(), 1e-12)).astype(np.uint8)
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            pixels = np.asarray(image)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError:
        raise UnreadableImage(too_large) from None
    except Exception as error:  # noqa: BLE001 -- untrusted bytes: Pillow's decoders fail in many ways
        raise UnreadableImage(f"not a readable image ({type(error).__name__}: {str(error)[:120]})") from None
    if pixels.size == 0:
        raise UnreadableImage("the image has no pixels")
    return pixels


def as_pixels(pixels: np.ndarray) -> np.ndarray:
    """Any array -> float32 pixels in [0, 1] of shape [h, w] or [h, w, 1-4]; `PreprocessError` if it cannot be."""
    x = np.asarray(pixels)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] not in (2, 3, 4)) or x.size == 0:
        raise PreprocessError(f"expected [h, w], [h, w, 3] or [h, w, 4] pixels, got shape {x.shape}")
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if x.dtype == np.uint8:  # the usual case, and the quickest
        return x.astype(np.float32) * np.float32(1 / 255)
    if np.issubdtype(x.dtype, np.integer):
        return np.clip(x.astype(np.float64) / np.iinfo(x.dtype).max, 0, 1).astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise PreprocessError(f"expected numeric pixels, got {x.dtype}")
    return np.clip(np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def grayscale(pixels: np.ndarray, background: float | None) -> np.ndarray:
    """Pixels -> [h, w] luminance in [0, 1]. Transparent parts become `background` (0 black, 1 white); with
    `background=None`, whichever of the two contrasts with the opaque content, so a digit on a transparent sheet
    stays visible whatever its colour."""
    x = as_pixels(pixels)
    if x.ndim == 2:
        return x
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


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """Area-average `image` so that its longer side is at most `side` px (never enlarged)."""
    h, w = image.shape
    if max(h, w) <= side:
        return np.asarray(image, np.float32)
    scale = side / max(h, w)
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def resize(image: np.ndarray, shape: tuple[int, int], smooth: bool = False) -> np.ndarray:
    """[h, w] float -> `shape`; BOX averages every source pixel when shrinking (MNIST's anti-aliasing), bilinear
    enlarges smoothly. `smooth`: bicubic enlarges instead (and the result is clipped to the input's range): a few
    pixels enlarged bilinearly become soft pyramids, which the network reads far worse than bicubic's rounder
    strokes."""
    smaller = shape[0] * shape[1] < image.shape[0] * image.shape[1]
    if smooth and not smaller:
        out = Image.fromarray(np.asarray(image, np.float32)).resize(shape[::-1], Image.Resampling.BICUBIC)
        return np.clip(np.asarray(out, np.float32), float(np.min(image)), float(np.max(image)))
    resample = Image.Resampling.BOX if smaller else Image.Resampling.BILINEAR
    out = Image.fromarray(np.asarray(image, np.float32)).resize(shape[::-1], resample)
    return np.asarray(out, np.float32)


# --- clean scans: recognised, and left as they are ------------------------------------------------------------------

def unblocked(gray: np.ndarray) -> np.ndarray:
    """A small image enlarged by repeating its pixels (nearest-neighbour: a thumbnail or a low-resolution scan blown
    up) -> the small image itself, so that it can be enlarged smoothly instead: the network never saw square
    pixels. Anything else is returned as it is."""
    h, w = gray.shape
    native = []
    for changes, length in ((np.abs(np.diff(gray, axis=0)).max(axis=1), h),
                            (np.abs(np.diff(gray, axis=1)).max(axis=0), w)):
        runs = np.diff(np.concatenate([[0], np.flatnonzero(changes > BLOCK_TOLERANCE) + 1, [length]]))
        side = round(length / max(int(runs.min()), 1))
        if runs.min() < 2 or not 4 <= side <= MAX_NATIVE_SIDE:
            return gray
        native.append(side)
    small = np.asarray(Image.fromarray(gray).resize(native[::-1], Image.Resampling.NEAREST), np.float32)
    again = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST), np.float32)
    # Every pixel must come back: a sharp-edged drawing with long flat runs is not a grid of repeated pixels.
    return small if float(np.abs(again - gray).max()) <= BLOCK_TOLERANCE else gray


def otsu(values: np.ndarray) -> float:
    """The level that splits `values` (in [0, 1]) into two tones with the least spread within each (Otsu's)."""
    hist, edges = np.histogram(values, 128, (0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist) / max(hist.sum(), 1)
    mean = np.cumsum(hist * centres) / max(hist.sum(), 1)
    between = (mean[-1] * weight - mean) ** 2 / np.maximum(weight * (1 - weight), 1e-12)
    return float(centres[np.argmax(between)])


@dataclass(frozen=True)
class Tones:
    """An image's two tones as `tones` measures them, in its own brightness units (ink may be the brighter)."""

    ground: float  # the ground's level (median)
    ink: float  # the ink's (its 10th percentile of darkness: the solid ink)
    ground_share: float  # of the image
    dark_frame: float  # the share of the frame's edge that is not ground
    frame_run: float  # the longest unbroken stretch of it, as a share of the frame's edge
    uneven: float  # how far apart the ground's brightest and dimmest tiles are, in units of |ink - ground|
    noise: float  # the ground's pixel-to-pixel noise (a deviation), in the same units

    @property
    def clean(self) -> bool:
        """Two well-separated tones on an even, quiet ground, the ink a digit's share of the image and away from
        most of the frame's edge: a scan, a screenshot, a thumbnail, MNIST itself."""
        return (abs(self.ink - self.ground) >= SCAN_CONTRAST and self.ground_share >= SCAN_GROUND
                and (self.ground > self.ink or self.noise <= SCAN_FLAT)
                and self.dark_frame <= SCAN_FRAME and self.frame_run <= SCAN_FRAME_RUN
                and self.uneven <= SCAN_EVENNESS and self.noise <= SCAN_NOISE)

    @property
    def floor(self) -> float:
        """What is surely ground, in the ink's contrast (ground 0, ink 1). Unlike a photo's, it is not judged from
        the image's median, which a digit filling much of the frame would shift."""
        return MIN_CONTRAST + NOISE_SIGMAS * self.noise


def longest_run(ring: np.ndarray) -> int:
    """The longest stretch of True in a boolean ring (its end joins its start)."""
    if ring.all():
        return len(ring)
    line = np.roll(ring, -int(np.argmin(ring))).astype(np.int8)  # starts at a False: no run wraps round
    ends = np.flatnonzero(np.diff(np.concatenate([[0], line, [0]])))
    return int((ends[1::2] - ends[::2]).max()) if len(ends) else 0


def tones(work: np.ndarray) -> Tones:
    """Splits an image into ground and ink (Otsu's two tones, at SCAN_SIDE) and measures how clean it is.

    The ground is whichever tone holds most of the frame's edge, so light ink on dark and dark ink on light read
    alike. A photo's lamp, gradient or shadow makes the ground uneven; a desk beyond the sheet's edge or a shadow
    darkens much of the frame's edge; sensor noise or paper texture makes the ground noisy."""
    small = shrink(work, SCAN_SIDE)
    bright = small > otsu(small)
    edge = np.concatenate([bright[0, :], bright[1:, -1], bright[-1, -2::-1], bright[-2:0:-1, 0]])  # once round
    ground_is_bright = bool(edge.mean() >= 0.5)
    ground = bright if ground_is_bright else ~bright
    ground_level = float(np.median(small[ground])) if ground.any() else float(np.median(small))
    ink_level = float(np.percentile(small[~ground], 10 if ground_is_bright else 90)) if (~ground).any() \
        else ground_level
    contrast = max(abs(ground_level - ink_level), 1e-6)
    # The ground's level tile by tile: its extreme (the 99th percentile of brightness, or the 1st) in tiles with
    # ground enough: soft ink's halo does not reach it, a lamp's fall-off does.
    levels = []
    rows, cols = (np.linspace(0, n, 5).round().astype(int) for n in small.shape)
    for top, bottom in zip(rows[:-1], rows[1:], strict=True):
        for left, right in zip(cols[:-1], cols[1:], strict=True):
            if ground[top:bottom, left:right].mean() >= 0.2:
                levels.append(float(np.percentile(small[top:bottom, left:right], 99 if ground_is_bright else 1)))
    # Noise: what a 3x3 mean takes out of the ground, at full resolution.
    inside = resize(ground.astype(np.float32), work.shape) > 0.99
    detail = (work - box_blur(work, 3))[inside]
    dark_edge = ~edge if ground_is_bright else edge
    return Tones(ground=ground_level, ink=ink_level, ground_share=float(ground.mean()),
                 dark_frame=float(dark_edge.mean()), frame_run=longest_run(dark_edge) / len(dark_edge),
                 uneven=(max(levels) - min(levels)) / contrast if levels else 0.0,
                 noise=1.4826 * float(np.median(np.abs(detail))) / contrast if detail.size else 0.0)


# --- photos: the paper's light out, the ink's darkness left ---------------------------------------------------------

def darkness(gray: np.ndarray) -> np.ndarray:
    """[h, w] photo luminance -> how much darker than the paper around it each pixel is, in [0, 1].

    The paper's brightness is a smooth upper envelope: a closing (max, then min, filter) wider than any stroke
    erases the strokes but keeps wide features -- a lamp's hot spot, a gradient, a shadow's edge, the desk beyond
    the sheet -- so dividing by it leaves the ink's own contrast, whatever the light. A photo of light ink on a dark
    ground (chalk, MNIST itself) is turned round first."""
    if light_ink(gray):
        gray = 1.0 - gray
    small = shrink(gray, LIGHT_SIDE)
    paper = closing(small, max(3, round(LIGHT_WINDOW * max(small.shape)) | 1))
    return np.clip(1.0 - gray / np.maximum(resize(paper, gray.shape), 1e-3), 0.0, 1.0)


def light_ink(gray: np.ndarray) -> bool:
    """Whether the ink is lighter than its ground. A digital image (MNIST itself, a screenshot) has a flat black
    ground: most of its pixels at its darkest level. In a photo, ink is the minority in any neighbourhood, so a local
    median is the ground either way round (whatever the light), and the ink is on the side where pixels stray from
    it most; ties (faint ink, JPEG noise) go to dark ink on paper."""
    small = shrink(gray, POLARITY_SIDE)
    if np.mean(small <= small.min() + FLAT) > 0.5:
        return True
    window = max(3, round(LIGHT_WINDOW * max(small.shape)) | 1)
    padded = np.pad(small, window // 2, mode="edge")
    ground = np.median(np.lib.stride_tricks.sliding_window_view(padded, (window, window)), axis=(-2, -1))
    stray = small - ground
    return float(np.sum(np.clip(stray, 0, None))) > LIGHT_INK_ODDS * float(np.sum(np.clip(-stray, 0, None)))


def closing(image: np.ndarray, window: int) -> np.ndarray:
    return rank_filter(rank_filter(image, window, np.maximum), window, np.minimum)


def rank_filter(image: np.ndarray, window: int, op) -> np.ndarray:
    """A square `window`-wide max or min filter (`op`: np.maximum or np.minimum), edges extended. Separable, and in
    log2(window) passes per axis: a window of 2w is two overlapping windows of w."""
    for axis in (0, 1):
        x = np.moveaxis(np.pad(image, [(window // 2, (window - 1) // 2) if a == axis else (0, 0) for a in (0, 1)],
                               mode="edge"), axis, 0)
        n, width = x.shape[0] - window + 1, 1
        while 2 * width <= window:
            x = op(x[:-width], x[width:])
            width *= 2
        image = np.moveaxis(op(x[:n], x[window - width:window - width + n]), 0, axis)
    return image


def box_blur(image: np.ndarray, window: int) -> np.ndarray:
    """A separable `window`-wide mean filter, edges extended."""
    for axis in (0, 1):
        x = np.moveaxis(np.pad(image, [(window // 2, window // 2) if a == axis else (0, 0) for a in (0, 1)],
                               mode="edge"), axis, 0)
        n = x.shape[0] - window + 1
        image = np.moveaxis(sum(x[i:i + n] for i in range(window)) / window, 0, axis)
    return image


# --- the digit among specks, lines and edges -----------------------------------------------------------------------

def find_digit(dark: np.ndarray, found: np.ndarray, noise_floor: float | None = None,
               sharpen: bool = False) -> Stages:
    """Darkness (or canvas ink) [h, w] -> the stages. `noise_floor`: darkness that is surely paper (default: from
    the image's own noise); `sharpen`: see `to_mnist`."""
    level = box_blur(dark, GRAIN)  # for finding the digit: grain and sensor noise even out, strokes stay
    if noise_floor is None:
        median = float(np.median(level))
        spread = 1.4826 * float(np.median(np.abs(level - median)))
        noise_floor = max(MIN_CONTRAST, median + NOISE_SIGMAS * spread)
    if float(level.max()) < noise_floor + MIN_CONTRAST:
        raise NoDigit("it looks blank: no ink stands out from the background")
    # First find the digit and its ink level among everything darker than the paper, then find it again within
    # that, among what is dark enough to be its ink: ruled lines and paper texture fall out the second time (and
    # nothing the first pass left out -- pieces of a desk's shadow, say -- comes back as a "part" of the digit).
    first = digit_mask(level > noise_floor, level)
    stroke_level = float(np.percentile(level[first], INK_PERCENTILE))
    kept = digit_mask((level > max(noise_floor, MASK_INK * stroke_level)) & first, level)
    # The faint edges of the strokes, down to the noise floor, belong to the digit too: whatever is connected to
    # its ink above the floor, near it.
    labels, _ = label(level > noise_floor)
    near = rank_filter(kept, 2 * round(EDGE_REACH * max(level.shape)) + 1, np.maximum)
    digit = np.isin(labels, np.unique(labels[kept])) & near
    # Unsmoothed: the reduction to 20 px averages noise away, and keeps MNIST-like inputs exactly as they are.
    ink_level = float(np.percentile(dark[kept], INK_PERCENTILE))
    ink = np.clip((dark - noise_floor) / max(ink_level - noise_floor, 1e-6), 0.0, 1.0) * digit
    if np.mean(ink > 0.5) > MAX_INK_FRACTION:
        raise NoDigit("it is mostly ink: draw or photograph one digit on a plain background")
    preview = shrink(found, PREVIEW_SIDE)
    return Stages(found=preview, ink=resize(ink, preview.shape), image=to_mnist(ink, sharpen))


def digit_mask(mask: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The connected components of `mask` that make up the digit: the one with the most ink, near the centre (what
    touches the frame's edge -- the sheet's edge, a desk, ruled lines, a shadow -- counts for little, and what runs
    along it for long, less), and the parts near it with a share of ink of their own, of the same pen, not touching
    the frame's edge unless it does."""
    labels, count = label(rank_filter(mask, 3, np.maximum))  # bridge grainy strokes
    if count == 0:
        raise NoDigit("it looks blank: no ink stands out from the background")
    h, w = mask.shape
    index = labels.ravel()
    inside = index > 0
    mass = np.bincount(index[inside], (level.ravel() * mask.ravel())[inside], count + 1)
    rows, cols = np.divmod(np.flatnonzero(inside), w)
    top = np.full(count + 1, h)
    left = np.full(count + 1, w)
    bottom = np.full(count + 1, -1)
    right = np.full(count + 1, -1)
    np.minimum.at(top, index[inside], rows)
    np.minimum.at(left, index[inside], cols)
    np.maximum.at(bottom, index[inside], rows)
    np.maximum.at(right, index[inside], cols)
    edge = (top == 0) | (left == 0) | (bottom == h - 1) | (right == w - 1)
    frame = np.zeros((h, w), bool)
    frame[[0, -1], :] = frame[:, [0, -1]] = True
    along_frame = np.bincount(index, frame.ravel(), count + 1)  # pixels on the frame's edge
    edge_weight = EDGE_WEIGHT * np.minimum(1.0, EDGE_RUN * (h + w) / np.maximum(along_frame, 1))
    centre_y, centre_x = (top + bottom) / 2 / h - 0.5, (left + right) / 2 / w - 0.5
    darkness = mass / np.maximum(np.bincount(index[inside], mask.ravel()[inside], count + 1), 1)
    score = mass * np.where(edge, edge_weight, 1.0) / (1 + centre_y**2 + centre_x**2)
    score[0] = -1
    main = int(np.argmax(score))
    chosen = {main}
    box = [top[main], left[main], bottom[main], right[main]]
    grew = True
    while grew:
        grew = False
        reach = PART_GAP * max(box[2] - box[0] + 1, box[3] - box[1] + 1)
        for part in np.flatnonzero((mass >= PART_MASS * mass[main]) & (darkness >= PART_DARKNESS * darkness[main])):
            if part in chosen or part == 0 or (edge[part] and not edge[main]):
                continue
            gap = max(top[part] - box[2], box[0] - bottom[part], left[part] - box[3], box[1] - right[part], 0)
            if gap <= reach:
                chosen.add(int(part))
                box = [min(box[0], top[part]), min(box[1], left[part]), max(box[2], bottom[part]),
                       max(box[3], right[part])]
                grew = True
    return np.isin(labels, list(chosen)) & mask


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (8-neighbourhood) of a boolean [h, w] mask -> labels 1..count (0: background), count.

    Runs of ink along each row are the nodes; runs that touch in adjacent rows are joined by propagating the
    smallest run index to a fixed point, with pointer jumping, all in NumPy."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    start_rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same order as the starts (row-major)
    runs = len(starts)
    if runs == 0:
        return np.zeros((h, w), np.int32), 0
    stride = w + 2
    start_keys = start_rows * stride + starts
    end_keys = start_rows * stride + ends
    # For each run, the runs of the row above that touch it (diagonals included) form a contiguous range.
    above = start_rows - 1
    first = np.searchsorted(end_keys, above * stride + starts, side="left")
    last = np.searchsorted(start_keys, above * stride + ends, side="right")
    counts = np.maximum(last - first, 0)
    below = np.repeat(np.arange(runs), counts)
    upper = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    parent = np.arange(runs)
    while True:
        low = np.minimum(parent[below], parent[upper])
        new = parent.copy()
        np.minimum.at(new, below, low)
        np.minimum.at(new, upper, low)
        new = new[new]
        new = new[new]
        if np.array_equal(new, parent):
            break
        parent = new
    roots, run_labels = np.unique(parent, return_inverse=True)
    labels = np.zeros((h, w + 1), np.int32)
    lengths = ends - starts
    flat_starts = start_rows * (w + 1) + starts
    # Fill each run: +label at its start, -label at its end, then a cumulative sum along the row.
    np.add.at(labels.ravel(), flat_starts, run_labels + 1)
    np.add.at(labels.ravel(), flat_starts + lengths, -(run_labels + 1))
    return np.cumsum(labels, axis=1)[:, :w], len(roots)


# --- MNIST's own steps ----------------------------------------------------------------------------------------------

def to_mnist(ink: np.ndarray, sharpen: bool = False) -> np.ndarray:
    """[h, w] normalised ink (white on black, the digit alone) -> [28, 28] float32 MNIST-style. `sharpen`: soft
    strokes (soft focus, a few pixels enlarged) are made solid first: for clean scans, whose soft edges are the
    digit's own; a canvas' strokes never are soft, and a photo's are left to its own corrections."""
    ink = np.asarray(ink, np.float32)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if len(rows) == 0:
        raise NoDigit("it looks blank: no ink stands out from the background")
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    if max(crop.shape) ** 2 < MIN_ELONGATION * np.sum(crop > 0.5):
        raise NoDigit("it is only a dot: draw the whole digit, large")

    h, w = crop.shape
    scale = STROKE_SCALE * BOX / max(h, w)
    large = widen_strokes(resize(crop, (max(1, round(h * scale)), max(1, round(w * scale)))))
    box = (max(1, round(h * scale / STROKE_SCALE)), max(1, round(w * scale / STROKE_SCALE)))
    small = np.clip(resize(large, box), 0.0, 1.0)
    if sharpen and solid_share(small) < SOLID:
        # MNIST's digits were solid strokes, anti-aliased only by their size normalisation: so are soft ones here.
        curve = 1 / (1 + np.exp(-SHARPNESS * (np.clip(large, 0.0, 1.0) - SHARPEN_AT)))
        ends = 1 / (1 + np.exp(-SHARPNESS * (np.array([0.0, 1.0]) - SHARPEN_AT)))
        small = np.clip(resize((curve - ends[0]) / (ends[1] - ends[0]), box), 0.0, 1.0)

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


def solid_share(image: np.ndarray) -> float:
    """Of the pixels with any ink (> 0.05), the share that are more ink than not (> 0.5)."""
    return float(np.sum(image > 0.5) / max(np.sum(image > 0.05), 1))


def widen_strokes(ink: np.ndarray) -> np.ndarray:
    """A thin pen photographed large comes out of size normalisation as 1 px hairlines MNIST never had: strokes
    thinner than MNIST's thinnest (width ~ 2 x area / boundary) are widened by a max filter to its usual width."""
    solid = ink > 0.5
    padded = np.pad(solid, 1)
    interior = solid & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = np.sum(solid & ~interior)
    width = 2 * np.sum(solid) / max(boundary, 1)
    if boundary == 0 or width >= MIN_STROKE:
        return ink
    return rank_filter(ink, int(round(STROKE - width)) | 1, np.maximum)
