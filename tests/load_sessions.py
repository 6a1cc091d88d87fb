"""Many users at once (issue #11): N browser sessions against one `streamlit run app.py`, all acting at the same time.

    python tests/load_sessions.py --sessions 20 --rounds 3                  # burst: every session as fast as it can
    python tests/load_sessions.py --sessions 20 --minutes 10 --rate low     # soak: each session acts every 5-10 s,
                                                                            # 10 min measured after a 3-min warm-up

One server (the shipped pretrained model, 127.0.0.1, a free port, headless) and one headless Chromium (Debian's,
`$CAPSNET_CHROMIUM`; never `playwright install`) with one browser context -- one Streamlit session -- per simulated
user, driven concurrently with Playwright's async API. Session i, in round r, does what a person would, each step
with its own right answer, so that an answer meant for another session shows up as a failure:

1. Draw: draws a digit with the mouse (7, 1, 0 or 4, the hand-drawn digits the shipped model reads right) and waits
   for *its* `Prediction: h` (timed: the last stroke's pointerup -> that prediction and the new 28x28 input shown).
   Every stroke must leave ink on the canvas (its strokes' layer) within INK_WAIT_S; one that does not never
   reached the canvas -- the harness drew before the canvas took the pointer -- and is drawn once more and
   recorded (the report's `strokes`). A check that fails after a stroke says whose doing it is (`verdict`): no ink
   on the canvas, the harness's; ink, but no script run or no prediction after it, the app's;
2. uploads an MNIST test digit of class c != h (from assets/test_digits.npz, enlarged to 112 px; one of six vetted
   images a class, which the shipped model reads right through the upload path), and waits for `Prediction: c`
   (timed: the file input's change event -> that prediction shown); removes the upload: `Prediction: h` again;
3. Latent (the sidebar link: the same session), "Last drawing": `Prediction: h` computed from *its* drawing; moves
   slider (i + r) % 16 to +0.25 and slider (i + r + 8) % 16 to -0.25 with the keyboard (each timed: keydown -> the
   new edited reconstruction shown) and checks that the sliders show exactly its two values;
4. back to Draw: its drawing is still there with `Prediction: h`; Clear.

After every step the page must show no exception and no "Page not found". Meanwhile the server's resident memory
(VmRSS of the `streamlit run` process and its children, from /proc) is sampled: at start, after one session has
warmed the server up (the model is loaded: the one-session figure), then every second (burst) or 15 s (soak).

The burst passes when every session got every right answer and the peak RSS stays within --rss-margin-mb of the
one-session figure: the models are `st.cache_resource` singletons (one copy per process, whatever the number of
sessions); a copy per session would cost at least the shipped model's 32.9 MB of weights each, 650 MB for 20.
The soak passes when, after its warm-up, RSS does not grow: the mean of the last third of the samples within
--growth-pct of the mean of the first third (the least-squares slope is reported too). Latencies (p50/p95/max per
action) are reported, never judged: on a loaded machine they measure the machine -- and the browsers run on the same
machine as the server (the report's `cpu_s` says who used the CPU).

Prints a JSON report (also written to --json) and, last, a one-line summary; exits 1 if a check failed.
tests/test_load.py runs a short burst in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CHROMIUM, CHROMIUM_FLAGS, REPO, StreamlitServer  # noqa: E402

# Hand-drawn digits (strokes in canvas pixels, 280x280) that the shipped model reads right; the same strokes as
# tests/test_browser_explorer.py's HAND_DRAWN.
HAND_DRAWN = {
    7: [[(70, 60), (210, 60), (200, 90), (140, 240)]],
    1: [[(150, 40), (140, 140), (135, 240)]],
    0: [[(140 + 60 * math.sin(t / 12 * math.pi), 140 - 95 * math.cos(t / 12 * math.pi)) for t in range(25)]],
    4: [[(120, 40), (80, 160), (210, 160)], [(180, 70), (175, 250)]],
}
HAND_ORDER = [7, 1, 0, 4]
# Positions in assets/test_digits.npz, by class: test digits that the shipped model classifies right after the
# upload path (PNG enlarged 4x with nearest-neighbour, capsnet.preprocess.from_upload), each by a margin of at least
# 0.89 between the two longest capsules.
VETTED = {0: [148, 13, 55, 71, 101, 246], 1: [74, 5, 180, 239, 267, 276], 2: [147, 293, 47, 174, 285, 1],
          3: [30, 231, 76, 173, 205, 213], 4: [27, 103, 19, 24, 49, 170], 5: [162, 375, 129, 165, 356, 127],
          6: [50, 88, 91, 201, 392, 156], 7: [0, 34, 223, 262, 17, 86], 8: [458, 374, 403, 84, 110, 128],
          9: [315, 12, 16, 274, 281, 284]}
DIMENSIONS = 16  # the Latent page's sliders
SHIPPED_MODEL_MB = 32.9  # assets/capsnet.keras' weights
# How much more the server may hold with 20 sessions than with one (warmed up, the model loaded). Sessions cost
# Streamlit's session objects, widget state (the canvas' drawing, the last 28x28 input), the messages and media files
# of their last runs, the bounded caches (resources.manipulation: 64 grids) and, most, glibc's malloc arenas: each
# script thread gets one of its own (up to 8 per core) and its freed memory stays with the process. Measured on the
# 2-core AVX2 machine (2026-12-07), 20 sessions: +365 to +449 MB at the peak of 3-round bursts, +190 MB with
# MALLOC_ARENA_MAX=2 in the server's environment. A per-session copy of the model would be at least its 32.9 MB of
# weights each: 20 of them, 658 MB more, could not hide.
RSS_MARGIN_MB = 500.0

PAD = "canvas.upper-canvas"  # streamlit-drawable-canvas: the Fabric.js canvas that takes the pointer
STROKES = "canvas.dc-canvas.lower-canvas"  # ... and the one that holds the strokes
INKED_PIXELS_JS = "pad => pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data" \
                  ".filter((value, i) => i % 4 === 0 && value > 128).length"
# The same for every drawing canvas on the page (they live in the component's shadow root, which Playwright's
# locators enter and document.querySelectorAll does not).
EVERY_INKED_JS = f"pads => pads.map({INKED_PIXELS_JS})"

INK_WAIT_S = 5.0  # Fabric.js puts a stroke on the strokes' layer at pointerup: no new ink after this long, and
                  # the stroke never reached the canvas


def verdict(canvas: dict) -> str:
    """Whose doing a check that failed after a stroke is, from the canvas as it was then (`Session.canvas_state`):
    the harness's, if the stroke left no ink on the canvas; the app's, if it did."""
    if canvas["canvases"] == 0:
        return "harness: no canvas on the page"
    if sum(canvas["inked"]) == 0:
        return "harness: the stroke is not on the canvas (drawn before the canvas took the pointer, or elsewhere)"
    if canvas["runs_since_armed"] == 0:
        return "app: the stroke is on the canvas, but no script run followed (the canvas did not send it)"
    return "app: the stroke is on the canvas and the script ran, but the prediction never came"


# In every page: `loadTest.start(trigger, check)` arms a timer that starts at the next `trigger` event (capture
# phase, on the whole document) and stops when `check` (a function of the page) first holds after it; the result,
# in ms, is the promise `loadTest.pending`. Checked on every DOM mutation, every image load and every 50 ms.
INIT_JS = """
window.loadTest = {
    runs: 0,  // script runs seen starting (data-test-script-state -> running), and how many when last armed
    armedRuns: 0,
    watchRuns() {
        const app = document.querySelector('[data-testid=stApp]');
        if (!app || app === this.watched) return;
        this.watched = app;
        let last = app.dataset.testScriptState;
        new MutationObserver(() => {
            const now = app.dataset.testScriptState;
            if (now === 'running' && last !== 'running') this.runs++;
            last = now;
        }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    },
    mark() {  // script runs are counted from here (and from every start)
        this.watchRuns();
        this.armedRuns = this.runs;
    },
    prediction() {
        for (const h of document.querySelectorAll('[data-testid=stMain] h2')) {
            const m = h.textContent.trim().match(/^Prediction:\\s*(\\d+)/);
            if (m) return Number(m[1]);
        }
        return null;
    },
    src(alt) { const img = document.querySelector(`img[alt="${alt}"]`); return img ? img.src : null; },
    shown(alt, before) {
        const img = document.querySelector(`img[alt="${alt}"]`);
        return !!img && img.src !== before && img.complete && img.naturalWidth > 0;
    },
    start(trigger, check, timeoutMs) {
        this.mark();
        let start = null, done = false, observer = null, timer = null;
        this.pending = new Promise((resolve, reject) => {
            const finish = (value, error) => {
                if (done) return;
                done = true;
                observer.disconnect();
                clearInterval(timer);
                document.removeEventListener('load', test, true);
                error ? reject(error) : resolve(value);
            };
            const test = () => { if (start !== null && check()) finish(performance.now() - start); };
            document.addEventListener(trigger, () => { start = start ?? performance.now(); test(); },
                                      {capture: true, once: true});
            observer = new MutationObserver(test);
            observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
            document.addEventListener('load', test, true);
            timer = setInterval(test, 50);
            setTimeout(() => finish(null, new Error(start === null ? `no ${trigger} event`
                                                    : `not shown within ${timeoutMs} ms`)), timeoutMs);
        });
    },
};
"""


# --- the server's memory ------------------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    tree, todo, found = _children(), [pid], []
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def tree_rss_mb(pid: int) -> float:
    """VmRSS of `pid` and all its descendants, in MB (10^6 bytes)."""
    total = 0
    for current in descendants(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return round(total / 1e6, 1)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these (live) processes."""
    total = 0
    for current in pids:
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return round(total / os.sysconf("SC_CLK_TCK"), 1)


@dataclass
class MemoryLog:
    pid: int
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float, str]] = field(default_factory=list)  # (s since start, MB, phase)
    phase: str = "start"

    def sample(self, phase: str | None = None) -> float:
        if phase is not None:
            self.phase = phase
        mb = tree_rss_mb(self.pid)
        self.samples.append((round(time.monotonic() - self.started, 1), mb, self.phase))
        return mb

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sample()

    def first(self, phase: str) -> float:
        return next(mb for _, mb, p in self.samples if p == phase)

    def peak(self) -> float:
        return max(mb for _, mb, _ in self.samples)


# --- one simulated user -------------------------------------------------------------------------------------------

def test_digit_png(digits: dict[str, np.ndarray], position: int) -> bytes:
    image = Image.fromarray(digits["x"][position]).resize((112, 112), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Failed(AssertionError):
    pass


@dataclass
class Session:
    index: int
    page: object  # playwright.async_api.Page
    base_url: str
    timeout_ms: float
    timings: dict[str, list[float]]
    checks: int = 0
    errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)  # the run's start: when each sample was taken
    samples: list[tuple[float, str, float]] = field(default_factory=list)  # (s since start, action, ms)
    strokes_drawn: int = 0
    strokes_redrawn: list[dict] = field(default_factory=list)  # strokes that left no ink, and the canvas then

    # -- helpers --

    async def settle(self) -> None:
        await self.page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]",
                                          timeout=self.timeout_ms)

    async def healthy_page(self, where: str) -> None:
        exceptions = self.page.locator("[data-testid=stException]")
        if await exceptions.count():
            raise Failed(f"{where}: exception on the page: {(await exceptions.first.inner_text())[:300]}")
        if await self.page.get_by_text("Page not found").count():
            raise Failed(f"{where}: 'Page not found'")

    async def shown(self, after_stroke: bool) -> str:
        """What the page showed when a check failed; after a stroke, also the canvas and whose doing it is."""
        text = f"prediction shown: {await self.page.evaluate('() => loadTest.prediction()')}"
        if after_stroke:
            canvas = await self.canvas_state()
            text += f"; canvas: {canvas}; {verdict(canvas)}"
        return text

    async def expect(self, where: str, condition: str, arg=None, after_stroke: bool = False) -> None:
        """Wait for a JS condition on the page; a timeout is a failed check, with what the page showed."""
        try:
            await self.page.wait_for_function(condition, arg=arg, timeout=self.timeout_ms, polling=100)
        except Exception:
            raise Failed(f"{where}: not satisfied within {self.timeout_ms / 1000:.0f} s "
                         f"({await self.shown(after_stroke)})") from None
        self.checks += 1

    async def arm(self, trigger: str, check: str, arg) -> None:
        """Arm the in-page timer: from the next `trigger` event until `check` (JS: a function of `arg`) holds."""
        await self.page.evaluate("([trigger, check, arg, timeout]) => { const holds = new Function("
                                 "'return ' + check)(); loadTest.start(trigger, () => holds(arg), timeout); }",
                                 [trigger, check, arg, self.timeout_ms])

    async def timed(self, action_name: str, trigger: str, check: str, arg, action, where: str,
                    after_stroke: bool = False) -> float:
        """Arm the in-page timer, run `action`, wait for `check` (JS: a function of `arg`); record the latency
        under `action_name`."""
        await self.arm(trigger, check, arg)
        await action()
        try:
            ms = await self.page.evaluate("() => loadTest.pending")
        except Exception as error:
            raise Failed(f"{where}: {str(error).splitlines()[0][:200]} ({await self.shown(after_stroke)})") from None
        self.timings.setdefault(action_name, []).append(round(ms, 1))
        self.samples.append((round(time.monotonic() - self.started, 1), action_name.split(":")[0], round(ms, 1)))
        self.checks += 1
        return ms

    async def stroke(self, points) -> None:
        box = await self.page.locator(PAD).bounding_box(timeout=self.timeout_ms)
        await self.page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        await self.page.mouse.down()
        for x, y in points[1:]:
            await self.page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        await self.page.mouse.up()

    async def canvas_state(self) -> dict:
        """The drawing canvases on the page, their inked pixels, and the script runs since the timer was armed."""
        inked = await self.page.locator(STROKES).evaluate_all(EVERY_INKED_JS)
        runs = await self.page.evaluate("() => loadTest.runs - loadTest.armedRuns")
        return {"canvases": len(inked), "inked": inked, "runs_since_armed": runs}

    async def ink(self) -> int:
        return sum(await self.page.locator(STROKES).evaluate_all(EVERY_INKED_JS))

    async def draw(self, points, where: str, rearm=None) -> None:
        """One stroke that must reach the canvas: the canvas' ink must grow within INK_WAIT_S. A stroke that left
        no ink was drawn where, or before, the canvas took the pointer -- the harness's doing, not the app's: it
        is recorded (`strokes_redrawn`, with the canvas' state) and drawn once more, as a person would; `rearm`
        re-arms the timer first, so that the latency runs from the stroke that counted."""
        before = await self.ink()
        for attempt in (1, 2):
            self.strokes_drawn += 1
            await self.page.evaluate("() => loadTest.mark()")
            await self.stroke(points)
            deadline = time.monotonic() + INK_WAIT_S
            while time.monotonic() < deadline:
                if await self.ink() > before:
                    return
                await asyncio.sleep(0.1)
            canvas = await self.canvas_state()
            self.strokes_redrawn.append({"where": where, "attempt": attempt, **canvas})
            if rearm is not None:
                await rearm()
        raise Failed(f"{where}: the stroke never reached the canvas, twice (canvas: {canvas}; {verdict(canvas)})")

    async def empty_canvas(self, where: str) -> None:
        deadline = time.monotonic() + self.timeout_ms / 1000
        while time.monotonic() < deadline:
            strokes = self.page.locator(STROKES)
            if await strokes.count() == 1 and await strokes.evaluate(INKED_PIXELS_JS) == 0:
                break
            await asyncio.sleep(0.2)
        else:
            raise Failed(f"{where}: the canvas was not cleared")
        await self.settle()
        await asyncio.sleep(0.3)  # the new canvas' pointer handlers come with its first render

    async def sidebar(self, name: str) -> None:
        await self.page.locator("[data-testid=stSidebarNav]").get_by_role("link", name=name).click(
            timeout=self.timeout_ms)

    # -- the steps --

    async def open(self) -> None:
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)[:200]))
        await self.page.goto(self.base_url + "/draw", timeout=self.timeout_ms)
        await self.page.locator(PAD).wait_for(timeout=self.timeout_ms)
        await self.settle()
        await asyncio.sleep(0.3)
        await self.healthy_page("open /draw")

    async def round(self, number: int, digits, pause) -> None:
        i, r = self.index, number
        hand = HAND_ORDER[(i + 2 * r) % len(HAND_ORDER)]
        label = (i + 3 * r) % 10
        if label == hand:
            label = (label + 5) % 10
        position = VETTED[label][(i // 10 + 2 * r) % len(VETTED[label])]
        up, down = (i + r) % DIMENSIONS, (i + r + DIMENSIONS // 2) % DIMENSIONS
        where = f"session {i} round {r}"
        p = self.page

        # 1. Draw a digit: all strokes but the last, each waited for, then the last one timed.
        strokes = HAND_DRAWN[hand]
        for stroke in strokes[:-1]:
            before = await p.evaluate("() => loadTest.src('model input')")
            await self.draw(stroke, f"{where}: a first stroke")
            await self.expect(f"{where}: a first stroke", "b => loadTest.shown('model input', b)", before,
                              after_stroke=True)
        before = await p.evaluate("() => loadTest.src('model input')")
        drawn_check = f"b => loadTest.prediction() === {hand} && loadTest.shown('model input', b)"
        await self.timed("draw: pointerup -> prediction shown", "pointerup", drawn_check, before,
                         lambda: self.draw(strokes[-1], f"{where}: draw {hand}",
                                           rearm=lambda: self.arm("pointerup", drawn_check, before)),
                         f"{where}: draw {hand}", after_stroke=True)
        await self.settle()
        await self.healthy_page(f"{where}: drawn")
        drawn = await p.evaluate("() => loadTest.src('model input')")
        await pause()

        # 2. Upload a test digit of another class; then remove it: the drawing's prediction again.
        upload = {"name": f"mnist-test-{int(digits['index'][position])}-a-{label}.png", "mimeType": "image/png",
                  "buffer": test_digit_png(digits, position)}
        file_input = p.locator("[data-testid=stFileUploaderDropzoneInput]")
        await self.timed("upload: file chosen -> prediction shown", "change",
                         f"b => loadTest.prediction() === {label} && loadTest.shown('model input', b)", drawn,
                         lambda: file_input.set_input_files(upload, timeout=self.timeout_ms),
                         f"{where}: upload a {label}")
        await self.settle()
        await self.healthy_page(f"{where}: uploaded")
        await pause()
        await p.get_by_role("button", name=f"Remove {upload['name']}").click(timeout=self.timeout_ms)
        await self.expect(f"{where}: upload removed, back to the drawn {hand}",
                          f"b => loadTest.prediction() === {hand} && loadTest.src('model input') === b", drawn)
        await self.settle()
        await pause()

        # 3. Latent, from this session's last drawing; two sliders to session-specific values.
        await self.sidebar("Latent")
        last_drawing = p.get_by_text("Last drawing", exact=True)
        await last_drawing.wait_for(timeout=self.timeout_ms)
        await self.settle()
        await last_drawing.click(timeout=self.timeout_ms)
        await self.expect(f"{where}: Latent from the drawn {hand}",
                          f"() => loadTest.prediction() === {hand} && "
                          f"!!document.querySelector('img[alt=\"your last drawing\"]') && "
                          f"!!document.querySelector('img[alt=\"edited reconstruction\"]') && "
                          f"document.querySelector('[data-testid=stApp]').dataset.testScriptState === 'notRunning'")
        await self.healthy_page(f"{where}: Latent")
        values = ["0.00"] * DIMENSIONS
        for dimension, key, value in ((up, "End", "0.25"), (down, "Home", "-0.25")):
            await pause()
            thumb = p.locator(f'input[type=range][aria-label="dimension {dimension}"]')
            await thumb.focus(timeout=self.timeout_ms)
            before = await p.evaluate("() => loadTest.src('edited reconstruction')")
            await self.timed("slider: keydown -> reconstruction shown", "keydown",
                             "b => loadTest.shown('edited reconstruction', b)", before,
                             lambda thumb=thumb, key=key: thumb.press(key), f"{where}: slider {dimension} {key}")
            values[dimension] = value
            await self.settle()
            shown = await p.locator("[data-testid=stSliderThumbValue]").all_inner_texts()
            if shown != values:
                raise Failed(f"{where}: sliders show {shown}, expected {values}")
            self.checks += 1
        await self.healthy_page(f"{where}: sliders")
        await pause()

        # 4. Back on Draw: the drawing (and its prediction) survived the visit; then Clear.
        await self.sidebar("Draw")
        # (The canvas may send its pixels again, redrawn from the saved strokes: the image need not be identical.)
        await self.expect(f"{where}: back on Draw with the drawn {hand}",
                          f"() => loadTest.prediction() === {hand} && loadTest.src('model input') !== null")
        await self.settle()
        await self.healthy_page(f"{where}: back on Draw")
        await asyncio.sleep(0.3)
        await p.get_by_role("button", name="Clear").click(timeout=self.timeout_ms)
        await self.expect(f"{where}: cleared", "() => loadTest.prediction() === null")
        await self.empty_canvas(where)
        await pause()


# --- the whole run ------------------------------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest-rank percentile
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(at(0.95), 1),
            "max_ms": round(ordered[-1], 1)}


def health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def soak_trend(samples: list[tuple[float, float, str]]) -> dict[str, float]:
    """RSS after the warm-up: first-third and last-third means, their difference, and a least-squares slope."""
    points = [(t, mb) for t, mb, phase in samples if phase == "soak"]
    if len(points) < 6:
        return {"samples": len(points)}
    third = len(points) // 3
    first = statistics.fmean(mb for _, mb in points[:third])
    last = statistics.fmean(mb for _, mb in points[-third:])
    times, values = np.array([t for t, _ in points]), np.array([mb for _, mb in points])
    slope = float(np.polyfit(times / 60, values, 1)[0])
    return {"samples": len(points), "minutes": round((times[-1] - times[0]) / 60, 1),
            "first_third_mean_mb": round(first, 1), "last_third_mean_mb": round(last, 1),
            "growth_pct": round(100 * (last - first) / first, 2), "slope_mb_per_min": round(slope, 2),
            "min_mb": float(values.min()), "max_mb": float(values.max())}


async def run_load(sessions: int = 20, rounds: int = 3, minutes: float = 0.0, rate: str = "burst",
                   warmup_minutes: float = 3.0,
                   chromium: str = CHROMIUM, timeout_s: float = 90.0, warmup_rounds: int = 1,
                   rss_margin_mb: float = RSS_MARGIN_MB, growth_pct: float = 3.0, seed: int = 0,
                   workdir: Path | None = None, log=print) -> dict:
    """Run the load test; return the report (see the module docstring). `minutes` > 0 makes it a soak: every session
    repeats its rounds for `warmup_minutes`, then `minutes` more, measured (`rounds` is ignored)."""
    from playwright.async_api import async_playwright

    workdir = Path(workdir or tempfile.mkdtemp(prefix="capsnet-load-"))
    with np.load(REPO / "assets" / "test_digits.npz") as file:
        digits = {name: file[name] for name in file.files}
    for label, positions in VETTED.items():
        assert all(int(digits["y"][p]) == label for p in positions), label
    low, high = (5.0, 10.0) if rate == "low" else (0.0, 0.0)
    # --rate low: a pause of 5-10 s before each of a session's actions (a round has nine).
    rng = random.Random(seed)

    # No file watcher, as in a deployment: an edited source file would otherwise make Streamlit drop the project's
    # modules from sys.modules while 20 script runs import them (KeyError: 'capsnet'), and load new copies.
    env = {"CAPSNET_RUNS_DIR": str(workdir / "runs"), "CAPSNET_UPLOAD_DIR": str(workdir / "uploads"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    env_backup = os.environ.pop("CAPSNET_WEIGHTS", None)  # the shipped model: the vetted digits are its
    server = StreamlitServer(env, REPO, workdir / "streamlit.log")
    if env_backup is not None:
        os.environ["CAPSNET_WEIGHTS"] = env_backup
    report: dict = {"sessions": sessions, "mode": "soak" if minutes else "burst", "rate": rate,
                    "rounds": None if minutes else rounds, "minutes": minutes or None,
                    "warmup_minutes": warmup_minutes if minutes else None,
                    "load_average_start": os.getloadavg(), "cpus": os.cpu_count(), "server_log": str(workdir)}
    timings: dict[str, list[float]] = {}
    warm_timings: dict[str, list[float]] = {}
    memory = MemoryLog(server.process.pid)
    sampler = None
    started = time.monotonic()
    try:
        server.wait_healthy(timeout=120)
        memory.sample("start")
        log(f"server healthy on {server.url}: RSS {memory.samples[-1][1]} MB")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            contexts = []

            async def new_session(index: int, into: dict[str, list[float]]) -> Session:
                context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                await context.add_init_script(INIT_JS)
                contexts.append(context)
                session = Session(index, await context.new_page(), server.url, timeout_s * 1000, into,
                                  started=started)
                return session

            # One session first: it pays for the model loading and the compilations; what the server holds then,
            # with one user, is the figure the many-session peak is compared with.
            first = await new_session(0, warm_timings)
            await first.open()
            try:
                for r in range(warmup_rounds):
                    await first.round(100 + r, digits, _no_pause)
            except Exception as error:
                first.errors.append(f"warm-up: {error!r}"[:400])
            memory.sample("one session")
            report["warm_up_s"] = round(time.monotonic() - started, 1)
            log(f"one session warmed up in {report['warm_up_s']} s: RSS {memory.samples[-1][1]} MB")

            memory.phase = "opening"
            sampler = asyncio.create_task(memory.run(15.0 if minutes else 1.0))
            users = [first] + list(await asyncio.gather(*(new_session(i, timings) for i in range(1, sessions))))
            first.timings = timings
            opened = time.monotonic()
            outcomes = await asyncio.gather(*(user.open() for user in users[1:]), return_exceptions=True)
            for user, outcome in zip(users[1:], outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    user.errors.append(f"open: {outcome!r}"[:300])
            report["open_all_s"] = round(time.monotonic() - opened, 1)
            memory.sample("sessions open")
            log(f"{sessions} sessions open in {report['open_all_s']} s: RSS {memory.samples[-1][1]} MB")

            deadline = time.monotonic() + 60 * (warmup_minutes + minutes) if minutes else None
            soak_from = None

            async def act(user: Session) -> None:
                async def pause() -> None:
                    if high:
                        await asyncio.sleep(rng.uniform(low, high))

                if high:  # spread the sessions' first actions over one pause
                    await asyncio.sleep(rng.uniform(0, high))
                r = 0
                while (r < rounds) if deadline is None else (time.monotonic() < deadline):
                    if user.errors and user.errors[-1].startswith("open"):
                        return
                    try:
                        await user.round(r, digits, pause)
                    except Exception as error:  # record, recover on a fresh page of the same context, go on
                        user.errors.append(f"round {r}: {error!r}"[:400])
                        try:
                            await user.page.goto(server.url + "/draw", timeout=user.timeout_ms)
                            await user.page.locator(PAD).wait_for(timeout=user.timeout_ms)
                            await user.settle()
                            await asyncio.sleep(0.3)
                        except Exception as again:
                            user.errors.append(f"recovery after round {r}: {again!r}"[:300])
                            return
                    r += 1

            memory.phase = "rounds"
            acting = time.monotonic()
            if minutes:
                # The soak's warm-up: its first rounds fill the bounded caches (resources.manipulation keeps 64
                # grids, Streamlit its messages and media files per session) and the allocator's arenas.
                async def mark_soak() -> None:
                    nonlocal soak_from
                    await asyncio.sleep(60 * warmup_minutes)
                    soak_from = round(time.monotonic() - memory.started, 1)
                    memory.phase = "soak"
                    memory.sample()

                marker = asyncio.create_task(mark_soak())
                await asyncio.gather(*(act(user) for user in users))
                marker.cancel()
            else:
                await asyncio.gather(*(act(user) for user in users))
            report["rounds_s"] = round(time.monotonic() - acting, 1)
            server_pids = descendants(server.process.pid)
            browser_pids = [pid for pid in descendants(os.getpid()) if pid not in server_pids and pid != os.getpid()]
            report["cpu_s"] = {"server": cpu_seconds(server_pids), "browser_and_playwright": cpu_seconds(browser_pids),
                               "this_script": cpu_seconds([os.getpid()]),
                               "note": "since each process started; browser renderers of closed pages not counted"}
            memory.phase = "end"
            sampler.cancel()
            sampler = None
            memory.sample("end")
            report["server_healthy_at_end"] = health(server.url) and server.process.poll() is None

            # Every page, once more: still connected, no exception.
            for user in users:
                try:
                    await user.healthy_page("end")
                    if await user.page.locator("[data-testid=stConnectionStatus]").count():
                        raise Failed("end: the page shows a connection status (disconnected?)")
                except Exception as error:
                    user.errors.append(f"{error!r}"[:300])
            for context in contexts:
                await context.close()
            await browser.close()
        await asyncio.sleep(3)
        memory.sample("browsers closed")
    finally:
        if sampler is not None:
            sampler.cancel()
        server.stop()

    log_text = (workdir / "streamlit.log").read_text(errors="replace")
    report.update({
        "total_s": round(time.monotonic() - started, 1),
        "load_average_end": os.getloadavg(),
        "successful_sessions": sum(not user.errors for user in users),
        "checks_passed": sum(user.checks for user in users),
        "failures": {user.index: user.errors for user in users if user.errors},
        "page_errors": {user.index: user.page_errors[:5] for user in users if user.page_errors},
        "server_log_tracebacks": log_text.count("Traceback"),
        "strokes": {"drawn": sum(user.strokes_drawn for user in users),
                    "redrawn": sum(len(user.strokes_redrawn) for user in users),
                    "redrawn_detail": {user.index: user.strokes_redrawn for user in users if user.strokes_redrawn}},
        "latency": {name: percentiles(values) for name, values in timings.items()},
        "latency_one_session_warm_up": {name: percentiles(values) for name, values in warm_timings.items()},
        "latency_samples": {user.index: user.samples for user in users},  # (s since start, action, ms)
    })
    rss = {"start_mb": memory.first("start"), "one_session_mb": memory.first("one session"),
           "sessions_open_mb": memory.first("sessions open"), "peak_mb": memory.peak(), "end_mb": memory.first("end"),
           "after_browsers_closed_mb": memory.first("browsers closed"),
           "peak_over_one_session_mb": round(memory.peak() - memory.first("one session"), 1),
           "margin_mb": rss_margin_mb, "shipped_model_mb": SHIPPED_MODEL_MB}
    rss["bounded"] = rss["peak_over_one_session_mb"] < rss_margin_mb
    report["rss"] = rss
    report["rss_samples"] = memory.samples
    if minutes:
        trend = soak_trend(memory.samples)
        trend["soak_from_s"] = soak_from
        trend["growth_limit_pct"] = growth_pct
        trend["no_growth"] = trend.get("growth_pct", math.inf) < growth_pct
        report["soak"] = trend
    report["passed"] = bool(report["successful_sessions"] == sessions and report["server_healthy_at_end"]
                            and rss["bounded"] and (not minutes or report["soak"]["no_growth"]))
    return report


async def _no_pause() -> None:
    return None


def summary(report: dict) -> str:
    parts = [f"{'PASS' if report['passed'] else 'FAIL'} {report['mode']}: {report['successful_sessions']}/"
             f"{report['sessions']} sessions right ({report['checks_passed']} checks)"]
    for name, stats in report["latency"].items():
        if stats.get("n"):
            parts.append(f"{name.split(':')[0]} p50/p95/max {stats['p50_ms']:.0f}/{stats['p95_ms']:.0f}/"
                         f"{stats['max_ms']:.0f} ms (n={stats['n']})")
    strokes = report["strokes"]
    parts.append(f"strokes {strokes['drawn']} drawn, {strokes['redrawn']} redrawn (left no ink)")
    rss = report["rss"]
    parts.append(f"RSS MB start/1 session/peak/end {rss['start_mb']:.0f}/{rss['one_session_mb']:.0f}/"
                 f"{rss['peak_mb']:.0f}/{rss['end_mb']:.0f}")
    if "soak" in report and "growth_pct" in report["soak"]:
        soak = report["soak"]
        parts.append(f"soak {soak['minutes']} min after warm-up: {soak['first_third_mean_mb']:.0f} -> "
                     f"{soak['last_third_mean_mb']:.0f} MB ({soak['growth_pct']:+.1f}%, "
                     f"{soak['slope_mb_per_min']:+.2f} MB/min)")
    parts.append(f"load avg {report['load_average_end'][0]:.1f} on {report['cpus']} CPUs")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20, help="browser sessions at once (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per session in a burst (default 3)")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="soak: run this long (after --warmup-minutes) instead of --rounds")
    parser.add_argument("--warmup-minutes", type=float, default=3.0,
                        help="soak: act this long before memory is judged (default 3)")
    parser.add_argument("--rate", choices=["burst", "low"], default=None,
                        help="burst: no pauses; low: 5-10 s between a session's actions (default: low with "
                             "--minutes, else burst)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds an action may take (default 90)")
    parser.add_argument("--rss-margin-mb", type=float, default=RSS_MARGIN_MB,
                        help=f"peak RSS may exceed the one-session figure by this much (default {RSS_MARGIN_MB:g} MB; "
                             "20 copies of the model would be 658 MB of weights alone)")
    parser.add_argument("--growth-pct", type=float, default=3.0,
                        help="soak: last-third mean RSS may exceed the first third's by this much (default 3%%)")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rate = args.rate or ("low" if args.minutes else "burst")
    report = asyncio.run(run_load(args.sessions, args.rounds, args.minutes, rate, args.warmup_minutes,
                                  args.chromium, args.timeout,
                                  rss_margin_mb=args.rss_margin_mb, growth_pct=args.growth_pct, seed=args.seed,
                                  log=lambda message: print(message, file=sys.stderr, flush=True)))
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print(summary(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
