"""`python -m capsnet train|test|manipulate|data|bench` — the reference's flags, plus a few of our own.

Run without a command, it behaves like the reference script: train, or with `-t` test a saved model.
User mistakes (bad flags, missing files, no data) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

COMMANDS = ("train", "test", "manipulate", "data", "bench")


class UserError(Exception):
    """Something the user can fix; printed as one line, never as a traceback."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def interval(low: float, high: float = math.inf, *, open_low: bool = False,
             integer: bool = False) -> Callable[[str], float]:
    """An argparse type for a finite number in [low, high], or (low, high] with `open_low`: a value outside its
    range is refused while the flags are parsed, as one line, not minutes later inside training (or never: a NaN
    learning rate trains on, silently, into NaN weights)."""
    kind = "an integer" if integer else "a number"
    if high == math.inf:
        span = f"{kind} greater than {low:.10g}" if open_low else f"{kind} of at least {low:.10g}"
    else:
        span = f"{kind} in {'(' if open_low else '['}{low:.10g}, {high:.10g}]"

    def parse(text: str) -> float | int:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (low < value if open_low else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"must be {span}, got {text!r}")
        return value

    return parse


positive_int = interval(1, integer=True)


def argument_type(spec) -> Callable[[str], Any]:
    """An argparse type for a training parameter (`capsnet.config.Param`): its refusal is argparse's one line."""

    def parse(text: str) -> Any:
        try:
            return spec.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "value"  # how argparse names the type in "invalid value value: ..."
    return parse


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    return text


def precision_list(text: str) -> list[str]:
    from capsnet.precision import CHOICES  # light: dataclasses only

    precisions = [p.strip() for p in text.split(",") if p.strip()]
    if not precisions or set(precisions) - set(CHOICES):
        raise argparse.ArgumentTypeError(f"use one or more of {','.join(CHOICES)}, got {text!r}")
    return precisions


def digit_choice(text: str) -> str:
    if text != "all" and text not in {str(d) for d in range(10)}:
        raise argparse.ArgumentTypeError(f"must be 0-9 or 'all', got {text!r}")
    return text


def build_parser() -> Parser:
    from capsnet.backend import BACKENDS  # light: no Keras yet
    from capsnet.config import DATASETS, NETWORKS, PRECISION_CHOICES, TrainConfig, train_parameters  # light

    d = TrainConfig()
    parser = Parser(prog="python -m capsnet", description="CapsNet (Sabour et al. 2017) on MNIST and Fashion-MNIST.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    def backend_flag(p):
        p.add_argument("--backend", choices=BACKENDS,
                       help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")

    def model_flags(p):
        backend_flag(p)
        p.add_argument("-w", "--weights", type=existing_file,
                       help="model file: .keras, a run's .weights.h5, or the reference's .h5 "
                            "(default: the pretrained model in assets/)")
        p.add_argument("-r", "--routings", type=positive_int, help="routing iterations (default: the model's)")
        p.add_argument("--dataset", choices=DATASETS,
                       help="test images from this dataset (default: the one the model was trained on)")
        p.add_argument("--save_dir", default="result", help="where images are written (default: result)")
        p.add_argument("--digit", type=digit_choice, default="5",
                       help="capsule to manipulate: a class number 0-9, or all")

    train = commands.add_parser("train", help="train a CapsNet (the default command)")
    # The training parameters, from their one definition (capsnet.config.train_parameters). Some default to the
    # run's or the model's own where that applies, so their flags default to "not given".
    own = {"epochs": "with --resume, the run's own", "dataset": "with -t: the one the model was trained on",
           "routings": "with -t: the model's own",
           "lr": "with --resume, given: the rate where it resumes, decaying from there",
           "lr_decay": "with --resume, given: the decay from where it resumes on"}
    for name, (spec, default) in train_parameters().items():
        flags = ["-r", "--routings"] if name == "routings" else [f"--{name}"]
        if spec.switch:
            train.add_argument(*flags, action="store_true", help=spec.help)
            continue
        shown = default if default is not None else spec.unset
        help = f"{spec.help}; {spec.describe()} (default {shown}" + (f"; {own[name]})" if name in own else ")")
        metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else name.upper()
        train.add_argument(*flags, type=argument_type(spec), metavar=metavar, help=help.replace("%", "%%"),
                           default=None if name in own else default)
    train.add_argument("--save_dir", help="run directory (default: <runs>/<timestamp>-r<routings>, where <runs> is "
                                          "$CAPSNET_RUNS_DIR or runs/)")
    train.add_argument("-t", "--testing", action="store_true", help="test the -w model instead of training")
    train.add_argument("--digit", type=digit_choice, default="5", help="with -t: capsule to manipulate")
    train.add_argument("-w", "--weights", type=existing_file,
                       help="model file to start training from; with -t the model to test")
    train.add_argument("--resume", action="store_true", help="continue --save_dir from its last checkpoint")
    train.add_argument("--model", default="capsnet", choices=NETWORKS,
                       help="capsnet, or cnn: the baseline CNN of capsnet/baseline.py, trained with the same recipe")
    train.add_argument("--gpus", type=positive_int, default=None,
                       help="GPUs to train on together: tf.distribute.MirroredStrategy on TensorFlow, "
                            "keras.distribution.DataParallel on JAX (default: one device)")
    train.add_argument("--strategy", choices=("multi_worker",),
                       help="multi_worker: train on the machines listed in $TF_CONFIG together "
                            "(tf.distribute.MultiWorkerMirroredStrategy; each machine runs this same command)")
    backend_flag(train)

    test = commands.add_parser("test", help="test accuracy and real-vs-reconstructed images (CapsNet or CNN)")
    model_flags(test)
    test.add_argument("--affine", action="store_true",
                      help="also test 1,000 digits rotated, scaled, sheared and shifted (JSON; capsnet/affine.py)")
    test.add_argument("--attack", action="store_true",
                      help="also attack 1,000 digits (FGSM and PGD over epsilon) and detect them by reconstruction "
                           "(JSON; capsnet/attack.py)")
    model_flags(commands.add_parser("manipulate", help="16x11 latent manipulation grid of a digit capsule"))
    data = commands.add_parser("data", help="find (or fetch) the dataset and report its source")
    data.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    bench = commands.add_parser("bench", help="training samples/s and inference latency, as JSON")
    backend_flag(bench)
    bench.add_argument("--steps", type=positive_int, default=20)
    bench.add_argument("--batch_size", type=positive_int, default=100)
    bench.add_argument("--precision", type=precision_list, default=["auto"],
                       help=f"comma-separated policies to compare, of {','.join(PRECISION_CHOICES)} (default: auto: "
                            "both where this machine computes bfloat16 natively, else float32 alone)")
    bench.add_argument("--accuracy", action="store_true",
                       help="also train each policy for one epoch on 6k images (same seed) and compare test accuracy")
    bench.add_argument("--epoch", action="store_true",
                       help="also time a real epoch (train() on 6,000 images, validation on 1,000) per policy")
    bench.add_argument("--reference", metavar="PATH", type=existing_file,
                       help="also time the einsum yardstick at PATH (../shared/bench/ref_capsnet.py) in this run")
    bench.add_argument("--profile", action="store_true",
                       help="also profile a training step per policy (and the yardstick's, with --reference): each "
                            "part's share (convolutions, capsules, decoder, loss, optimizer) and the convolutions' "
                            "cap on the speedup over the yardstick (TensorFlow; capsnet/tools/stepprofile.py)")
    bench.add_argument("--init", action="store_true",
                       help="also compare W initialisations: initial capsule length, accuracy after 60 steps")
    bench.add_argument("--photos", action="store_true",
                       help="instead: the shipped model's accuracy on MNIST test digits rendered as phone photos and "
                            "scans, read through the upload preprocessing (capsnet/tools/photos.py)")
    bench.add_argument("--digits", type=positive_int, help="with --photos: test digits per condition (default 100)")
    bench.add_argument("--baseline", metavar="PATH", type=existing_file,
                       help="with --photos: also read the same photos with the preprocessing module at PATH "
                            "(e.g. an older capsnet/preprocess.py), for a before/after comparison")
    return parser


# --- commands -------------------------------------------------------------------------------------------------

def cmd_data(args) -> None:
    from capsnet.data import load_dataset

    data = load_dataset(args.dataset)
    print(json.dumps({"dataset": args.dataset, "source": data.source, "train": len(data.x_train),
                      "test": len(data.x_test)}))


def cmd_train(args) -> None:
    if args.testing:
        args.save_dir = args.save_dir or "result"
        cmd_test(args)
        cmd_manipulate(args)
        return
    from capsnet import distribute
    from capsnet.config import digits_per_image
    from capsnet.inference import load_network
    from capsnet.precision import jax_cpu_note
    from capsnet.rundir import RunDir, new_run_name, runs_root
    from capsnet.train import train

    if args.strategy and args.gpus:
        raise UserError("--gpus and --strategy multi_worker: a worker trains on all its visible GPUs "
                        "(choose them with CUDA_VISIBLE_DEVICES)")
    distribution = args.distribution if args.strategy else distribute.for_gpus(args.gpus)
    chief = distribute.is_chief(distribution)

    if args.resume:
        if not args.save_dir:
            raise UserError("--resume needs --save_dir: the run directory to continue")
        save_dir = Path(args.save_dir)
        # A resumed run keeps its own hyperparameters; --epochs may extend it, and --lr or --lr_decay give it a new
        # schedule from the epoch it resumes in (the config records where).
        config = run_config(save_dir)
        config.epochs = args.epochs or config.epochs
        if args.lr is not None or args.lr_decay is not None:
            resumes_in = RunDir(save_dir).checkpoint_state().get("epochs_completed", 0)
            config = config.with_lr_change(resumes_in, args.lr, args.lr_decay)
            print(f"learning rate from epoch {resumes_in + 1} on: {config.learning_rate(resumes_in):.3g}, "
                  f"x {config.lr_changes[-1]['lr_decay']} per epoch", flush=True)
    else:
        config = new_config(args)
        if args.model == "cnn" and digits_per_image(config.dataset) > 1:
            raise UserError(f"the baseline CNN names one object per image; {config.dataset} images hold "
                            f"{digits_per_image(config.dataset)}: train a CapsNet on it")
        label = f"r{config.model.routings}" if args.model == "capsnet" else args.model
        save_dir = Path(args.save_dir or runs_root() / new_run_name(label))
        if chief and (save_dir / "config.json").exists():
            raise UserError(f"{save_dir} already holds a run; pass --resume to continue it or pick another --save_dir")
    if chief:
        output_dir(save_dir)
    print(f"run directory: {save_dir}" + ("" if chief else " (written by the chief; this worker trains along)"),
          flush=True)
    if note := jax_cpu_note(config.precision):  # bfloat16 on JAX without a GPU: slower than float32
        print(note, file=sys.stderr, flush=True)
    net = train(config, save_dir, resume=args.resume, weights=args.weights, distribution=distribution)
    run = RunDir(save_dir)
    if chief and run.read_raw_status().get("state") == "finished":
        # The saved model, on this process alone: a distributed one would wait for workers that have finished.
        report_test(load_network(run.final_model) if distribution else net, config.dataset, save_dir)


def run_config(save_dir: Path):
    """The TrainConfig of the run in `save_dir`, for --resume; a folder that holds no run says why."""
    from capsnet.config import TrainConfig

    config_file = save_dir / "config.json"
    if not config_file.is_file():
        why = ("does not exist" if not save_dir.exists() else "is a file, not a run directory"
               if not save_dir.is_dir() else "holds no config.json")
        raise UserError(f"nothing to resume: {save_dir} {why}")
    try:
        return TrainConfig.load(config_file)
    except (OSError, ValueError, TypeError, AttributeError) as error:  # unreadable, not JSON, not an object
        raise UserError(f"nothing to resume: {config_file} is not a run's config ({error})") from None


def output_dir(path: str | Path) -> Path:
    """The folder a command writes into, created (and written to once) before the long work that fills it: an
    unwritable one is a one-line error now, not a traceback after an epoch or an evaluation."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise UserError(f"cannot create or write to {path}: {error.strerror or error}") from None
    return path


def new_config(args):
    """The TrainConfig of a new run: the flags given, TrainConfig's defaults for the rest."""
    from capsnet.config import CNNConfig, ModelConfig, TrainConfig, train_parameters

    given = {name: getattr(args, name) for name in train_parameters()}
    routings = given.pop("routings") or ModelConfig.routings
    given |= {"dataset": args.dataset or TrainConfig.dataset, "epochs": args.epochs or TrainConfig.epochs,
              "lr": TrainConfig.lr if args.lr is None else args.lr}
    return TrainConfig(**given, model=CNNConfig() if args.model == "cnn" else ModelConfig(routings=routings))


def load_for_cli(args):
    from capsnet.inference import load_capsnet

    return load_capsnet(args.weights, routings=args.routings)  # -r: the same weights, routed that many times


def report_test(net, dataset: str | None, save_dir: Path) -> dict:
    """Test accuracy (overall and per class) of a CapsNet or the baseline CNN on `dataset` (None: the one it was
    trained on); for a CapsNet also real_and_recon.png."""
    from capsnet.config import class_names, digits_per_image
    from capsnet.data import load_dataset
    from capsnet.evaluate import accuracy_report, class_scores, predict_all
    from capsnet.imaging import real_over_reconstruction, save_png
    from capsnet.model import CapsNet

    dataset = checked_dataset(net, dataset)
    if digits_per_image(dataset) > 1:
        return report_pairs(net, save_dir)
    data = load_dataset(dataset)
    capsnet = isinstance(net, CapsNet)
    if capsnet:
        scores, recon, _ = predict_all(net, data.x_test)
    else:
        scores = class_scores(net, data.x_test)
    report = accuracy_report(scores, data.y_test)
    print(f"test accuracy: {report['accuracy']:.4f}  test error: {100 * report['error']:.2f}% "
          f"({report['errors']} of {report['count']})")
    print("per class: " + ", ".join(f"{name} {100 * accuracy:.1f}%" for name, accuracy
                                    in zip(class_names(net.config), report["per_class_accuracy"], strict=True)))
    if capsnet:
        path = save_png(real_over_reconstruction(data.x_test[:50], recon[:50]), save_dir / "real_and_recon.png")
        print(f"real (top) and reconstructed (bottom) images: {path}")
    return report


def checked_dataset(net, dataset: str | None) -> str:
    """The dataset to test `net` on: `dataset`, or the one it was trained on; images of another size are refused."""
    from capsnet.config import image_shape

    dataset = dataset or net.config.dataset
    if image_shape(dataset) != tuple(net.config.input_shape):
        size = "x".join(map(str, net.config.input_shape[:2]))
        raise UserError(f"the model reads {size} images; {dataset} has {'x'.join(map(str, image_shape(dataset)[:2]))}"
                        f" (test it on {net.config.dataset})")
    return dataset


def report_pairs(net, save_dir: Path) -> dict:
    """A MultiMNIST model on the fixed test pairs: the paper's error (both digits right), at-least-one accuracy, and
    real_and_recon.png (each pair over its two reconstructions, red and green)."""
    from capsnet import multimnist
    from capsnet.data import load_dataset
    from capsnet.imaging import save_png

    data = load_dataset("multimnist")
    pairs = multimnist.test_pairs(data.x_test, data.y_test)
    lengths, _, reconstructions = multimnist.predict_pairs(net, pairs.images)
    report = multimnist.pair_report(lengths, pairs.labels)
    print(f"MultiMNIST test error: {100 * report['error']:.2f}% ({report['errors']} of {report['count']} pairs: "
          f"both digits must be the two longest capsules); at least one right: "
          f"{100 * report['at_least_one_accuracy']:.2f}%")
    path = save_png(multimnist.real_and_recon(pairs.images[:50], reconstructions[:50]), save_dir / "real_and_recon.png")
    print(f"pairs (top) and their two reconstructions, red and green (bottom): {path}")
    return report


def cmd_test(args) -> None:
    from capsnet.inference import load_network

    net = load_network(args.weights, routings=args.routings)
    report_test(net, args.dataset, output_dir(args.save_dir))
    if getattr(args, "attack", False):  # `train -t` tests too, without this flag
        attack_report(args, net)
    if getattr(args, "affine", False) and net.config.dataset == "multimnist":
        raise UserError("--affine sweeps single digits; a MultiMNIST model reads pairs")
    if getattr(args, "affine", False):  # `train -t` tests too, without this flag
        from capsnet.affine import SWEEP_DIGITS, accuracy_sweeps
        from capsnet.data import load_dataset
        from capsnet.evaluate import class_scores
        from capsnet.imaging import to_uint8

        data = load_dataset(args.dataset or net.config.dataset)
        sweeps = accuracy_sweeps(lambda batch: class_scores(net, to_uint8(batch)), data.x_test[:SWEEP_DIGITS],
                                 data.y_test[:SWEEP_DIGITS])
        print(json.dumps({"model": str(args.weights or "assets/capsnet.keras"), "test_digits": SWEEP_DIGITS,
                          "affine_sweeps": sweeps}))


def attack_report(args, net) -> None:
    """`test --attack`: the attack curves of `net` on its test set, as JSON (what the model cards store)."""
    from capsnet.attack import cli_report

    print(json.dumps(cli_report(net, args.dataset, str(args.weights or "assets/capsnet.keras"))))


def cmd_manipulate(args) -> None:
    from capsnet import multimnist
    from capsnet.config import class_names
    from capsnet.data import load_dataset
    from capsnet.evaluate import MANIPULATION_OFFSETS, manipulation_grid, pick_example, predict_all
    from capsnet.imaging import save_png

    net = load_for_cli(args)
    save_dir = output_dir(args.save_dir)
    dataset = checked_dataset(net, args.dataset)
    data = load_dataset(dataset)
    classes = class_names(net.config)
    candidates = 1000  # enough to hold a correctly classified example of every class
    if dataset == "multimnist":  # a pair holding the digit, both of whose digits the model names
        pairs = multimnist.test_pairs(data.x_test, data.y_test)[:candidates]
        lengths, _, capsules = predict_all(net, pairs.images)
        pick = partial(multimnist.pick_pair, lengths, pairs.labels)
    else:
        lengths, _, capsules = predict_all(net, data.x_test[:candidates])
        pick = partial(pick_example, lengths, data.y_test[:candidates])
    if args.digit != "all" and int(args.digit) >= len(classes):
        raise UserError(f"--digit {args.digit}: this model has {len(classes)} classes (0-{len(classes) - 1})")
    digits = range(len(classes)) if args.digit == "all" else [int(args.digit)]
    for digit in digits:
        index = pick(digit)
        grid = manipulation_grid(net, capsules[index], digit)
        path = save_png(grid, save_dir / f"manipulate-{digit}.png")
        name = f"digit {digit}" if classes[digit] == str(digit) else f"class {digit} ({classes[digit]})"
        print(f"{name} (test {'pair' if dataset == 'multimnist' else 'image'} {index}): "
              f"{net.config.digit_dim} dimensions x {len(MANIPULATION_OFFSETS)} offsets -> {path}")


def cmd_bench(args) -> None:
    if args.photos:
        from capsnet.tools.photos import run_photo_benchmark

        print(json.dumps(run_photo_benchmark(args.digits, args.baseline), indent=2))
        return
    from capsnet.tools.bench import run_benchmark

    results = run_benchmark(args.precision, args.steps, args.batch_size, args.accuracy, args.init, args.epoch,
                            args.reference)
    if args.profile:
        from capsnet.tools.bench import expand_precisions
        from capsnet.tools.stepprofile import run_profile

        results["profile"] = run_profile(expand_precisions(args.precision), args.reference, batch_size=args.batch_size,
                                         cap_steps=args.steps)
    print(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "train")  # the reference has no commands: `capsulenet.py -t -w model.h5`
    try:
        args = build_parser().parse_args(argv)
        if args.command != "data":
            from capsnet import backend

            backend.select(args.backend)
            if getattr(args, "strategy", None) == "multi_worker":
                from capsnet import distribute

                args.distribution = distribute.multi_worker()  # before TensorFlow's first op, as it must be
            backend.quiet_start()
        handler = {"train": cmd_train, "test": cmd_test, "manipulate": cmd_manipulate, "data": cmd_data,
                   "bench": cmd_bench}[args.command]
        handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from capsnet.data import DataUnavailable
        from capsnet.inference import ModelLoadError

        if isinstance(error, (DataUnavailable, ModelLoadError, FileNotFoundError, ValueError)):
            message = str(error).replace("\n", " ")
            print(f"error: {message}", file=sys.stderr)
            return 2
        raise
    return 0
