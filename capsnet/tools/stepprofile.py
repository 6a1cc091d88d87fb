"""`python -m capsnet bench --profile`: where a training step's time goes, per part, as JSON (TensorFlow only).

Two measurements:

- `op_shares`: TensorFlow's profiler over a few training steps of our network (and of the yardstick), every op's
  time summed into parts by the layer it belongs to: the two convolutions (forward and backward), the capsules
  (squash, routing, lengths, mask), the decoder, the losses and metrics, the optimizer. It runs in a fresh process
  with one inter-op thread: ops then run one at a time and their times add up to the step, where two ops running
  side by side would each be charged for the other's time.
- `convolution_cap`: the yardstick's full training step against a training step of its two convolutions alone
  (the same layers and Adam, a mean squared error on their output), alternating in one process. The convolutions
  are the same arithmetic in any CapsNet, so their step is as fast as one can get with those convolution kernels:
  step / convolutions-only step is the most any network computing them the same way could gain over the yardstick,
  if everything else cost nothing.
"""

from __future__ import annotations

import glob
import multiprocessing
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import keras

from capsnet.tools.bench import interleaved_throughput, reference_steps, training_step

PARTS = ("convolutions", "capsules", "decoder", "loss_and_metrics", "optimizer", "other")


def part_of(op_name: str) -> str:
    """The part of the network an op belongs to, from its TensorFlow name (scopes follow the layers' names: ours
    `conv1`, `primary_capsules/conv`, `digit_capsules`, `decoder`; the yardstick's `conv2d`, `lambda`, `digit_caps`,
    `sequential`)."""
    name = op_name.lower()
    if "conv" in name:  # conv1, primary_capsules/conv, patchconv, conv2d
        return "convolutions"
    if "adam" in name or "optimizer" in name:
        return "optimizer"
    if any(part in name for part in ("decoder", "sequential", "dense")):
        return "decoder"
    if any(part in name for part in ("loss", "metric", "accuracy", "mean_squared")):
        return "loss_and_metrics"
    if any(part in name for part in ("capsule", "digit", "primary", "lambda", "length", "mask")):
        return "capsules"
    return "other"


def op_seconds(step: Callable[[], object], steps: int) -> Counter:
    """Seconds per op over `steps` calls of `step`, from TensorFlow's profiler: the kernels run by the executor,
    named by their op, and the functions it calls asynchronously (the XLA functions of `capsnet.patchconv`), named
    by their call op."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{log_dir}/**/*.xplane.pb", recursive=True)[0], "rb") as file:
            space.ParseFromString(file.read())
    seconds: Counter = Counter()
    for plane in space.planes:
        events, stats = plane.event_metadata, plane.stat_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = events[event.metadata_id].name
                if name == "ExecutorState::ProcessAsync::Start":
                    name = next((stats[stat.ref_value].name for stat in event.stats
                                 if stats[stat.metadata_id].name == "name"), name)
                elif "::" in name or ":" not in name:  # the executor's and XLA's own events, around the kernels
                    continue
                seconds[name.split(":")[0]] += event.duration_ps / 1e12 / steps
    return seconds


def summarise(seconds: Counter, top: int = 8) -> dict:
    total = sum(seconds.values())
    parts = Counter()
    for name, value in seconds.items():
        parts[part_of(name)] += value
    return {"op_seconds_per_step": round(total, 3),
            "shares": {part: round(parts[part] / total, 3) for part in PARTS},
            "top_ops": [{"op": name, "share": round(value / total, 3)} for name, value in seconds.most_common(top)]}


def warm(*steps: Callable[[], object], times: int = 2) -> None:
    for step in steps:
        for _ in range(times):
            step()


def convolution_cap(reference: str, steps: int, batch_size: int) -> dict:
    """The yardstick's step against its convolutions-only step, alternating step by step (medians)."""
    full, convolutions = reference_steps(reference, batch_size)
    rates = interleaved_throughput({"step": full, "convolutions": convolutions}, batch_size, steps, warmup=2)
    step_s, conv_s = batch_size / rates["step"], batch_size / rates["convolutions"]
    return {"reference_step_s": round(step_s, 3), "reference_convolutions_only_step_s": round(conv_s, 3),
            "convolution_share": round(conv_s / step_s, 3), "cap": round(step_s / conv_s, 3)}


def op_shares(precisions: list[str], reference: str | None, steps: int, batch_size: int) -> dict:
    """Per-op profiles (see the module's docstring); in a process started with one inter-op thread."""
    shares = {}
    for precision in precisions:
        step = training_step(precision, batch_size)
        warm(step)
        shares[f"ours_{precision}"] = summarise(op_seconds(step, steps))
    if reference:
        full, _ = reference_steps(reference, batch_size)
        warm(full)
        shares["reference_float32"] = summarise(op_seconds(full, steps))
    return shares


def one_inter_op_thread() -> None:
    from capsnet import backend

    with backend.native_stderr_held_back():
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)
    backend.quiet_start()


def run_profile(precisions: list[str], reference: str | None, steps: int = 5, batch_size: int = 100,
                cap_steps: int = 20) -> dict:
    """Per-op shares over `steps` profiled steps, and with a `reference` the cap over `cap_steps` pairs of steps."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError("--profile reads TensorFlow's profiler: run it with the TensorFlow backend")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, context, initializer=one_inter_op_thread) as pool:
        results = {"op_shares": pool.submit(op_shares, precisions, reference, steps, batch_size).result()}
    if reference:
        results["convolution_cap"] = convolution_cap(reference, cap_steps, batch_size)
    return results
