"""MNIST test digits as phone photos and scans, and how well the shipped model reads them through the real upload path.

Users upload photos of digits on paper, not MNIST: faint or grainy pencil, a thin pen in a big frame, a lamp's hot
spot, a shadow across the sheet, cream or ruled paper, a desk beyond the sheet's edge, sensor noise, blur, JPEG.
`render` draws one MNIST test digit that way. The 28x28 digit is first enlarged smoothly (bicubic) and thresholded,
so it looks like ink rather than pixels; then the photo is composed physically: paper and ink reflectances times an
illumination field, plus noise, blur and compression. Each condition in `CONDITIONS` changes one factor from a
clean photo (black pen on white paper, even light, a mild JPEG); "realistic" changes about a third of the groups of
factors in `FACTOR_GROUPS` at once (one pen, one sheet, one light per photo).

Then clean images with thick or soft strokes, which a photo's corrections must leave alone: thumbnails of 8x8, 12x12
and 16x16 pixels enlarged bicubically or by repeating pixels (`thumbnail`: the digit's box fills the square, as in
the 8x8 UCI and 16x16 USPS digit sets), broad marker strokes, a digit filling 80-95% of the frame, soft focus.

`benchmark` feeds the encoded bytes to `capsnet.preprocess.from_upload` exactly as the Draw page does and reports
accuracy per condition (`python -m capsnet bench --photos`). Everything is fixed by one seed.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageFilter

# Scans and thumbnails of digits at a few pixels a side, enlarged: the digit's box fills the square, as in the 8x8
# UCI/scikit-learn digits and the 16x16 USPS ones.
LOW_RES = {f"low_res_{side}_{resample}": (side, resample)
           for side in (8, 12, 16) for resample in ("bicubic", "nearest")}
# New conditions go at the end: a condition's position seeds its renders, so the earlier ones stay the same photos.
CONDITIONS = ("clean", "pencil", "thin_pen", "ink_colour", "gradient", "lamp", "shadow", "paper", "lined", "noise",
              "blur", "jpeg", "scanner", "off_centre", "sheet_edge", "realistic", *LOW_RES, "marker", "fill",
              "soft_focus")
SEED = 2017
DIGITS_PER_CONDITION = 100
INKS = {"black": (0.08, 0.08, 0.10), "blue": (0.10, 0.16, 0.55), "red": (0.70, 0.10, 0.12),
        "green": (0.08, 0.42, 0.20)}
PAPERS = {"white": (0.95, 0.95, 0.93), "cream": (0.96, 0.91, 0.76), "grey": (0.78, 0.78, 0.76),
          "recycled": (0.82, 0.79, 0.70)}
GRAPHITE = (0.28, 0.28, 0.31)
# Factors that belong together, and the conditions that vary them: a photo has one pen, one sheet, one light.
FACTOR_GROUPS = (
    (("stroke", "ink", "opacity", "grain"), ("pencil", "thin_pen", "ink_colour", "scanner")),
    (("paper", "texture"), ("paper",)),
    (("lines",), ("lined",)),
    (("light",), ("gradient", "lamp", "shadow")),
    (("desk",), ("sheet_edge",)),
    (("noise",), ("noise",)),
    (("blur",), ("blur", "scanner")),
    (("quality",), ("jpeg", "noise")),
    (("frame", "digit_height", "centre"), ("off_centre", "thin_pen")),
)
INK_EDGE = 0.12  # of the enlarged digit's levels: the soft edge of a stroke


@dataclass
class Scene:
    """Everything that decides one photo; `scene_for` draws these at random per condition."""

    frame: tuple[int, int] = (300, 300)  # height, width in pixels
    digit_height: float = 0.6  # of the frame's shorter side
    centre: tuple[float, float] = (0.5, 0.5)  # of the digit, as fractions of the frame
    stroke: float = 0.35  # threshold on the enlarged digit: higher is thinner
    bold: float = 0.0  # a broad tip: the digit is spread by this many (MNIST) pixels before the threshold
    ink: tuple[float, float, float] = INKS["black"]
    opacity: float = 1.0  # of the ink; pencil is well below 1
    grain: float = 0.0  # pencil grain: how much of a stroke the paper shows through
    paper: tuple[float, float, float] = PAPERS["white"]
    texture: float = 0.01  # paper mottling amplitude
    lines: float = 0.0  # ruled lines' spacing in digit heights (0: none)
    light: dict = field(default_factory=lambda: {"kind": "even", "level": 0.95})
    desk: float = 0.0  # fraction of the frame beyond the sheet's edge (0: none)
    noise: float = 0.012  # sensor noise, standard deviation
    blur: float = 0.0  # Gaussian blur radius, in stroke widths
    quality: int = 90  # JPEG quality (0: PNG)


def scene_for(condition: str, rng: np.random.Generator) -> Scene:
    """A clean phone photo of a digit, with `condition`'s one factor changed (or all of them, for "realistic")."""
    u = rng.uniform
    side = int(u(160, 420))
    clean = Scene(frame=(side, int(side * u(0.8, 1.3))), digit_height=u(0.45, 0.7),
                  centre=(u(0.42, 0.58), u(0.42, 0.58)), stroke=u(0.3, 0.45),
                  light={"kind": "even", "level": u(0.85, 1.0)})
    if condition == "clean":
        return clean
    if condition == "pencil":
        return replace(clean, ink=GRAPHITE, opacity=u(0.35, 0.7), grain=u(0.3, 0.7), stroke=u(0.3, 0.55))
    if condition == "thin_pen":
        side = int(u(700, 1200))
        return replace(clean, frame=(side, int(side * u(0.75, 1.33))), digit_height=u(0.25, 0.5),
                       stroke=u(0.7, 0.82), quality=int(u(80, 95)))
    if condition == "ink_colour":
        return replace(clean, ink=INKS[rng.choice(list(INKS))])
    if condition == "gradient":
        return replace(clean, light={"kind": "gradient", "low": u(0.25, 0.5), "high": u(0.9, 1.1),
                                     "angle": u(0, 2 * np.pi)})
    if condition == "lamp":
        return replace(clean, light={"kind": "lamp", "ambient": u(0.2, 0.45), "peak": u(1.0, 1.35),
                                     "at": (u(0.1, 0.9), u(0.1, 0.9)), "radius": u(0.25, 0.6)})
    if condition == "shadow":
        return replace(clean, light={"kind": "shadow", "level": u(0.85, 1.0), "shade": u(0.3, 0.6),
                                     "angle": u(0, 2 * np.pi), "offset": u(-0.25, 0.25), "soft": u(0.01, 0.06)})
    if condition == "paper":
        return replace(clean, paper=PAPERS[rng.choice(["cream", "grey", "recycled"])], texture=u(0.02, 0.05))
    if condition == "lined":
        return replace(clean, lines=u(0.3, 0.55))
    if condition == "noise":
        return replace(clean, noise=u(0.05, 0.1), quality=int(u(70, 90)))
    if condition == "blur":
        return replace(clean, blur=u(0.4, 0.9))
    if condition == "jpeg":
        return replace(clean, quality=int(u(8, 25)))
    if condition == "scanner":
        return replace(clean, ink=(g := u(0.5, 0.68), g, g + 0.03), paper=(0.97, 0.97, 0.96), texture=0.005,
                       blur=u(0.2, 0.5), noise=0.006, light={"kind": "even", "level": 1.0}, quality=0)
    if condition == "off_centre":
        side = int(np.exp(u(np.log(64), np.log(1200))))
        height = max(u(0.12, 0.3), min(0.9, 26 / side))
        margin = height * 0.6
        return replace(clean, frame=(side, int(side * u(0.75, 1.33))), digit_height=height,
                       centre=(u(margin, 1 - margin), u(margin, 1 - margin)))
    if condition == "sheet_edge":
        return replace(clean, desk=u(0.15, 0.35), digit_height=u(0.35, 0.5))
    if condition == "marker":  # a broad felt tip: strokes 1.5-2.5 times MNIST's width, small loops filling in
        return replace(clean, bold=u(0.4, 0.8), stroke=u(0.2, 0.3))
    if condition == "fill":  # cropped close: the digit's ink 80-95% of the frame's height (its crop has a margin)
        side = int(u(64, 400))
        return replace(clean, frame=(side, int(side * u(0.9, 1.2))), digit_height=u(0.93, 1.0),
                       centre=(u(0.48, 0.52), u(0.48, 0.52)))
    if condition == "soft_focus":  # out of focus: blurred by more than a stroke's width
        return replace(clean, blur=u(0.8, 1.2))
    if condition == "realistic":  # each group of factors from one condition, about a third of them changed
        scene = clean
        for group in FACTOR_GROUPS:
            if rng.random() < 0.35:
                other = scene_for(str(rng.choice(group[1])), rng)
                scene = replace(scene, **{k: getattr(other, k) for k in group[0]})
        return scene
    raise ValueError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")


def ink_coverage(digit: np.ndarray, height: int, stroke: float, bold: float = 0.0) -> np.ndarray:
    """The 28x28 digit as ink: cropped, enlarged smoothly to `height` px and thresholded at `stroke` with a soft
    1-2 px edge, so strokes have the smooth outlines of a pen's, not MNIST's pixels. With `bold`, the digit is
    spread by that many MNIST pixels first (a round, broad tip), and the threshold is taken relative to the spread
    strokes' own peak, so that they stay solid."""
    rows, cols = np.nonzero(digit > 30)
    crop = digit[max(rows.min() - 1, 0):rows.max() + 2, max(cols.min() - 1, 0):cols.max() + 2]
    scale = height / crop.shape[0]
    crop = np.pad(crop, int(np.ceil(2 * bold)))  # room for the spread strokes
    size = (max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale)))
    big = Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(scale * (0.35 + bold)))  # rounder outlines than MNIST's jagged ones
    level = np.asarray(big, np.float32) / 255.0
    if bold:
        level /= max(float(np.percentile(level, 99)), 1e-3)
    return np.clip((level - stroke) / INK_EDGE + 0.5, 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean noise with features about `scale` px across, unit standard deviation."""
    small = (max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale)))
    field_ = Image.fromarray(rng.standard_normal(small).astype(np.float32))
    return np.asarray(field_.resize(shape[::-1], Image.Resampling.BICUBIC), np.float32)


def illumination(light: dict, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = y / max(h, w), x / max(h, w)
    kind = light["kind"]
    if kind == "even":
        return np.full(shape, light["level"], np.float32)
    if kind == "gradient":
        along = np.cos(light["angle"]) * x + np.sin(light["angle"]) * y
        along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
        return light["low"] + (light["high"] - light["low"]) * along
    if kind == "lamp":
        cy, cx = light["at"][0] * h / max(h, w), light["at"][1] * w / max(h, w)
        spot = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * light["radius"] ** 2))
        return light["ambient"] + (light["peak"] - light["ambient"]) * spot
    if kind == "shadow":  # a hand or a phone between the lamp and the sheet: a soft-edged half-plane
        across = np.cos(light["angle"]) * (x - 0.5 * w / max(h, w)) + np.sin(light["angle"]) * (y - 0.5 * h / max(h, w))
        inside = 1 / (1 + np.exp(-(across - light["offset"]) / light["soft"]))
        return light["level"] * (1 - (1 - light["shade"]) * inside)
    raise ValueError(f"unknown light {kind!r}")


def render(digit: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One MNIST digit ([28, 28] uint8, white on black) as a photo: [h, w, 3] uint8 RGB."""
    h, w = scene.frame
    height = max(12, int(scene.digit_height * min(h, w)))
    coverage = ink_coverage(digit, height, scene.stroke, scene.bold)
    ch, cw = coverage.shape
    top = int(np.clip(scene.centre[0] * h - ch / 2, 0, max(h - ch, 0)))
    left = int(np.clip(scene.centre[1] * w - cw / 2, 0, max(w - cw, 0)))
    alpha = np.zeros((h, w), np.float32)
    alpha[top:top + ch, left:left + cw] = coverage[:h - top, :w - left]
    if scene.grain:  # graphite catches the paper's tooth: patchy strokes
        grain = np.clip(1 - scene.grain * (0.5 + 0.6 * smooth_noise(rng, (h, w), 1.2)), 0, 1)
        alpha *= grain
    alpha *= scene.opacity

    paper = np.asarray(scene.paper, np.float32) * (1 + scene.texture * smooth_noise(rng, (h, w), 6.0))[..., None]
    if scene.lines:  # ruled paper: pale blue lines at a fixed pitch
        pitch = max(6.0, scene.lines * height)
        y = np.arange(h, dtype=np.float32)
        phase = np.abs((y - rng.uniform(0, pitch)) % pitch - pitch / 2) - (pitch / 2 - max(1.0, h / 400))
        line = np.clip(phase + 0.5, 0, 1)[:, None, None] * rng.uniform(0.35, 0.6)
        paper = paper * (1 - line) + np.asarray((0.55, 0.7, 0.92), np.float32) * line
    reflectance = paper * (1 - alpha[..., None]) + np.asarray(scene.ink, np.float32) * alpha[..., None]
    if scene.desk:  # the sheet ends: a darker, textured desk beyond a slanted edge, its shadow on the desk
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        across = np.cos(angle) * (x / w - 0.5) + np.sin(angle) * (y / h - 0.5)
        edge = max(np.quantile(across, 1 - scene.desk), across[alpha > 0].max() + 0.05)  # the digit stays on paper
        desk_at = np.clip((across - edge) * min(h, w) + 0.5, 0, 1)[..., None]
        wood = np.asarray(rng.choice([(0.35, 0.24, 0.15), (0.2, 0.2, 0.22), (0.5, 0.45, 0.4)]), np.float32)
        desk = wood * (1 + 0.15 * smooth_noise(rng, (h, w), 20.0))[..., None]
        desk *= 1 - 0.5 * np.exp(-np.clip(across - edge, 0, None) * 25)[..., None]
        reflectance = reflectance * (1 - desk_at) + desk * desk_at
    image = reflectance * illumination(scene.light, (h, w))[..., None]
    image += scene.noise * rng.standard_normal((h, w, 1), np.float32)  # luminance noise
    image += 0.3 * scene.noise * rng.standard_normal((h, w, 3), np.float32)  # and some chroma noise
    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    stroke_px = max(1.0, height / 12 * (1.2 - scene.stroke))
    radius = scene.blur * stroke_px + 0.4  # every lens softens a little
    return np.asarray(pixels.filter(ImageFilter.GaussianBlur(radius)))


def thumbnail(digit: np.ndarray, side: int, resample: str, rng: np.random.Generator) -> np.ndarray:
    """One MNIST digit ([28, 28] uint8, white on black) as a `side` x `side` scan enlarged for viewing: [h, w] uint8.

    The digit's box, squared, fills the thumbnail but for a margin of up to a pixel; each thumbnail pixel averages
    what it covers (a scanner's or a camera's cell), in 256 or, like the 8x8 UCI digits, 17 levels. The thumbnail is
    then enlarged 6-30 times with `resample` ("bicubic" or "nearest"), dark ink on light or light on dark."""
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(np.float32) / 255
    box = max(crop.shape)
    margin = rng.uniform(0, 1) * box / side
    square = np.zeros((round(box + 2 * margin),) * 2, np.float32)
    top, left = (square.shape[0] - crop.shape[0]) // 2, (square.shape[1] - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    small = np.asarray(Image.fromarray(square).resize((side, side), Image.Resampling.BOX), np.float32)
    if rng.random() < 0.5:
        small = np.round(np.clip(small, 0, 1) * 16) / 16
    ink, ground = (rng.uniform(0.0, 0.2), rng.uniform(0.85, 1.0))
    if rng.random() < 0.5:
        ink, ground = 1 - ink, 1 - ground
    levels = ground + (ink - ground) * np.clip(small, 0, 1)
    enlarged = side * int(rng.integers(6, 31))
    method = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}[resample]
    big = Image.fromarray((levels * 255).round().astype(np.uint8)).resize((enlarged, enlarged), method)
    return np.asarray(big)


def encode(pixels: np.ndarray, quality: int) -> bytes:
    """PNG when `quality` is 0, else JPEG at that quality (4:2:0, as phones save them)."""
    buffer = io.BytesIO()
    if quality:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def photo(digit: np.ndarray, condition: str, seed: int = SEED, index: int = 0) -> bytes:
    """The encoded photo of `digit` under `condition`: the same bytes for the same seed and index."""
    rng = np.random.default_rng([seed, CONDITIONS.index(condition), index])
    if condition in LOW_RES:
        return encode(thumbnail(digit, *LOW_RES[condition], rng), quality=0)
    scene = scene_for(condition, rng)
    return encode(render(digit, scene, rng), scene.quality)


def sample_digits(count: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """`count` MNIST test digits drawn at random (the same for every condition), with their labels."""
    from capsnet.sample import load_test_digits

    digits = load_test_digits()
    pick = np.random.default_rng(seed).choice(len(digits.labels), size=count, replace=False)
    return digits.images[pick], digits.labels[pick]


def benchmark(digits: int = DIGITS_PER_CONDITION, seed: int = SEED, conditions: tuple[str, ...] = CONDITIONS,
              preprocessors: dict[str, Callable[[bytes], np.ndarray]] | None = None, net=None) -> dict:
    """Accuracy of the shipped model (or `net`) on photos of `digits` test digits per condition, each photo read by
    every preprocessing in `preprocessors` (name -> bytes to [28, 28]; default: this project's `from_upload`). A
    photo a preprocessing rejects (no digit found) counts as an error."""
    from capsnet.evaluate import predict_all
    from capsnet.inference import load_capsnet
    from capsnet.preprocess import from_upload

    preprocessors = preprocessors or {"preprocess": from_upload}
    net = net or load_capsnet()
    images, labels = sample_digits(digits, seed)
    inputs: dict[str, list] = {name: [] for name in preprocessors}
    rejected = {name: 0 for name in preprocessors}
    seconds = {name: 0.0 for name in preprocessors}
    for condition in conditions:
        for index, digit in enumerate(images):
            data = photo(digit, condition, seed, index)
            for name, preprocess in preprocessors.items():
                start = time.perf_counter()
                try:
                    image = preprocess(data)
                except ValueError:  # the preprocessing's own errors: no digit found
                    image = None
                seconds[name] += time.perf_counter() - start
                rejected[name] += image is None
                inputs[name].append(np.full((28, 28), np.nan, np.float32) if image is None else image)
    truth = np.tile(labels, len(conditions))
    report: dict = {"seed": seed, "digits_per_condition": digits}
    for name, stack in inputs.items():
        stack = np.stack(stack)
        lengths, _, _ = predict_all(net, np.nan_to_num(stack))
        right = (np.argmax(lengths, axis=1) == truth) & ~np.isnan(stack[:, 0, 0])
        per = right.reshape(len(conditions), digits)
        report[name] = {
            "photo_accuracy": round(float(right.mean()), 4), "correct": int(right.sum()), "count": int(right.size),
            "rejected": rejected[name], "ms_per_image": round(1000 * seconds[name] / right.size, 1),
            "per_condition": {c: {"accuracy": round(float(p.mean()), 4), "correct": int(p.sum()), "count": digits}
                              for c, p in zip(conditions, per, strict=True)},
        }
    return report


def run_photo_benchmark(digits: int | None = None, baseline: str | None = None) -> dict:
    """`python -m capsnet bench --photos [--digits N] [--baseline PATH]`: the report of `benchmark`, with the
    project's preprocessing at the top level, the plain MNIST steps alone (`preprocess.plain_from_upload`: what
    the full preprocessing must never do worse than) under "plain" and, with `baseline`, another preprocessing
    module (e.g. an older capsnet/preprocess.py) on the same photos under "baseline"."""
    import importlib.util

    from capsnet.preprocess import from_upload, plain_from_upload

    preprocessors = {"preprocess": from_upload, "plain": plain_from_upload}
    if baseline:
        spec = importlib.util.spec_from_file_location("baseline_preprocess", baseline)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        preprocessors["baseline"] = module.from_upload
    start = time.perf_counter()
    report = benchmark(digits or DIGITS_PER_CONDITION, preprocessors=preprocessors)
    report.update(report.pop("preprocess"))
    if baseline:
        report["baseline"]["path"] = baseline
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report
