"""Training: callbacks that write the run directory, checkpoints, resume and graceful stop.

`train()` is the whole recipe, on any Keras backend (the input comes from `capsnet.pipeline`, in NumPy). Building and
compiling happen inside `distribution.scope()`, so passing one of `capsnet.distribute`'s strategies (a `tf.distribute`
strategy for several GPUs or machines, a `keras.distribution` on JAX) is all multi-device training needs; on a
cluster only the chief writes the run directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import keras

from capsnet import backend, distribute, multimnist, precision
from capsnet.baseline import compile_baseline
from capsnet.config import TrainConfig, digits_per_image
from capsnet.data import Dataset, load_dataset
from capsnet.files import write_text
from capsnet.inference import load_network
from capsnet.losses import compile_for_training
from capsnet.model import CapsNet, build_network, save_model
from capsnet.pipeline import TrainingBatches, model_inputs
from capsnet.rundir import RunDir, run_metrics
from capsnet.transfer import initial_weights

# --- callbacks ------------------------------------------------------------------------------------------------

class GracefulStop(keras.callbacks.Callback):
    """SIGTERM/SIGINT finish the current step, then stop; `RunRecorder` writes the checkpoint."""

    def __init__(self):
        super().__init__()
        self.requested = False
        self.previous = {}

    def on_train_begin(self, logs=None):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self.request)

    def request(self, signum, frame):
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: nothing can be learned from these weights any more."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, and keeps what happened in `failure`.

    Unlike Keras's `TerminateOnNaN` it also looks at the validation loss, where an update in an epoch's last step
    shows first, and it leaves the failure to be reported: `RunRecorder` writes no checkpoint of the broken weights,
    `fit` raises it.
    """

    def __init__(self):
        super().__init__()
        self.failure: str | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.failure is None:
            self.failure = f"loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float((logs or {}).get("val_loss", 0.0))
        if not math.isfinite(val_loss) and self.failure is None:
            self.failure = f"validation loss became {val_loss} at epoch {epoch + 1}"
            self.model.stop_training = True


class RunRecorder(keras.callbacks.Callback):
    """Writes metrics.jsonl, log.csv/png, status.json and the checkpoints of a run directory."""

    def __init__(self, run: RunDir, net: CapsNet, config: TrainConfig, steps_per_epoch: int, stop: GracefulStop,
                 divergence: StopOnDivergence):
        super().__init__()
        self.run, self.net, self.config = run, net, config
        self.steps_per_epoch = steps_per_epoch
        self.stop, self.divergence = stop, divergence
        self.best_val_accuracy = run.checkpoint_state().get("best_val_accuracy", -1.0)
        self.epoch = 0
        self.steps_done = 0
        self.status_time = 0.0

    def current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.steps_done = 0
        self.epoch_start = self.window_start = time.perf_counter()
        self.window_steps = 0
        self.run.write_status("running", epoch=epoch, step=0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1
        self.window_steps += 1
        now = time.perf_counter()
        samples_per_sec = self.window_steps * self.config.batch_size / max(now - self.window_start, 1e-9)
        if self.steps_done % self.config.log_every and self.steps_done != self.steps_per_epoch:
            # Between records, keep status.json's step count live for dashboards, about once a second.
            if now - self.status_time >= 1.0:
                self.write_progress(samples_per_sec)
            return
        self.window_start, self.window_steps = now, 0
        record = {
            "kind": "step", "epoch": self.epoch, "step": self.steps_done,
            "global_step": self.epoch * self.steps_per_epoch + self.steps_done,
            **run_metrics(logs or {}), "lr": self.current_lr(), "samples_per_sec": samples_per_sec,
            "time": time.time(),
        }
        self.run.append_metrics(record)
        self.write_progress(samples_per_sec)

    def write_progress(self, samples_per_sec: float) -> None:
        self.status_time = time.perf_counter()
        self.run.write_status("running", epoch=self.epoch, step=self.steps_done,
                              steps_per_epoch=self.steps_per_epoch, samples_per_sec=samples_per_sec)

    def on_epoch_end(self, epoch, logs=None):
        if self.divergence.failure:
            return  # the weights are broken: the last checkpoint stays the last good one
        if self.stop.requested and self.steps_done < self.steps_per_epoch:
            # An unfinished epoch: keep its weights and optimizer state, but count it as not done.
            self.save_checkpoint(epochs_completed=epoch)
            return
        record = {"kind": "epoch", "epoch": epoch, **run_metrics(logs or {}), "lr": self.current_lr(),
                  "seconds": time.perf_counter() - self.epoch_start, "time": time.time()}
        self.run.append_metrics(record)
        self.run.write_epoch_log()
        val_accuracy = record.get("val_accuracy", record.get("accuracy", 0.0))
        self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if val_accuracy > self.best_val_accuracy:
            self.best_val_accuracy = val_accuracy
            save_model(self.net, self.run.best_checkpoint)
        self.save_checkpoint(epochs_completed=epoch + 1)

    def save_checkpoint(self, epochs_completed: int) -> None:
        # Model and optimizer state, and the epochs they cover, in one file that replaces the last one whole.
        self.run.save_checkpoint(self.model.save_weights, epochs_completed, self.best_val_accuracy)


# --- the recipe -----------------------------------------------------------------------------------------------

def code_version() -> str | None:
    """The git commit of the code doing the training (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def restore_training_state(model: keras.Model, checkpoint: Path) -> None:
    """Load model and optimizer state; the optimizer's slots must exist before they can be filled."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(checkpoint)


def train(config: TrainConfig, save_dir: str | Path, resume: bool = False, weights: str | None = None,
          distribution: Any = None, data: Dataset | None = None, verbose: int = 1) -> CapsNet:
    """Train a CapsNet into `save_dir` (a run directory).

    With `resume`, continue from the directory's last checkpoint; `config` should then be the run's own
    (`TrainConfig.load(run.config_file)`), possibly with more epochs. A run stopped before its first checkpoint
    starts over.
    """
    resume = resume and RunDir(save_dir).last_checkpoint.is_file()
    with distribute.run_directory_for(distribution, save_dir) as run_path:
        return train_into(RunDir(run_path), config, resume, weights, distribution, data, verbose)


def train_into(run: RunDir, config: TrainConfig, resume: bool, weights: str | None, distribution: Any,
               data: Dataset | None, verbose: int) -> CapsNet:
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_partial_checkpoints()  # a killed predecessor's unfinished write
    chosen = precision.resolve(config.precision)
    # config.json keeps what was asked for (a resumed run decides again, on whatever machine it resumes on) and,
    # beside it, what this process computes in and why.
    write_text(run.config_file, json.dumps({**json.loads(config.to_json()),
                                                   "precision_used": chosen.to_dict()}, indent=2))
    previous = run.read_raw_status()
    device = backend.describe_device()
    # One entry per process that worked on this run: how many sessions a long training took, and where.
    session = {"pid": os.getpid(), "started": time.time(), "device": device, "backend": backend.name(),
               "git_commit": code_version(), "precision": chosen.to_dict(), "initial_weights": weights,
               "initial_epoch": run.checkpoint_state().get("epochs_completed", 0) if resume else 0}
    run.write_status("running", pid=os.getpid(), device=device, backend=backend.name(),
                     started=previous.get("started", time.time()), precision=chosen.to_dict(),
                     sessions=previous.get("sessions", []) + [session], stop_requested=False, message="")
    if verbose:
        print(f"precision: {chosen.describe()}", flush=True)
    try:
        net = fit(config, run, resume, weights, distribution, data, verbose, chosen.precision)
    except BaseException as error:
        message = str(error) if isinstance(error, TrainingDiverged) else f"{type(error).__name__}: {error}"
        run.write_status("failed", message=message[:500])
        raise
    return net


def fit(config: TrainConfig, run: RunDir, resume: bool, weights: str | None, distribution: Any,
        data: Dataset | None, verbose: int, compute_precision: str) -> CapsNet:
    keras.utils.set_random_seed(config.seed)
    data = (data or load_dataset(config.dataset)).subset(config.subset)
    num_classes = config.model.num_classes
    initial_epoch = run.checkpoint_state().get("epochs_completed", 0) if resume else 0
    # Everything inside the scope: TensorFlow's strategies place the variables there, and JAX's distribution shards
    # the batches of `fit` while it is the active one.
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        net = build_network(config.model, compute_precision)
        digits = digits_per_image(config.dataset)
        if isinstance(net, CapsNet):
            compile_for_training(net.train, config.lr, config.lam_recon, config.model.input_shape, digits)
        elif digits > 1:
            raise ValueError(f"the baseline CNN reads one object per image; {config.dataset} has {digits}")
        else:  # the baseline CNN: the same optimizer and schedule, its own loss
            compile_baseline(net.train, config.lr)
        # Under a distribution batch_size is the global batch, split across the replicas.
        if digits > 1:  # MultiMNIST: fresh pairs every epoch, validated on the fixed test pairs
            batches = multimnist.PairBatches(data.x_train, data.y_train, config.batch_size, config.seed,
                                             first_epoch=initial_epoch, num_classes=num_classes)
            validation = multimnist.model_inputs(multimnist.test_pairs(data.x_test, data.y_test), num_classes)
        else:
            batches = TrainingBatches(data.x_train, data.y_train, config.batch_size, config.shift_fraction,
                                      config.seed, first_epoch=initial_epoch, num_classes=num_classes,
                                      example=net.training_example)
            validation = model_inputs(data.x_test, data.y_test, num_classes, net.training_example)
        steps_per_epoch = batches.steps_per_epoch
        run.truncate_metrics(initial_epoch)  # what a stopped or killed process logged after its checkpoint
        if resume:
            restore_training_state(net.train, run.last_checkpoint)
        elif weights:  # start from a trained model: any file load_network reads (capsnet.transfer)
            initial_weights(net, load_network(weights))

        stop, divergence = GracefulStop(), StopOnDivergence()
        callbacks = [
            keras.callbacks.LearningRateScheduler(lambda epoch: config.lr * config.lr_decay ** epoch),
            stop,
            divergence,
            RunRecorder(run, net, config, steps_per_epoch, stop, divergence),
        ]
        if config.debug:
            callbacks.append(keras.callbacks.TensorBoard(str(run.tensorboard_dir), histogram_freq=1))
        if initial_epoch < config.epochs:
            net.train.fit(batches, steps_per_epoch=steps_per_epoch, shuffle=False, validation_data=validation,
                          validation_batch_size=config.batch_size, epochs=config.epochs,
                          initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)
    if divergence.failure:
        kept = run.checkpoint_state().get("epochs_completed")
        raise TrainingDiverged(divergence.failure + ("; there is no checkpoint yet" if kept is None else
                                                     f"; the last good checkpoint (epoch {kept}) is kept"))
    if stop.requested:
        run.write_status("stopped", message="stopped by request; resume continues from the last checkpoint")
        return net
    save_model(net, run.final_model)
    epochs = run.epoch_records()
    run.write_status("finished", message="", final_val_accuracy=epochs[-1].get("val_accuracy") if epochs else None)
    return net

