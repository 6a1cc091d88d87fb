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
    """SIGTERM/SIGINT finish the current step, then stop; `RunRecorder` writes the checkpoint. A context manager:
    the signals are caught from before the first `fit` until after the last (a resumed run may need two)."""

    def __init__(self):
        super().__init__()
        self.requested = False
        self.previous = {}

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self.request)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def request(self, signum, frame):
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True


class ValidateCompleteEpochs(keras.callbacks.Callback):
    """Validation at the end of every epoch that ran all its steps, added to the epoch's logs as `val_*`, as
    `fit(validation_data=...)` adds it. Unlike `fit`'s, it skips an epoch cut short by a stop: that epoch's
    checkpoint is written at its last step and nothing would keep its figures, while validating could take minutes
    (MultiMNIST's 10,000 test pairs: ~4 on a CPU)."""

    def __init__(self, inputs: tuple, batch_size: int):
        super().__init__()
        self.inputs, self.batch_size = inputs, batch_size
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.steps < self.params["steps"]:
            return
        x, y = self.inputs
        results = self.model.evaluate(x, y, batch_size=self.batch_size, verbose=0, return_dict=True)
        logs.update({f"val_{name}": value for name, value in results.items()})


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
    """Writes metrics.jsonl, log.csv/png, status.json and the checkpoints of a run directory.

    A checkpoint is written at the end of every epoch, at a requested stop, and every `checkpoint_minutes` in between:
    the last two record how many steps of the epoch the weights have taken, and a resumed run goes on from there
    (`resume_at`: the epoch and step it starts at, and the seconds that epoch had taken before).
    """

    def __init__(self, run: RunDir, net: CapsNet, config: TrainConfig, steps_per_epoch: int, stop: GracefulStop,
                 divergence: StopOnDivergence, resume_at: tuple[int, int, float] = (0, 0, 0.0)):
        super().__init__()
        self.run, self.net, self.config = run, net, config
        self.steps_per_epoch = steps_per_epoch
        self.stop, self.divergence = stop, divergence
        self.resume_at = resume_at
        self.best_val_accuracy = run.checkpoint_state().get("best_val_accuracy", -1.0)
        self.epoch = 0
        self.first_step = self.steps_done = 0
        self.status_time = 0.0
        self.checkpoint_time = time.perf_counter()

    def current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        resumed_epoch, resumed_step, seconds_before = self.resume_at
        resumed = epoch == resumed_epoch and resumed_step > 0
        self.epoch = epoch
        self.first_step = self.steps_done = resumed_step if resumed else 0
        self.window_start = time.perf_counter()
        self.epoch_start = self.window_start - (seconds_before if resumed else 0.0)
        self.window_steps = 0
        self.run.write_status("running", epoch=epoch, step=self.steps_done)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = self.first_step + batch + 1
        self.window_steps += 1
        now = time.perf_counter()
        unfinished = self.steps_done < self.steps_per_epoch
        if unfinished and not self.divergence.failure and (
                self.stop.requested or 0 < self.config.checkpoint_minutes * 60 <= now - self.checkpoint_time):
            self.save_checkpoint(epochs_completed=self.epoch, steps_completed=self.steps_done)
        samples_per_sec = self.window_steps * self.config.batch_size / max(now - self.window_start, 1e-9)
        if self.steps_done % self.config.log_every and unfinished:
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
        if self.divergence.failure or self.steps_done < self.steps_per_epoch:
            # Broken weights (the last checkpoint stays the last good one), or a stop whose checkpoint is written.
            return
        record = {"kind": "epoch", "epoch": epoch, **run_metrics(logs or {}), "lr": self.current_lr(),
                  "seconds": time.perf_counter() - self.epoch_start, "time": time.time()}
        if self.first_step:  # the training figures are those of the steps this process took
            record["resumed_at_step"] = self.first_step
        self.run.append_metrics(record)
        self.run.write_epoch_log()
        val_accuracy = record.get("val_accuracy", record.get("accuracy", 0.0))
        self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if val_accuracy > self.best_val_accuracy:
            self.best_val_accuracy = val_accuracy
            save_model(self.net, self.run.best_checkpoint)
        self.save_checkpoint(epochs_completed=epoch + 1)

    def save_checkpoint(self, epochs_completed: int, steps_completed: int = 0) -> None:
        # Model and optimizer state, and the steps they cover, in one file that replaces the last one whole.
        sync = getattr(self.model, "jax_state_sync", None)  # JAX's fit keeps them outside the variables mid-epoch
        if steps_completed and sync is not None:
            sync()
        self.run.save_checkpoint(self.model.save_weights, epochs_completed, self.best_val_accuracy, steps_completed,
                                 time.perf_counter() - self.epoch_start if steps_completed else 0.0)
        self.checkpoint_time = time.perf_counter()


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
          distribution: Any = None, data: Dataset | None = None, verbose: int = 1,
          callbacks: list[keras.callbacks.Callback] = ()) -> CapsNet:
    """Train a CapsNet into `save_dir` (a run directory).

    With `resume`, continue from the directory's last checkpoint, at the step it was written; `config` should then
    be the run's own (`TrainConfig.load(run.config_file)`), possibly with more epochs. A run stopped before its first
    checkpoint starts over. `callbacks`: Keras callbacks of your own, called before the run's.
    """
    resume = resume and RunDir(save_dir).last_checkpoint.is_file()
    with distribute.run_directory_for(distribution, save_dir) as run_path:
        return train_into(RunDir(run_path), config, resume, weights, distribution, data, verbose, list(callbacks))


def train_into(run: RunDir, config: TrainConfig, resume: bool, weights: str | None, distribution: Any,
               data: Dataset | None, verbose: int, callbacks: list[keras.callbacks.Callback]) -> CapsNet:
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_partial_checkpoints()  # a killed predecessor's unfinished write
    chosen = precision.resolve(config.precision)
    # config.json keeps what was asked for (a resumed run decides again, on whatever machine it resumes on) and,
    # beside it, what this process computes in and why.
    write_text(run.config_file, json.dumps({**json.loads(config.to_json()),
                                                   "precision_used": chosen.to_dict()}, indent=2))
    previous = run.read_raw_status()
    device = backend.describe_device()
    checkpoint = run.checkpoint_state() if resume else {}
    # One entry per process that worked on this run: how many sessions a long training took, and where.
    session = {"pid": os.getpid(), "started": time.time(), "device": device, "backend": backend.name(),
               "git_commit": code_version(), "precision": chosen.to_dict(), "initial_weights": weights,
               "initial_epoch": checkpoint.get("epochs_completed", 0), "initial_step": checkpoint.get(
                   "steps_completed", 0)}
    run.write_status("running", pid=os.getpid(), device=device, backend=backend.name(),
                     started=previous.get("started", time.time()), precision=chosen.to_dict(),
                     sessions=previous.get("sessions", []) + [session], stop_requested=False, message="")
    if verbose:
        print(f"precision: {chosen.describe()}", flush=True)
    try:
        net = fit(config, run, checkpoint, weights, distribution, data, verbose, chosen.precision, callbacks)
    except BaseException as error:
        message = str(error) if isinstance(error, TrainingDiverged) else f"{type(error).__name__}: {error}"
        run.write_status("failed", message=message[:500])
        raise
    return net


def fit(config: TrainConfig, run: RunDir, checkpoint: dict[str, Any], weights: str | None, distribution: Any,
        data: Dataset | None, verbose: int, compute_precision: str,
        extra_callbacks: list[keras.callbacks.Callback]) -> CapsNet:
    """Build, compile and train; `checkpoint`: the state of the checkpoint to resume from ({} to start afresh)."""
    keras.utils.set_random_seed(config.seed)
    data = (data or load_dataset(config.dataset)).subset(config.subset)
    num_classes = config.model.num_classes
    initial_epoch = checkpoint.get("epochs_completed", 0)
    initial_step = checkpoint.get("steps_completed", 0)  # of epoch `initial_epoch`, by a mid-epoch checkpoint
    # Everything inside the scope: TensorFlow's strategies place the variables there, and JAX's distribution shards
    # the batches of `fit` while it is the active one.
    with distribution.scope() if distribution is not None else contextlib.nullcontext(), GracefulStop() as stop:
        net = build_network(config.model, compute_precision)
        digits = digits_per_image(config.dataset)
        if isinstance(net, CapsNet):
            compile_for_training(net.train, config.lr, config.lam_recon, config.model.input_shape, digits)
        elif digits > 1:
            raise ValueError(f"the baseline CNN reads one object per image; {config.dataset} has {digits}")
        else:  # the baseline CNN: the same optimizer and schedule, its own loss
            compile_baseline(net.train, config.lr)

        # Under a distribution batch_size is the global batch, split across the replicas.
        def batches_from(epoch: int, step: int):
            if digits > 1:  # MultiMNIST: fresh pairs every epoch
                return multimnist.PairBatches(data.x_train, data.y_train, config.batch_size, config.seed, epoch,
                                              num_classes, first_step=step)
            return TrainingBatches(data.x_train, data.y_train, config.batch_size, config.shift_fraction, config.seed,
                                   epoch, num_classes, first_step=step, example=net.training_example)

        if digits > 1:  # validated on the fixed test pairs
            validation = multimnist.model_inputs(multimnist.test_pairs(data.x_test, data.y_test), num_classes)
        else:
            validation = model_inputs(data.x_test, data.y_test, num_classes, net.training_example)
        steps_per_epoch = batches_from(0, 0).steps_per_epoch
        if initial_step >= steps_per_epoch:
            raise ValueError(f"the checkpoint is {initial_step} steps into an epoch, but this run's epochs have "
                             f"{steps_per_epoch} steps: resume it with the batch size and subset it was trained with")
        run.truncate_metrics(initial_epoch, initial_step)  # what a stopped or killed process logged after it
        if checkpoint:
            restore_training_state(net.train, run.last_checkpoint)
        elif weights:  # start from a trained model: any file load_network reads (capsnet.transfer)
            initial_weights(net, load_network(weights))

        divergence = StopOnDivergence()
        resume_at = (initial_epoch, initial_step, checkpoint.get("epoch_seconds", 0.0))
        callbacks = [
            *extra_callbacks,
            keras.callbacks.LearningRateScheduler(config.learning_rate),
            stop,
            ValidateCompleteEpochs(validation, config.batch_size),
            divergence,
            RunRecorder(run, net, config, steps_per_epoch, stop, divergence, resume_at),
        ]
        if config.debug:
            callbacks.append(keras.callbacks.TensorBoard(str(run.tensorboard_dir), histogram_freq=1))
        # A run resumed in the middle of an epoch trains the rest of that epoch first, as a fit of its own.
        segments = [(initial_epoch, initial_step, initial_epoch + 1)] if initial_step else []
        segments.append((initial_epoch + bool(initial_step), 0, config.epochs))
        for first_epoch, first_step, end in segments:
            if first_epoch >= min(end, config.epochs) or stop.requested or divergence.failure:
                break
            net.train.fit(batches_from(first_epoch, first_step), steps_per_epoch=steps_per_epoch - first_step,
                          shuffle=False, epochs=end, initial_epoch=first_epoch, callbacks=callbacks,
                          verbose=verbose)
    if divergence.failure:
        kept = run.checkpoint_state().get("epochs_completed")
        raise TrainingDiverged(divergence.failure + ("; there is no checkpoint yet" if kept is None else
                                                     f"; the last good checkpoint (epoch {kept}) is kept"))
    if stop.requested:
        where = run.checkpoint_position()
        run.write_status("stopped", message=f"stopped by request; resume continues from {where}" if where else
                         "stopped by request before the first checkpoint; resume starts over")
        return net
    save_model(net, run.final_model)
    epochs = run.epoch_records()
    run.write_status("finished", message="", final_val_accuracy=epochs[-1].get("val_accuracy") if epochs else None)
    return net
