"""`python -m capsnet bench`: training throughput and interactive latency, printed as JSON.

Inputs are random tensors of MNIST's shape: speed does not depend on the pixels, and the benchmark needs no data.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import keras
import numpy as np

from capsnet.config import ModelConfig
from capsnet.imaging import to_float
from capsnet.inference import Predictor
from capsnet.losses import compile_for_training
from capsnet.model import CapsNet
from capsnet.precision import AUTO, resolve


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def random_batch(batch_size: int, config: ModelConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random images and one-hot labels of the shape `config` (default: the paper's MNIST CapsNet) takes."""
    config = config or ModelConfig()
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *config.input_shape), dtype=np.float32)
    return x, keras.utils.to_categorical(rng.integers(0, config.num_classes, batch_size), config.num_classes)


def training_step(precision: str, batch_size: int = 100, config: ModelConfig | None = None) -> Callable[[], object]:
    """One full training step of ours (forward, backward, Adam update) on a fixed random batch."""
    net = CapsNet(config, precision)
    compile_for_training(net.train, 1e-3, 0.392)
    x, y = random_batch(batch_size, net.config)
    return lambda: net.train.train_on_batch([x, y], {"length": y, "reconstruction": x})


def training_throughput(precision: str, batch_size: int = 100, steps: int = 20, warmup: int = 5,
                        config: ModelConfig | None = None) -> float:
    """Samples per second of full training steps (forward, backward, Adam update), median over `steps`."""
    return batch_size / median_seconds(training_step(precision, batch_size, config), steps, warmup)


def interleaved_throughput(steps: dict[str, Callable[[], object]], batch_size: int, repeats: int = 20,
                           warmup: int = 5) -> dict[str, float]:
    """Samples per second of several training steps timed in turn, one step of each per round (medians over
    `repeats` rounds): on a machine whose load changes during the run, each is timed under the same changes, where
    timing one after the other charged a change to whichever ran then."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    return {name: batch_size / float(np.median(times)) for name, times in seconds.items()}


def inference_latency(precision: str = "float32", repeats: int = 200) -> dict[str, float]:
    """Median milliseconds of one classify+reconstruct and one decode, with and without XLA."""
    net = CapsNet(precision=precision)
    image = np.random.default_rng(0).random(ModelConfig().input_shape[:2], dtype=np.float32)
    results = {}
    for jit, suffix in ((True, ""), (False, "_without_xla")):
        predictor = Predictor(net, jit_compile=jit)
        capsules = predictor.predict(image).capsules
        classify = partial(predictor.predict, image)
        decode = partial(predictor.decode, capsules, 3)
        results[f"classify_reconstruct_ms{suffix}"] = 1000 * median_seconds(classify, repeats, 20)
        results[f"decode_ms{suffix}"] = 1000 * median_seconds(decode, repeats, 20)
    return results


def same_seed_accuracy(precision: str, train_images: int = 6000, test_images: int = 2000, seed: int = 0) -> dict:
    """One epoch on the first `train_images` MNIST digits, tested on `test_images`: same seed, same steps."""
    from capsnet.config import TrainConfig
    from capsnet.data import Dataset, load_dataset
    from capsnet.rundir import RunDir
    from capsnet.train import train

    full = load_dataset("mnist")
    data = Dataset(full.x_train[:train_images], full.y_train[:train_images], full.x_test[:test_images],
                   full.y_test[:test_images], full.source)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train(TrainConfig(epochs=1, precision=precision, seed=seed), run_dir, data=data, verbose=0)
        seconds = time.perf_counter() - start
        record = RunDir(run_dir).epoch_records()[-1]
    return {"test_accuracy": record["val_accuracy"], "train_accuracy": record["accuracy"],
            "seconds": round(seconds, 1)}


def epoch_throughput(precision: str, train_images: int = 6000, test_images: int = 1000, batch_size: int = 100,
                     seed: int = 0) -> dict:
    """A real epoch, end to end: `train()` on the first `train_images` MNIST digits (input pipeline with shifts,
    callbacks writing the run directory, checkpoints) and validation on `test_images` (the full run's ratio: 60,000
    to 10,000). The second epoch is timed; the first includes tracing."""
    from capsnet.config import TrainConfig
    from capsnet.data import Dataset, load_dataset
    from capsnet.rundir import RunDir
    from capsnet.train import train

    full = load_dataset("mnist")
    data = Dataset(full.x_train[:train_images], full.y_train[:train_images], full.x_test[:test_images],
                   full.y_test[:test_images], full.source)
    with tempfile.TemporaryDirectory() as run_dir:
        train(TrainConfig(epochs=2, batch_size=batch_size, precision=precision, seed=seed), run_dir, data=data,
              verbose=0)
        seconds = RunDir(run_dir).epoch_records()[-1]["seconds"]
    return {"seconds": round(seconds, 2), "train_samples_per_sec": round(train_images / seconds, 1)}


def reference_steps(path: str, batch_size: int = 100) -> tuple[Callable[[], object], Callable[[], object]]:
    """The einsum yardstick's training step (a plain float32 Keras 3 CapsNet, `../shared/bench/ref_capsnet.py`, built
    and compiled as its `main()` does), and a training step of its two convolutions alone (the same layers and Adam,
    a mean squared error on their output: `capsnet.tools.stepprofile`'s cap)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ref_capsnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, _ = module.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=[module.margin_loss, "mse"], loss_weights=[1.0, 0.392],
                  jit_compile=False)
    image = keras.Input(model.inputs[0].shape[1:])
    features = image
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            features = type(layer).from_config(layer.get_config())(features)
    alone = keras.Model(image, features)
    alone.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    x, y = random_batch(batch_size)
    target = np.zeros((batch_size, *alone.output.shape[1:]), np.float32)
    return (lambda: model.train_on_batch([x, y], [y, x])), (lambda: alone.train_on_batch(x, target))


def initialisation_check(steps: int = 60, batch_size: int = 100) -> dict:
    """Initial digit-capsule length and accuracy after `steps` training steps, for our W init and for Glorot's."""
    from capsnet.data import load_dataset
    from capsnet.evaluate import accuracy_report, predict_all

    data = load_dataset("mnist")
    n = steps * batch_size
    x = to_float(data.x_train[:n])[..., None]
    y = keras.utils.to_categorical(data.y_train[:n], ModelConfig().num_classes)
    results = {}
    for name in ("normal_0.05", "glorot_uniform"):
        keras.utils.set_random_seed(0)
        net = CapsNet(precision=resolve(AUTO).precision)
        if name == "glorot_uniform":
            weights = net.eval.get_layer("digit_capsules").W
            weights.assign(keras.initializers.GlorotUniform(seed=0)(weights.shape))
        _, _, capsules = predict_all(net, data.x_train[:200])
        compile_for_training(net.train, 1e-3, 0.392)
        net.train.fit([x, y], {"length": y, "reconstruction": x}, batch_size=batch_size, epochs=1, verbose=0)
        lengths, _, _ = predict_all(net, data.x_train[:1000])
        accuracy = accuracy_report(lengths, data.y_train[:1000])["accuracy"]
        results[name] = {"initial_capsule_length": float(np.linalg.norm(capsules, axis=-1).mean()),
                         f"accuracy_on_first_1000_after_{steps}_steps": accuracy}
    return results


def expand_precisions(requested: list[str]) -> list[str]:
    """The policies to time: `auto` stands for both where this machine computes bfloat16 natively (the comparison
    is the point there), for float32 alone elsewhere (emulated bfloat16 steps would take most of the run)."""
    auto = ["mixed_bfloat16", "float32"] if resolve(AUTO).precision == "mixed_bfloat16" \
        else ["float32"]
    expanded = [p for name in requested for p in (auto if name == AUTO else [name])]
    return list(dict.fromkeys(expanded))


def run_benchmark(precisions: list[str], steps: int = 20, batch_size: int = 100, accuracy: bool = False,
                  init: bool = False, epoch: bool = False, reference: str | None = None) -> dict:
    from capsnet import backend

    results: dict = {"backend": backend.name(), "device": backend.describe_device(), "batch_size": batch_size,
                     "steps": steps, "precision_auto": resolve(AUTO).describe()}
    precisions = expand_precisions(precisions)
    if init:
        results["initialisation"] = initialisation_check()
    if accuracy:
        results["same_seed_accuracy"] = {p: same_seed_accuracy(p) for p in precisions}
    # With --reference, the yardstick's steps alternate with ours: the ratio is what the README quotes (absolute
    # rates vary by machine and by load).
    timed = {precision: training_step(precision, batch_size) for precision in precisions}
    if reference:
        timed["reference"] = reference_steps(reference, batch_size)[0]
    rates = interleaved_throughput(timed, batch_size, steps)
    for precision in precisions:
        results[f"train_samples_per_sec_{precision}"] = round(rates[precision], 1)
    if len(precisions) > 1:
        base = results[f"train_samples_per_sec_{precisions[-1]}"]
        results[f"speedup_{precisions[0]}_over_{precisions[-1]}"] = round(
            results[f"train_samples_per_sec_{precisions[0]}"] / base, 3)
    if epoch:
        for precision in precisions:
            # In a fresh process, as a training run is: after this one has built and trained several networks, an
            # epoch here ran up to twice as slow as the same epoch alone.
            with ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=backend.quiet_start) as pool:
                real = pool.submit(epoch_throughput, precision, batch_size=batch_size).result()
            results[f"real_epoch_{precision}"] = real
            # How far a real epoch (input, callbacks, checkpoints, validation) falls behind the training steps alone.
            results[f"real_epoch_vs_steps_{precision}"] = round(
                real["train_samples_per_sec"] / results[f"train_samples_per_sec_{precision}"], 3)
    if reference:
        results["reference_train_samples_per_sec"] = round(rates["reference"], 1)
        for precision in precisions:
            results[f"speedup_{precision}_over_reference"] = round(
                results[f"train_samples_per_sec_{precision}"] / results["reference_train_samples_per_sec"], 3)
    results.update({k: round(v, 3) for k, v in inference_latency().items()})
    return results
