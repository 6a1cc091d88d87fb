"""Bad input everywhere but images: flags, run names and model files. Each is refused with one clear message (the
CLI: one `error:` line and exit status 2; the app: an error element, never an exception), and nothing is written
outside the runs and upload folders. Images have their own tests (tests/test_preprocess.py)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest

from capsnet import cli, launch
from capsnet.config import TrainConfig, train_parameters
from capsnet.explorer import catalog, state
from capsnet.explorer.navigation import PAGES
from capsnet.rundir import RUN_NAME, RunDir, list_runs, new_run_name, validate_run_name


def one_error_line(text: str, fragment: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], text
    assert "Traceback" not in text
    return lines[0]


def run_cli(capsys, *args) -> str:
    """`python -m capsnet ARGS` in this process: exit status 2, and its stderr."""
    assert cli.main([str(a) for a in args]) == 2
    return capsys.readouterr().err


def tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- CLI flags ----------------------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["train", "--epochs", "0"], "--epochs: must be an integer in [1, 1000]"),
    (["train", "--epochs", "-3"], "--epochs"),
    (["train", "--epochs", "2.5"], "--epochs: must be an integer"),
    (["train", "--batch_size", "0"], "--batch_size"),
    (["train", "--lr", "0"], "--lr: must be a number in [1e-06, 1]"),
    (["train", "--lr=-0.001"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--lr_decay", "0"], "--lr_decay: must be a number in [0.01, 1]"),
    (["train", "--lr_decay", "1.5"], "--lr_decay"),
    (["train", "--lam_recon=-0.1"], "--lam_recon: must be a number in [0, 100]"),
    (["train", "--lam_recon", "nan"], "--lam_recon"),
    (["train", "--shift_fraction=-0.1"], "--shift_fraction: must be a number in [0, 0.5]"),
    (["train", "--shift_fraction", "0.6"], "--shift_fraction"),
    (["train", "--subset", "0"], "--subset"),
    (["train", "--routings", "0"], "--routings"),
    (["train", "--log_every", "0"], "--log_every"),
    (["train", "--seed=-1"], "--seed: must be an integer in [0, 4294967295]"),
    (["train", "--seed", str(2**32)], "--seed"),
    (["train", "--gpus", "0"], "--gpus"),
    (["train", "--dataset", "cifar10"], "--dataset: must be one of mnist, fashion_mnist, multimnist"),
    (["train", "--precision", "fp8"], "--precision: must be one of auto, mixed_bfloat16, float32"),
    (["train", "--strategy", "parameter_server"], "--strategy: invalid choice"),
    (["train", "-w", "no-such-model.keras"], "file not found"),
    (["test", "--routings", "-1"], "--routings"),
    (["test", "--dataset", "cifar10"], "--dataset"),
    (["manipulate", "--digit", "10"], "--digit"),
    (["data", "--dataset", "imagenet"], "--dataset"),
    (["bench", "--steps", "0"], "--steps"),
    (["bench", "--batch_size", "-5"], "--batch_size"),
    (["bench", "--precision", "float16"], "--precision: use one or more of"),
    (["bench", "--precision", ","], "--precision"),
    (["bench", "--reference", "no-such-yardstick.py"], "--reference: file not found"),
    (["bench", "--photos", "--digits", "0"], "--digits"),
    (["bench", "--photos", "--baseline", "no-such-preprocess.py"], "--baseline: file not found"),
    (["train", "--backend", "theano"], "--backend: invalid choice"),
]


@pytest.mark.parametrize("args, fragment", BAD_FLAGS, ids=[" ".join(args) for args, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line(capsys, args, fragment):
    one_error_line(run_cli(capsys, *args), fragment)


def test_a_bad_flag_from_the_shell_is_one_line_and_starts_nothing(tmp_path):
    """The real entry point, end to end: refused while parsing, before TensorFlow loads or a folder appears."""
    result = subprocess.run([sys.executable, "-m", "capsnet", "train", "--lr", "nan", "--save_dir", tmp_path / "run"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and not result.stdout
    one_error_line(result.stderr, "--lr")
    assert not (tmp_path / "run").exists()


def test_unwritable_save_dirs_are_one_line(capsys, tmp_path, random_model):
    """A parent that is a file, or /proc: mkdir fails even for root (a read-only chmod would not stop root)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for save_dir in (a_file / "run", "/proc/capsnet-run"):
        one_error_line(run_cli(capsys, "train", "--subset", 100, "--epochs", 1, "--save_dir", save_dir),
                       f"cannot create or write to {save_dir}")
    for command in ("test", "manipulate"):
        one_error_line(run_cli(capsys, command, "-w", random_model, "--save_dir", a_file / "out"), "Not a directory")
    assert tree(tmp_path) == {a_file} and a_file.read_text() == "not a folder"


def test_resuming_what_is_not_a_run_is_one_line(capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "config.json").write_text('{"epochs": ')
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    before = tree(tmp_path)
    for name, why in [("missing", "does not exist"), ("a-file", "is a file, not a run directory"),
                      ("empty", "holds no config.json"), ("torn", "is not a run's config"),
                      ("list", "is not a run's config")]:
        one_error_line(run_cli(capsys, "train", "--resume", "--save_dir", tmp_path / name), why)
    assert tree(tmp_path) == before


@pytest.fixture
def train_page(tmp_path, monkeypatch) -> AppTest:
    """The Train page over an empty runs root of this test's own."""
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run()
    at.switch_page(PAGES["train"]).run()
    assert not at.exception and "No runs yet" in at.info[0].value
    return at


def out_of_range(spec) -> list:
    """Values just outside a parameter's range, and the kinds of value no number parameter takes."""
    if spec.switch:
        return []
    if spec.choices:
        return ["", spec.choices[0].upper(), "float16"]
    outside = [spec.low - (1 if spec.integer else spec.low * 1e-3 or 1e-9), math.nan, math.inf]
    outside += [spec.high + (1 if spec.integer else spec.high * 1e-3)] if spec.high is not None else []
    return outside + ([spec.low + 0.5] if spec.integer else [])


def test_every_training_parameter_walks_the_cli_the_page_and_the_launcher_alike(train_page):
    """The field walk: each training parameter (one definition, `capsnet.config.train_parameters`) has the same
    default, the same bounds and the same refusal in the CLI, on the Train page and in the launcher."""
    parameters = train_parameters()
    # lr_changes is no flag: `--resume` with --lr or --lr_decay records it (TrainConfig.with_lr_change).
    assert set(parameters) == set(dataclasses.asdict(TrainConfig())) - {"model", "lr_changes"} | {"routings"}
    cli_defaults = cli.new_config(cli.build_parser().parse_args(["train"]))
    assert cli_defaults == TrainConfig()  # unset ones (lr_decay) resolved the same way
    form = {w.key.removeprefix(state.TRAIN_FORM): w for w in [*train_page.number_input, *train_page.selectbox,
                                                               *train_page.checkbox]
            if w.key.startswith(state.TRAIN_FORM)}
    for name, (spec, default) in parameters.items():
        # the same default
        if default is not None:
            assert (cli_defaults.model if name == "routings" else cli_defaults).__dict__[name] == default, name
        widget = form[name]
        assert widget.value == (0 if default is None else default), name  # subset: 0 = all images
        # the same bounds, accepted by all three
        if spec.choices:
            assert list(widget.options) == list(spec.choices), name
            edges = list(spec.choices)
        elif not spec.switch:
            page_low = 0 if spec.unset else spec.low
            assert (widget.proto.min, widget.proto.has_max and widget.proto.max or None) == (page_low, spec.high), name
            edges = [spec.low, *([spec.high] if spec.high is not None else [])]
        else:
            edges = [True, False]
        for value in edges:
            flags = launch.train_args({name: value})
            assert cli.build_parser().parse_args(["train", *flags])  # what the launcher passes, the CLI takes
        # the same refusal, in the same words
        for value in out_of_range(spec):
            with pytest.raises(launch.LaunchError) as refused:
                launch.train_args({name: value})
            flag = "--routings" if name == "routings" else f"--{name}"
            with pytest.raises(cli.UserError) as cli_refused:
                cli.build_parser().parse_args(["train", f"{flag}={value}"])
            reason = str(refused.value).removeprefix(f"{flag}: ").split(", got")[0]
            assert reason.startswith("must be ") and reason in str(cli_refused.value), (name, value)


# --- run names ----------------------------------------------------------------------------------------------------

BAD_LABELS = ["../x", "../../../../tmp/escaped", "/etc/x", "数字-ü", "x" * 500, "", ".", "..", "a/b\\c",
              "nul\x00byte", "line\nbreak", "~root", "-rf", "C:\\Windows"]


@pytest.fixture
def no_trainer(monkeypatch):
    """Launches that create their run directory but start no process; the run then reads as stopped, so the CPU
    is free for the next launch. Returns the command lines that would have run."""
    commands: list[list[str]] = []

    def start_process(run: RunDir, argv: list[str], devices: list[str]) -> None:
        commands.append(argv)
        run.write_status("stopped", message="no trainer in this test")

    monkeypatch.setattr(launch, "start_process", start_process)
    return commands


def assert_one_run_folder(root: Path, name: str) -> None:
    assert RUN_NAME.fullmatch(name) and (root / name).is_dir() and (root / name).resolve().parent == root.resolve()


@pytest.mark.parametrize("label", BAD_LABELS, ids=repr)
def test_a_label_becomes_one_safe_folder_name(label):
    name = new_run_name(label)
    assert validate_run_name(name) == name and len(name) <= 56  # timestamp, '-', at most 40 of the label
    assert Path(name).name == name and name not in (".", "..")


def test_unicode_labels_keep_their_letters():
    assert new_run_name("Ångström ﬁt").endswith("-Angstrom-fit") and new_run_name("数字-ü").endswith("-u")


@pytest.mark.parametrize("name", ["../x", "/etc/x", ".", "..", "a/b", "a\\b", "x\n", "\nx", "a\x00b", "数字",
                                  "x" * 81, "-x", ".hidden"])
def test_an_explicit_bad_run_name_is_refused(tmp_path, no_trainer, name):
    with pytest.raises(ValueError, match="invalid run name"):
        launch.launch({"epochs": 1}, name=name, root=tmp_path / "runs")
    assert not no_trainer and tree(tmp_path) == set()


def test_launch_puts_every_label_inside_the_runs_root(tmp_path, no_trainer):
    root = tmp_path / "runs"
    for label in BAD_LABELS:
        run = launch.launch({"epochs": 1}, label=label, root=root)
        assert_one_run_folder(root, run.name)
        assert run.read_raw_status()["label"] == label  # what was typed, kept as data, never as a path
    assert list(tmp_path.iterdir()) == [root] and all(path.is_dir() for path in root.iterdir())
    assert len(list_runs(root)) == len(BAD_LABELS) == len(no_trainer)
    assert all(argv[argv.index("--save_dir") + 1].startswith(str(root) + os.sep) for argv in no_trainer)


@pytest.mark.parametrize("params, fragment", [
    ({"lr": float("nan")}, "--lr"), ({"lr": 0.0}, "--lr"), ({"lr_decay": 2.0}, "--lr_decay"),
    ({"subset": -100}, "--subset"), ({"shift_fraction": 0.9}, "--shift_fraction"), ({"routings": 0}, "--routings"),
    ({"dataset": "../../etc"}, "--dataset"), ({"precision": "int4"}, "--precision"),
], ids=lambda value: str(value) if isinstance(value, dict) else None)
def test_launch_refuses_what_the_cli_would_refuse_before_creating_anything(tmp_path, no_trainer, params, fragment):
    with pytest.raises(launch.LaunchError, match=fragment):
        launch.launch(params, label="bad", root=tmp_path / "runs")
    assert not no_trainer and tree(tmp_path) == set()


def test_the_train_page_launches_any_label_into_one_run_folder(train_page, tmp_path, no_trainer):
    """Labels as a crafted client could send them (past the field's 40-character limit): each launch is a run
    folder directly under the runs root, never an exception, never a folder elsewhere."""
    root, at = tmp_path / "runs", train_page
    outside = {tmp_path.parent / "x", tmp_path.parent / "escaped", Path("/etc/x"), Path("/tmp/escaped")}
    assert not any(path.exists() for path in outside)
    for label in BAD_LABELS:
        at.text_input(key=state.TRAIN_FORM + "label").set_value(label)
        next(b for b in at.button if b.label == "Launch").click()
        at.run()
        assert not at.exception, (label, [e.value for e in at.exception])
        launched = at.success[0].value
        assert launched.startswith("Launched ") and launched.endswith(".")
        assert_one_run_folder(root, launched.removeprefix("Launched ").removesuffix("."))
    assert len(list_runs(root)) == len(BAD_LABELS) and {p.name for p in tmp_path.iterdir()} == {"runs"}
    assert not any(path.exists() for path in outside)


# --- model files --------------------------------------------------------------------------------------------------

def keras_archive(path: Path, config: dict | None) -> Path:
    """A zip laid out like a .keras file around `config` (None: a zip without one)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        if config is None:
            archive.writestr("readme.txt", "no model here")
        else:
            archive.writestr("config.json", json.dumps(config))
    return path


def keras2_weights(path: Path, layers: dict[str, dict[str, np.ndarray]]) -> Path:
    """An HDF5 file laid out as Keras 2's `save_weights` writes it (see capsnet/reference.py)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        f.attrs["keras_version"], f.attrs["backend"] = b"2.2.4", b"tensorflow"
        for name, weights in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [key.encode() for key in weights]
            for key, value in weights.items():
                group[key] = value
    return path


MARKER = "capsnet-pwned"  # what a file that ran code of its own would create


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, random_model) -> dict[str, tuple[Path, str]]:
    """Every kind of bad model file: name -> (file, a fragment its refusal must contain on both paths)."""
    folder = tmp_path_factory.mktemp("bad-models")
    good = random_model.read_bytes()
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes | Path, fragment: str = "") -> None:
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        files[name] = (path, fragment or name)

    add("empty.keras", b"")
    add("notes.keras", b"This is a text file, not a model.\n")
    add("truncated.keras", good[:len(good) // 2])
    add("bitrot.keras", good[:len(good) // 2] + bytes(2**20) + good[len(good) // 2 + 2**20:])
    add("hdf5-inside.keras", b"\x89HDF\r\n\x1a\n" + bytes(100))
    add("garbled.h5", b"\x89HDF\r\n\x1a\n" + b"garbage " * 100)
    add("zip-inside.h5", good)
    add("zip-without-config.keras", keras_archive(folder / "zip-without-config.keras", None))
    add("os-system.keras", keras_archive(folder / "os-system.keras", {
        "module": "os", "class_name": "system", "config": {"command": f"touch {folder / MARKER}"}}))
    add("popen.keras", keras_archive(folder / "popen.keras", {
        "module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", str(folder / MARKER)]}}))
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(folder / "lambda.keras")
    add("lambda.keras", folder / "lambda.keras", "Lambda")
    mlp = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)), name="mlp")
    mlp.save(folder / "mlp.keras")
    add("mlp.keras", folder / "mlp.keras", "another kind")
    mlp.save(folder / "mlp-keras-full.h5")  # Keras' legacy whole-model HDF5
    add("mlp-keras-full.h5", folder / "mlp-keras-full.h5", "nothing says which architecture")
    keras2_weights(folder / "keras2-mlp.h5", {"dense_1": {"dense_1/kernel:0": np.zeros((784, 10), np.float32),
                                                          "dense_1/bias:0": np.zeros(10, np.float32)}})
    add("keras2-mlp.h5", folder / "keras2-mlp.h5", "nothing says which architecture")
    keras2_weights(folder / "keras2-capsnet-without-weights.h5", {"conv1": {}, "digitcaps": {}})
    add("keras2-capsnet-without-weights.h5", folder / "keras2-capsnet-without-weights.h5", "has no weights")
    return files


BAD_MODELS = ["empty.keras", "notes.keras", "truncated.keras", "bitrot.keras", "hdf5-inside.keras", "garbled.h5",
              "zip-inside.h5", "zip-without-config.keras", "os-system.keras", "popen.keras", "lambda.keras",
              "mlp.keras", "mlp-keras-full.h5", "keras2-mlp.h5", "keras2-capsnet-without-weights.h5"]


@pytest.mark.parametrize("name", BAD_MODELS)
def test_a_bad_model_file_is_one_line_on_the_cli(capsys, tmp_path, bad_models, name):
    path, fragment = bad_models[name]
    message = one_error_line(run_cli(capsys, "test", "-w", path, "--save_dir", tmp_path / "out"), name)
    assert fragment in message
    assert tree(tmp_path) == set() and not (path.parent / MARKER).exists()


def test_a_folder_or_a_missing_file_is_not_a_model(capsys, tmp_path):
    (tmp_path / "folder.keras").mkdir()
    for path in (tmp_path / "folder.keras", tmp_path / "missing.keras"):
        one_error_line(run_cli(capsys, "manipulate", "-w", path), f"file not found: {path}")


@pytest.mark.slow
def test_a_model_file_from_the_shell_is_one_line(bad_models):
    """End to end, once: the entry point prints TensorFlow nothing and Keras' refusal as one line."""
    path, _ = bad_models["lambda.keras"]
    result = subprocess.run([sys.executable, "-m", "capsnet", "test", "-w", path], cwd=REPO, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 2 and not result.stdout
    one_error_line(result.stderr, "Lambda")


@pytest.fixture
def home(tmp_path, monkeypatch, no_shipped_models) -> AppTest:
    """Home with no model at all (nothing to load between uploads) and an upload folder of this test's own."""
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception and "No trained model exists yet" in at.warning[0].value
    return at


def test_bad_model_uploads_are_messages_and_leave_no_file(home, tmp_path, bad_models):
    uploads = tmp_path / "uploads"
    for name in BAD_MODELS:
        path, fragment = bad_models[name]
        home.file_uploader[0].set_value((name, path.read_bytes(), "application/octet-stream")).run()
        assert not home.exception, (name, [e.value for e in home.exception])
        assert len(home.error) == 1 and home.error[0].value.startswith(f"{name} "), [e.value for e in home.error]
        assert str(uploads) not in home.error[0].value  # the server's folders are not the user's business
        assert fragment in home.error[0].value or "is not a" in home.error[0].value, home.error[0].value
        assert not uploads.exists() or not any(uploads.iterdir()), (name, list(uploads.iterdir()))
        assert not (path.parent / MARKER).exists()
    assert "No trained model exists yet" in home.warning[0].value  # the app is still up, with nothing new on offer
    assert catalog.uploaded_models() == []


def test_an_upload_over_the_limit_is_refused_unwritten(home, tmp_path, monkeypatch):
    """At the real limit on the function, at a small one through the page (the same check either way)."""
    just_over = catalog.ZIP_SIGNATURE + bytes(catalog.MAX_UPLOAD_BYTES + 1 - len(catalog.ZIP_SIGNATURE))
    with pytest.raises(ValueError, match="big.keras is 104,857,601 bytes, over the 100 MB limit for model files"):
        catalog.save_upload(just_over, "big.keras")
    del just_over
    monkeypatch.setattr(catalog, "MAX_UPLOAD_BYTES", 2**20)
    home.file_uploader[0].set_value(("big.keras", catalog.ZIP_SIGNATURE + bytes(2**20), "application/zip")).run()
    assert not home.exception and "over the 1 MB limit" in home.error[0].value
    assert not (tmp_path / "uploads").exists()


def test_a_capsnet_file_fits_the_upload_limit(random_model):
    assert random_model.stat().st_size < catalog.MAX_UPLOAD_BYTES / 2
