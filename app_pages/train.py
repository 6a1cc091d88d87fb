"""Train: launch `python -m capsnet train` runs, watch them live, stop, resume, compare, and explore the result.

Training never happens in this process: `capsnet.launch` starts a separate trainer per run, and everything shown
here is read back from the run directories, so runs survive reloads, other tabs and a restart of the server.
"""

import numpy as np
import streamlit as st

# Heavy imports up front, not lazily inside the fragment's reruns (see capsnet.app_support).
from capsnet import app_support as ui
from capsnet import catalog, dashboard, launch
from capsnet.data import DataUnavailable
from capsnet.inference import ModelLoadError
from capsnet.rundir import ACTIVE_STATES, RunDir, list_runs
from capsnet.sample import load_test_digits

WATCHED = "train.watched"  # the run the live view follows
OVERLAY = "train.overlay"  # other runs whose curves are drawn with it
CONFIRM_DELETE = "train.confirm_delete"  # name of the run awaiting "yes, delete"
FLASH = "train.flash"  # (kind, text) from the last action, shown once
RESUMABLE = ("stopped", "interrupted", "failed")

st.set_page_config(page_title="Train · CapsNet Explorer", page_icon="🏋️", layout="wide")


# --- cached resources -----------------------------------------------------------------------------------------

@st.cache_data(show_spinner="Looking for GPUs…")
def devices() -> list[launch.Device]:
    return launch.list_devices()


@st.cache_data(show_spinner=False)
def fixed_digits(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    digits = load_test_digits(dataset)
    chosen = dashboard.one_per_class(digits.labels)
    return digits.images[chosen] / 255.0, digits.labels[chosen]


@st.cache_data(max_entries=8, show_spinner="Reconstructing test digits from the latest checkpoint…")
def reconstructions(weights: str, mtime: float, dataset: str) -> tuple[np.ndarray, list[int]]:
    images, _ = fixed_digits(dataset)
    model = ui.load_predictor(weights, mtime)  # the explorer's cache: one copy of each model per process
    predictions = [model.predict(image) for image in images]
    strip = dashboard.reconstruction_strip(images, np.stack([p.reconstruction for p in predictions]))
    return strip, [p.digit for p in predictions]


# --- actions --------------------------------------------------------------------------------------------------

def flash(kind: str, text: str) -> None:
    st.session_state[FLASH] = (kind, text)


def act(action, success: str) -> None:
    """Run a launcher action; its refusal is a message for the user, never a traceback."""
    try:
        action()
    except (launch.LaunchError, ValueError, OSError) as error:
        flash("error", str(error))
    else:
        flash("success", success)
    st.rerun()  # the whole page: selectors and the runs list change


# --- the launch form ------------------------------------------------------------------------------------------

def launch_form(root) -> None:
    available = devices()
    gpus_seen = sum(d.key != launch.CPU for d in available)
    d = launch.TRAIN_DEFAULTS
    with st.form("launch", border=True):
        st.markdown("**New run**")
        c = st.columns(5)
        label = c[0].text_input("Label", "r3", max_chars=40, key="train.label",
                                help="The run is named `<timestamp>-<label>` under the runs folder.")
        dataset = c[1].selectbox("Dataset", ["mnist", "fashion_mnist"], key="train.dataset")
        epochs = c[2].number_input("Epochs", 1, 1000, d["epochs"], key="train.epochs")
        batch_size = c[3].number_input("Batch size", 1, 4096, d["batch_size"], key="train.batch_size")
        subset = c[4].number_input("Subset (0 = all images)", 0, 60000, 0, step=100, key="train.subset",
                                   help="Train on the first N training images only: quick trials.")
        c = st.columns(5)
        lr = c[0].number_input("Learning rate", 1e-6, 1.0, d["lr"], format="%.5f", key="train.lr")
        lr_decay = c[1].number_input("LR decay per epoch", 0.01, 1.0, d["lr_decay"], key="train.lr_decay")
        lam_recon = c[2].number_input("lam_recon", 0.0, 100.0, d["lam_recon"], format="%.3f", key="train.lam_recon",
                                      help="Weight of the reconstruction loss (0.392 = the paper's 0.0005 × 784).")
        routings = c[3].number_input("Routings", 1, 10, d["routings"], key="train.routings")
        shift = c[4].number_input("Shift fraction", 0.0, 0.5, d["shift_fraction"], key="train.shift_fraction",
                                  help="Random shifts of up to this fraction of the image size (0.1 = 2 pixels).")
        c = st.columns(5)
        device = c[0].selectbox("Device", available, format_func=lambda dev: dev.label, key="train.device")
        gpu_count = c[1].number_input("GPUs to use", 1, max(gpus_seen, 1), 1, key="train.gpus",
                                      disabled=gpus_seen < 2,
                                      help="Several GPUs train together (MirroredStrategy, `--gpus N`), "
                                           "starting at the chosen one.")
        precision = c[2].selectbox("Precision", ["mixed_bfloat16", "float32"], key="train.precision")
        log_every = c[3].number_input("Log every N steps", 1, 10000, d["log_every"], key="train.log_every")
        seed = c[4].number_input("Seed", 0, 2**31 - 1, d["seed"], key="train.seed")
        debug = st.checkbox("Write TensorBoard logs", key="train.debug")
        submitted = st.form_submit_button("Launch", type="primary")
    st.caption("One run per device: launching on a device that a run is using is refused (not queued) — stop that "
               "run or wait for it. The trainer is a separate process; it keeps going if you close this tab.")
    if not submitted:
        return
    chosen = [device.key]
    if device.key != launch.CPU and gpu_count > 1:
        first = int(device.key.split(":")[1])
        if first + gpu_count > gpus_seen:
            flash("error", f"{gpu_count} GPUs from {device.key.upper()} on: only {gpus_seen} GPU(s) exist")
            return
        chosen = [f"gpu:{i}" for i in range(first, first + gpu_count)]
    params = dict(dataset=dataset, epochs=int(epochs), batch_size=int(batch_size), lr=lr, lr_decay=lr_decay,
                  lam_recon=lam_recon, routings=int(routings), shift_fraction=shift, subset=int(subset) or None,
                  precision=precision, seed=int(seed), log_every=int(log_every), debug=debug)
    try:
        run = launch.launch(params, label=label, devices=chosen, root=root)
    except (launch.LaunchError, ValueError, OSError) as error:
        flash("error", str(error))
    else:
        st.session_state[WATCHED] = run.name
        flash("success", f"Launched {run.name}.")


# --- the live view --------------------------------------------------------------------------------------------
# The fragment below redraws every second. Its elements keep their places (variable content goes into fixed
# containers): an element that moves is rebuilt by the browser, and rebuilt charts flicker.

def action_buttons(run: RunDir, state: str, root) -> None:
    c = st.columns([1, 1, 1, 2, 3])
    if c[0].button("Stop", key="train.stop", disabled=state not in ("queued", "running"),
                   help="Finish the current step, write a checkpoint, end with status `stopped`."):
        act(lambda: launch.stop(run), f"Asked {run.name} to stop.")
    if c[1].button("Resume", key="train.resume", disabled=state not in RESUMABLE,
                   help="Continue from the last checkpoint; its curves carry on."):
        act(lambda: launch.resume(run), f"Resumed {run.name}.")
    if c[2].button("Delete", key="train.delete", disabled=state in ACTIVE_STATES):
        st.session_state[CONFIRM_DELETE] = run.name
    # The explorer lists a run once it no longer trains (its checkpoints stop changing): the same rule here.
    usable = state not in ACTIVE_STATES and run.best_weights() is not None
    if c[3].button("Use this model in the explorer", key="train.use", disabled=not usable,
                   help="Draw, Reconstruct and Latent then use this run's best weights. Possible once the run "
                        "has finished or stopped with a checkpoint."):
        ui.use_run(run.name)
        flash("success", f"The explorer now uses run {run.name}.")
        st.rerun()
    if ui.chosen_key() == catalog.run_key(run.name):
        c[4].page_link(ui.PAGES["draw"], label="The explorer uses this run: draw a digit", icon=":material/draw:")


def confirm_delete(run: RunDir, root) -> None:
    if st.session_state.get(CONFIRM_DELETE) != run.name:
        return
    st.warning(f"Delete run **{run.name}** and everything in its folder (checkpoints, logs)?")
    yes, no, _ = st.columns([1, 1, 6])
    if yes.button("Yes, delete", key="train.delete_yes", type="primary"):
        st.session_state.pop(CONFIRM_DELETE)
        act(lambda: launch.delete(run, root), f"Deleted {run.name}.")
    if no.button("Cancel", key="train.delete_no"):
        st.session_state.pop(CONFIRM_DELETE)
        st.rerun()


def show_status_message(run: RunDir, status: dict) -> None:
    state = status.get("state")
    if state in ("failed", "interrupted"):
        resume = " Resume continues from the last checkpoint." if run.last_checkpoint.is_file() else ""
        st.error(f"{status.get('message') or f'The run is {state}.'}{resume}")
        tail = run.stdout_tail(15)
        if tail:
            st.code(tail, language=None)
    elif status.get("message"):
        st.caption(status["message"])


def show_reconstructions(run: RunDir) -> None:
    weights = run.best_weights()
    if weights is None:
        st.caption("Reconstructions of fixed test digits appear here after the first epoch's checkpoint.")
        return
    dataset = run.read_config().get("dataset", "mnist")
    try:
        strip, predicted = reconstructions(str(weights), weights.stat().st_mtime, dataset)
    except (ModelLoadError, DataUnavailable, OSError) as error:
        st.caption(f"No reconstructions: {error}")
        return
    st.image(strip, caption=f"Fixed test digits (top) and their reconstructions (bottom) from `{weights.name}`; "
                            f"predicted: {' '.join(map(str, predicted))}", output_format="PNG")


@st.fragment(run_every=1)
def live_view(root, names: list[str]) -> None:
    """Everything that changes while a run trains, re-read from disk about every second."""
    runs = list_runs(root)
    if [r.name for r in runs] != names:  # a run appeared (another tab, the CLI) or vanished: rebuild the selectors
        st.rerun()
    st.dataframe(dashboard.runs_table(runs), hide_index=True,
                 column_config={"best val acc": st.column_config.NumberColumn(format="%.4f"),
                                "config": st.column_config.TextColumn(width="large")})

    run = RunDir(root / st.session_state[WATCHED])
    status = run.read_status()
    state = status.get("state", "missing")
    st.subheader(f"{run.name}: :{dashboard.STATE_COLORS.get(state, 'gray')}[{state}]")
    progress = dashboard.progress(status, run.read_config())
    st.progress(progress.fraction, text=progress.text)
    with st.container():
        show_status_message(run, status)
    action_buttons(run, state, root)
    with st.container():
        confirm_delete(run, root)

    compared = [run] + [RunDir(root / name) for name in st.session_state.get(OVERLAY, []) if name != run.name]
    figures = dashboard.curve_figures(compared)
    left, right = st.columns(2)
    left.plotly_chart(figures["step_loss"], key="train.chart.step_loss")
    right.plotly_chart(figures["epoch_loss"], key="train.chart.epoch_loss")
    left.plotly_chart(figures["accuracy"], key="train.chart.accuracy")
    right.plotly_chart(figures["lr"], key="train.chart.lr")
    with st.container():
        show_reconstructions(run)


# --- the page -------------------------------------------------------------------------------------------------

st.title("Train")
root = launch.runs_root()
st.markdown(f"Train CapsNets in the background and watch them learn. Runs live in `{root}`.")
launch_form(root)
if message := st.session_state.pop(FLASH, None):
    kind, text = message
    (st.error if kind == "error" else st.success)(text)

runs = list_runs(root)
if not runs:
    st.info("No runs yet: fill in the form and press Launch (a subset of a few thousand images and 1-2 epochs "
            "shows the curves within minutes on a CPU).")
    st.stop()

names = [r.name for r in runs]
if st.session_state.get(WATCHED) not in names:
    active = [r.name for r in runs if r.read_status().get("state") in ACTIVE_STATES]
    st.session_state[WATCHED] = (active or names)[0]
st.session_state[OVERLAY] = [n for n in st.session_state.get(OVERLAY, []) if n in names]
c = st.columns(2)
c[0].selectbox("Watch run", names, key=WATCHED)
c[1].multiselect("Overlay the curves of", names, key=OVERLAY, help="Compare runs: their curves are drawn together.")
live_view(root, names)

with st.expander("Prefer TensorBoard?"):
    st.markdown(f"Tick **Write TensorBoard logs** when launching (`--debug`); each run then writes to "
                f"`<run>/tensorboard/`. Start TensorBoard on all runs with\n\n"
                f"```\ntensorboard --logdir {root}\n```")
