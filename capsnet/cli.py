"""`python -m capsnet train|test|manipulate|data|bench` — the reference's flags, plus a few of our own.

Run without a command, it behaves like the reference script: train, or with `-t` test a saved model.
User mistakes (bad flags, missing files, no data) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMANDS = ("train", "test", "manipulate", "data", "bench")


class UserError(Exception):
    """Something the user can fix; printed as one line, never as a traceback."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def digit_choice(text: str) -> str:
    if text != "all" and text not in {str(d) for d in range(10)}:
        raise argparse.ArgumentTypeError(f"must be 0-9 or 'all', got {text!r}")
    return text


def build_parser() -> Parser:
    from capsnet.backend import BACKENDS  # light: no Keras yet
    from capsnet.config import DATASETS, PRECISIONS, TrainConfig  # light: dataclasses only

    d = TrainConfig()
    parser = Parser(prog="python -m capsnet", description="CapsNet (Sabour et al. 2017) on MNIST.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    def backend_flag(p):
        p.add_argument("--backend", choices=BACKENDS,
                       help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")

    def model_flags(p):
        backend_flag(p)
        p.add_argument("-w", "--weights", help="model file: .keras, a run's .weights.h5, or the reference's .h5 "
                                               "(default: the pretrained model in assets/)")
        p.add_argument("-r", "--routings", type=positive_int, help="routing iterations (default: the model's)")
        p.add_argument("--dataset", default=d.dataset, choices=DATASETS)
        p.add_argument("--save_dir", default="result", help="where images are written (default: result)")
        p.add_argument("--digit", type=digit_choice, default="5", help="capsule to manipulate: 0-9 or all")

    train = commands.add_parser("train", help="train a CapsNet (the default command)")
    train.add_argument("--epochs", type=positive_int, help=f"default {d.epochs}; with --resume, the run's own")
    train.add_argument("--batch_size", type=positive_int, default=d.batch_size)
    train.add_argument("--lr", type=float, default=d.lr, help="initial learning rate")
    train.add_argument("--lr_decay", type=float, default=d.lr_decay, help="lr multiplier per epoch")
    train.add_argument("--lam_recon", type=float, default=d.lam_recon, help="weight of the reconstruction loss")
    train.add_argument("-r", "--routings", type=positive_int,
                       help=f"routing iterations (default {d.model.routings}; with -t: the model's own)")
    train.add_argument("--shift_fraction", type=float, default=d.shift_fraction, help="max shift / image size")
    train.add_argument("--debug", action="store_true", help="write TensorBoard logs into the run directory")
    train.add_argument("--save_dir", help="run directory (default: <runs>/<timestamp>-r<routings>, where <runs> is "
                                          "$CAPSNET_RUNS_DIR or runs/)")
    train.add_argument("-t", "--testing", action="store_true", help="test the -w model instead of training")
    train.add_argument("--digit", type=digit_choice, default="5", help="with -t: capsule to manipulate")
    train.add_argument("-w", "--weights", help="model file to start training from; with -t the model to test")
    train.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    train.add_argument("--subset", type=positive_int, help="train on the first N training images only")
    train.add_argument("--resume", action="store_true", help="continue --save_dir from its last checkpoint")
    train.add_argument("--precision", default=d.precision, choices=PRECISIONS)
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--log_every", type=positive_int, default=d.log_every, help="steps between metrics records")
    train.add_argument("--gpus", type=positive_int, default=None,
                       help="GPUs to train on together: tf.distribute.MirroredStrategy on TensorFlow, "
                            "keras.distribution.DataParallel on JAX (default: one device)")
    train.add_argument("--strategy", choices=("multi_worker",),
                       help="multi_worker: train on the machines listed in $TF_CONFIG together "
                            "(tf.distribute.MultiWorkerMirroredStrategy; each machine runs this same command)")
    backend_flag(train)

    model_flags(commands.add_parser("test", help="test accuracy and real-vs-reconstructed images"))
    model_flags(commands.add_parser("manipulate", help="16x11 latent manipulation grid of a digit capsule"))
    data = commands.add_parser("data", help="find (or fetch) the dataset and report its source")
    data.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    bench = commands.add_parser("bench", help="training samples/s and inference latency, as JSON")
    backend_flag(bench)
    bench.add_argument("--steps", type=positive_int, default=20)
    bench.add_argument("--batch_size", type=positive_int, default=100)
    bench.add_argument("--precision", default=",".join(PRECISIONS),
                       help=f"comma-separated policies to compare (default: {','.join(PRECISIONS)})")
    bench.add_argument("--accuracy", action="store_true",
                       help="also train each policy for one epoch on 6k images (same seed) and compare test accuracy")
    bench.add_argument("--epoch", action="store_true",
                       help="also time a real epoch (train() on 6,000 images, validation on 1,000) per policy")
    bench.add_argument("--reference", metavar="PATH",
                       help="also time the einsum yardstick at PATH (../shared/bench/ref_capsnet.py) in this run")
    bench.add_argument("--init", action="store_true",
                       help="also compare W initialisations: initial capsule length, accuracy after 60 steps")
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
    from capsnet.config import TrainConfig
    from capsnet.inference import load_capsnet
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
        if not (save_dir / "config.json").is_file():
            raise UserError(f"nothing to resume: {save_dir} holds no config.json")
        # A resumed run keeps its own hyperparameters; only --epochs may extend it.
        config = TrainConfig.load(save_dir / "config.json")
        config.epochs = args.epochs or config.epochs
    else:
        config = new_config(args)
        save_dir = Path(args.save_dir or runs_root() / new_run_name(f"r{config.model.routings}"))
        if chief and (save_dir / "config.json").exists():
            raise UserError(f"{save_dir} already holds a run; pass --resume to continue it or pick another --save_dir")
    print(f"run directory: {save_dir}" + ("" if chief else " (written by the chief; this worker trains along)"),
          flush=True)
    net = train(config, save_dir, resume=args.resume, weights=args.weights, distribution=distribution)
    run = RunDir(save_dir)
    if chief and run.read_raw_status().get("state") == "finished":
        # The saved model, on this process alone: a distributed one would wait for workers that have finished.
        report_test(load_capsnet(run.final_model) if distribution else net, config.dataset, save_dir)


def new_config(args):
    from capsnet.config import ModelConfig, TrainConfig

    return TrainConfig(
        dataset=args.dataset, epochs=args.epochs or TrainConfig.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_decay=args.lr_decay,
        lam_recon=args.lam_recon, shift_fraction=args.shift_fraction, subset=args.subset,
        precision=args.precision, seed=args.seed, debug=args.debug, log_every=args.log_every,
        model=ModelConfig(routings=args.routings or ModelConfig.routings),
    )


def load_for_cli(args):
    from capsnet.inference import load_capsnet

    return load_capsnet(args.weights, routings=args.routings)  # -r: the same weights, routed that many times


def report_test(net, dataset: str, save_dir: Path) -> dict:
    from capsnet.data import load_dataset
    from capsnet.evaluate import accuracy_report, predict_all
    from capsnet.imaging import real_over_reconstruction, save_png

    data = load_dataset(dataset)
    lengths, recon, _ = predict_all(net, data.x_test)
    report = accuracy_report(lengths, data.y_test)
    path = save_png(real_over_reconstruction(data.x_test[:50], recon[:50]), save_dir / "real_and_recon.png")
    print(f"test accuracy: {report['accuracy']:.4f}  test error: {100 * report['error']:.2f}% "
          f"({report['errors']} of {report['count']})")
    print(f"real (top) and reconstructed (bottom) images: {path}")
    return report


def cmd_test(args) -> None:
    report_test(load_for_cli(args), args.dataset, Path(args.save_dir))


def cmd_manipulate(args) -> None:
    from capsnet.data import load_dataset
    from capsnet.evaluate import manipulation_grid, pick_example, predict_all
    from capsnet.imaging import save_png

    net = load_for_cli(args)
    data = load_dataset(args.dataset)
    candidates = 1000  # enough to hold a correctly classified example of every digit
    lengths, _, capsules = predict_all(net, data.x_test[:candidates])
    digits = range(10) if args.digit == "all" else [int(args.digit)]
    for digit in digits:
        index = pick_example(lengths, data.y_test[:candidates], digit)
        grid = manipulation_grid(net, capsules[index], digit)
        path = save_png(grid, Path(args.save_dir) / f"manipulate-{digit}.png")
        print(f"digit {digit} (test image {index}): 16 dimensions x 11 offsets -> {path}")


def cmd_bench(args) -> None:
    from capsnet.bench import run_benchmark
    from capsnet.config import PRECISIONS

    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise UserError(f"--precision: unknown policies {sorted(unknown)}")
    print(json.dumps(run_benchmark(precisions, args.steps, args.batch_size, args.accuracy, args.init, args.epoch,
                                   args.reference), indent=2))


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
