"""The Train page under Streamlit's AppTest: launch from the form, poll until done, stop, resume, refuse, delete,
and hand a finished run to the explorer. Runs start at app.py (its `st.navigation`), as under `streamlit run`."""

import json
import os
import signal
import time
from pathlib import Path

import h5py
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from train_support import TINY, assert_logged_once, write_tiny_mnist

from capsnet import launch
from capsnet.explorer import catalog, state
from capsnet.explorer.navigation import PAGES
from capsnet.rundir import RunDir, list_runs

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it


@pytest.fixture(autouse=True)
def own_folders(tmp_path, monkeypatch, no_shipped_models):
    """Runs and uploads of this test only; the explorer's default model is whatever a test sets."""
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)


@pytest.fixture
def runs_root(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSNET_DATA", str(write_tiny_mnist(mnist, tmp_path / "data")))
    yield tmp_path / "runs"
    for run in list_runs(tmp_path / "runs"):  # never leave a trainer behind
        pid = run.read_raw_status().get("pid")
        if pid and launch.owns_pid(run, pid):
            os.killpg(pid, signal.SIGKILL)


def page(name: str = "train") -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run()
    at.switch_page(PAGES[name]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def active_source(at: AppTest) -> tuple[str, str]:
    """What Home says the explorer's model is: its source, and the model file named under the card."""
    at.switch_page(PAGES["home"]).run()
    assert not at.exception, [e.value for e in at.exception]
    source = {m.label: m.value for m in at.metric}.get("Source", "")
    return source, next((c.value for c in at.caption if ".keras" in c.value), "")


def fill_and_launch(at: AppTest, label: str, **params) -> None:
    at.text_input(key=state.TRAIN_FORM + "label").input(label)
    for key, value in params.items():
        at.number_input(key=state.TRAIN_FORM + key).set_value(value)
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def heading(at: AppTest) -> str:
    return at.subheader[0].value if len(at.subheader) else ""


def poll(at: AppTest, done, what: str, timeout: float = 150.0) -> None:
    """Rerun the page, as the live fragment does every second, until `done(at)`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if done(at):
            return
        time.sleep(0.5)
    raise TimeoutError(f"page never showed {what}; last heading {heading(at)!r}, table:\n"
                       f"{at.dataframe[0].value.to_string() if len(at.dataframe) else ''}")


def chart_points(at: AppTest) -> dict[str, int]:
    """Points per chart title, read from the Plotly specs the page sent."""
    counts = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"]["title"]["text"].split(" (")[0]
        counts[title] = sum(len([y for y in trace.get("y", []) if y is not None]) for trace in spec["data"])
    return counts


def test_form_launches_a_run_that_trains_to_the_end(runs_root):
    at = page()
    assert "No runs yet" in at.info[0].value
    fill_and_launch(at, "tiny", epochs=1, subset=200, batch_size=50, log_every=1)
    assert "Launched" in at.success[0].value
    name = list_runs(runs_root)[0].name
    assert name.endswith("-tiny") and at.selectbox(key="train.watched").value == name

    poll(at, lambda at: "finished" in heading(at), "the run finished")
    table = at.dataframe[0].value
    assert table.loc[0, "run"] == name and "finished" in table.loc[0, "state"]
    assert table.loc[0, "epochs"] == "1/1" and table.loc[0, "best val acc"] is not None
    points = chart_points(at)
    assert points["Loss per step"] == 3 * 4  # total, margin and reconstruction at each of the 4 steps
    assert points["Accuracy per epoch"] == 2 and points["Learning rate"] == 4
    assert "predicted:" in at.get("image")[0].captions[0]  # the decoder's reconstructions are shown

    at.button(key="train.use").click().run()
    assert at.session_state[state.MODEL] == catalog.run_key(name)
    source, weights = active_source(at)
    assert source == "run" and str(RunDir(runs_root / name).final_model) in weights

    at.switch_page(PAGES["train"]).run()
    at.button(key="train.delete").click().run()
    assert "Delete run" in at.warning[0].value
    at.button(key="train.delete_yes").click().run()
    assert not list_runs(runs_root) and "Deleted" in at.success[0].value


def test_stop_and_resume_from_the_page(runs_root):
    at = page()
    fill_and_launch(at, "stop", **TINY)
    run = list_runs(runs_root)[0]

    # One run per device: a second launch on the CPU is refused with a message, not a traceback.
    fill_and_launch(at, "second", **TINY)
    assert "one run per device" in at.error[0].value and len(list_runs(runs_root)) == 1

    poll(at, lambda at: any(r["kind"] == "step" for r in run.read_metrics()) and "running" in heading(at),
         "training steps")
    assert "step" in at.get("progress")[0].proto.text
    at.button(key="train.stop").click().run()
    assert "Asked" in at.success[0].value
    poll(at, lambda at: "stopped" in heading(at), "the run stopped")
    assert at.button(key="train.resume").disabled is False

    at.button(key="train.resume").click().run()
    assert "Resumed" in at.success[0].value
    poll(at, lambda at: "finished" in heading(at), "the resumed run finished", timeout=200)
    assert_logged_once(run, epochs=2, steps_per_epoch=12)
    assert chart_points(at)["Loss per step"] == 3 * 24

    # A finished run continues with more epochs and a new decay, from the rate its schedule gives epoch 3.
    assert at.button(key="train.continue").disabled  # nothing changed yet
    inputs = {n.key.rsplit(".", 1)[-1]: n for n in at.number_input if n.key.startswith(state.TRAIN_CONTINUE)}
    assert inputs["lr"].value == pytest.approx(0.001 * 0.9**2) and inputs["lr_decay"].value == 0.9
    inputs["lr_decay"].set_value(0.5)
    at.run()
    assert at.button(key="train.continue").disabled  # a finished run continues only with more epochs
    assert any("give it more to continue" in c.value for c in at.caption)
    inputs = {n.key.rsplit(".", 1)[-1]: n for n in at.number_input if n.key.startswith(state.TRAIN_CONTINUE)}
    inputs["epochs"].set_value(3)
    at.run()
    at.button(key="train.continue").click().run()
    assert "Resumed" in at.success[0].value and "lr_decay 0.5" in at.success[0].value
    poll(at, lambda at: "finished" in heading(at) and len(run.epoch_records()) == 3, "the extended run finished",
         timeout=200)
    assert [e["lr"] for e in run.epoch_records()] == pytest.approx([0.001, 0.0009, 0.00081])
    assert run.read_config()["lr_changes"] == [{"epoch": 2, "lr": pytest.approx(0.00081), "lr_decay": 0.5}]
    assert "from epoch 3: lr 0.00081, decay 0.5" in at.dataframe[0].value.loc[0, "config"]


# --- pages over run directories written here, no trainer processes -----------------------------------------------

def fake_run(root: Path, name: str, state: str, epochs: int = 2, steps: int = 3, **status) -> RunDir:
    """A run directory as the trainer leaves it, with made-up but well-formed records."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    run.config_file.write_text(json.dumps({"dataset": "mnist", "epochs": epochs, "batch_size": 50, "lr": 0.001,
                                           "lr_decay": 0.9, "lam_recon": 0.392, "shift_fraction": 0.1,
                                           "subset": 150, "model": {"routings": 3}}))
    for epoch in range(epochs):
        for step in range(1, steps + 1):
            run.append_metrics({"kind": "step", "epoch": epoch, "step": step, "global_step": epoch * steps + step,
                                "loss": 0.5 / (epoch + 1), "margin_loss": 0.4, "recon_loss": 0.2, "lr": 0.001})
        run.append_metrics({"kind": "epoch", "epoch": epoch, "loss": 0.5, "margin_loss": 0.4, "recon_loss": 0.2,
                            "accuracy": 0.5, "val_loss": 0.4, "val_margin_loss": 0.3, "val_recon_loss": 0.2,
                            "val_accuracy": 0.6 + 0.1 * epoch, "lr": 0.001})
    run.write_status(state, epoch=epochs - 1, step=steps, steps_per_epoch=steps, started=1.0e9, **status)
    return run


def test_use_this_model_makes_the_run_the_explorers_model(tmp_path, monkeypatch, random_model):
    """The Train page's button selects the run in the explorer's own model picker: Draw and Home then use it, not
    the default model ($CAPSNET_WEIGHTS here)."""
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    done = fake_run(tmp_path / "runs", "20250101-000000-done", "finished")
    done.checkpoint_dir.mkdir()
    done.best_checkpoint.write_bytes(random_model.read_bytes())
    busy = fake_run(tmp_path / "runs", "20250102-000000-busy", "running", pid=os.getpid())  # alive: still training
    busy.checkpoint_dir.mkdir()
    busy.best_checkpoint.write_bytes(random_model.read_bytes())

    at = page()
    assert at.button(key="train.use").disabled  # the running run: its checkpoints still change
    at.selectbox(key="train.watched").set_value(done.name).run()
    at.button(key="train.use").click().run()
    assert not at.exception and f"now uses run {done.name}" in at.success[0].value
    assert at.session_state[state.MODEL] == catalog.run_key(done.name)

    at.switch_page(PAGES["draw"]).run()
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key=state.MODEL_PICKER).value == catalog.run_key(done.name)
    source, weights = active_source(at)
    assert source == "run" and str(done.best_checkpoint) in weights


def test_overlay_failed_logs_and_interrupted_runs(tmp_path, random_model):
    root = tmp_path / "runs"
    good = fake_run(root, "20250101-000000-good", "finished")
    good.checkpoint_dir.mkdir()
    good.best_checkpoint.write_bytes(random_model.read_bytes())
    failed = fake_run(root, "20250102-000000-bad", "failed", epochs=1, message="ValueError: boom")
    failed.stdout_file.write_text("run directory: x\nTraceback (most recent call last):\nValueError: boom\n")
    cut = fake_run(root, "20250103-000000-cut", "running", pid=2**22 + 1)  # no such process: kill -9'd
    cut.checkpoint_dir.mkdir()  # a checkpoint written in the middle of its third epoch
    cut.save_checkpoint(lambda path: h5py.File(path, "w").close(), epochs_completed=2, best_val_accuracy=0.7,
                        steps_completed=150, epoch_seconds=60.0)

    at = page()
    assert at.selectbox(key="train.watched").value == cut.name  # newest first
    assert "interrupted" in heading(at) and at.button(key="train.resume").disabled is False
    assert "without writing a final status" in at.error[0].value
    assert "Resume continues from its checkpoint at epoch 3, step 150." in at.error[0].value
    states = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["state"], strict=True))
    assert states == {cut.name: "interrupted", failed.name: "failed", good.name: "finished"}

    at.selectbox(key="train.watched").set_value(failed.name).run()
    assert "boom" in at.error[0].value and "ValueError: boom" in at.code[0].value
    assert at.button(key="train.delete").disabled is False

    at.selectbox(key="train.watched").set_value(good.name).run()
    assert "predicted:" in at.get("image")[0].captions[0]  # reconstructions from the best checkpoint
    at.multiselect(key="train.overlay").set_value([failed.name]).run()
    assert not at.exception
    for chart in at.get("plotly_chart"):
        names = [trace.get("name", "") for trace in json.loads(chart.proto.spec)["data"]]
        assert any(n.startswith(good.name) for n in names) and any(n.startswith(failed.name) for n in names)
    assert chart_points(at)["Accuracy per epoch"] == 2 * 2 + 2 * 1


def test_launch_form_starts_at_the_clis_defaults():
    """One definition: every training parameter the form offers starts at TrainConfig's default, the CLI's too."""
    at = page()
    defaults = launch.train_defaults()
    shown = {name: at.session_state[state.TRAIN_FORM + name] for name in defaults}
    assert shown == {name: 0 if value is None else value for name, value in defaults.items()}  # subset: 0 = all


def test_the_variant_presets_fill_the_form_and_launch_their_flags(runs_root):
    """The results table's four variants as presets: each fills Routings, lam_recon and the label, leaves the rest,
    and the run launched from the form is that variant (its config.json)."""
    from capsnet.variants import VARIANTS, variant_of

    at = page()
    at.session_state[state.TRAIN_FORM + "epochs"] = 7  # a value the form holds (say, from the last launch)
    for variant in [*VARIANTS[1:], VARIANTS[0]]:  # v1 last: it changes both flags from v4's, the defaults
        at.selectbox(key=state.TRAIN_PRESET).set_value(variant.name).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = {name: at.number_input(key=state.TRAIN_FORM + name).value for name in ("routings", "lam_recon")}
        assert shown == variant.parameters
        assert at.text_input(key=state.TRAIN_FORM + "label").value == variant.name
        assert at.number_input(key=state.TRAIN_FORM + "epochs").value == 7  # the rest is left as it was
    fill_and_launch(at, "v1", **TINY)
    command = list_runs(runs_root)[0].read_raw_status()["command"]  # the trainer's argv, as launched
    flags = dict(zip(command, command[1:], strict=False))  # each flag -> the word after it
    launched = {"routings": int(flags["--routings"]), "lam_recon": float(flags["--lam_recon"])}
    assert variant_of(launched) == VARIANTS[0] and launched == {"routings": 1, "lam_recon": 0.0}


def test_home_shows_the_variant_table():
    """Home's table: a row per variant, the shipped v4 with its card's figure, the reference's beside it."""
    from capsnet.variants import VARIANTS, result

    at = page("home")
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(table["variant"]) == [v.title for v in VARIANTS]
    v4 = table.set_index("variant").loc["CapsNet-v4"]
    assert v4["error % after 50 epochs"] == f"{result(VARIANTS[3]).card['test_error_percent']:.2f}"
    assert v4["CapsNet-Keras (50 epochs, 3 trials)"] == "0.34"
