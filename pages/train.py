"""Train: launch `python -m capsnet train` runs, watch them live, stop, resume, compare, and explore the result.

Training never happens in this process: `capsnet.launch` starts a separate trainer per run, and everything shown
here is read back from the run directories, so runs survive reloads, other tabs and a restart of the server.
"""

import streamlit as st

from capsnet.explorer.navigation import PAGES, enter_page

enter_page("Train", "🏋️")

# Before anything is drawn: the fragment below reruns alone, and importing lazily inside it raced with other reruns.
from capsnet import launch
from capsnet.config import TrainConfig
from capsnet.data import DataUnavailable
from capsnet.explorer import catalog, dashboard, picker, resources, state
from capsnet.explorer.trainform import continue_inputs, parameter_input, preset_input
from capsnet.inference import ModelLoadError
from capsnet.precision import jax_cpu_note
from capsnet.rundir import ACTIVE_STATES, RunDir, list_runs, runs_root

RESUMABLE = ("stopped", "interrupted", "failed")


# --- actions --------------------------------------------------------------------------------------------------

def flash(kind: str, text: str) -> None:
    st.session_state[state.TRAIN_FLASH] = (kind, text)


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
    available = resources.devices()
    gpus_seen = sum(d.key != launch.CPU for d in available)
    d = launch.train_defaults()  # the CLI's defaults: TrainConfig's

    preset_input(st.columns([2, 3])[0])
    with st.form("launch", border=True):
        st.markdown("**New run**")
        c = st.columns(5)
        st.session_state.setdefault(state.TRAIN_FORM + "label", f"r{d['routings']}")
        label = c[0].text_input("Label", max_chars=40, key=state.TRAIN_FORM + "label",
                                help="The run is named `<timestamp>-<label>` under the runs folder; the label keeps "
                                     "letters, digits, `-` and `_` (anything else becomes `-`).")
        params = {name: parameter_input(column, name)
                  for name, column in zip(("dataset", "epochs", "batch_size", "subset"), c[1:], strict=True)}
        c = st.columns(5)
        params |= {name: parameter_input(column, name)
                   for name, column in zip(("lr", "lr_decay", "lam_recon", "routings", "shift_fraction"), c,
                                           strict=True)}
        c = st.columns(5)
        device = c[0].selectbox("Device", available, format_func=lambda dev: dev.label, key=state.TRAIN_FORM + "device")
        gpu_count = c[1].number_input("GPUs to use", 1, max(gpus_seen, 1), 1, key=state.TRAIN_FORM + "gpus",
                                      disabled=gpus_seen < 2,
                                      help="Several GPUs train together (MirroredStrategy, `--gpus N`), "
                                           "starting at the chosen one.")
        params |= {name: parameter_input(column, name)
                   for name, column in zip(("precision", "log_every", "seed"), c[2:], strict=True)}
        c = st.columns(5, vertical_alignment="bottom")
        params["checkpoint_minutes"] = parameter_input(c[0], "checkpoint_minutes")
        params["debug"] = parameter_input(c[1], "debug")
        st.caption(f"Precision on {device.label}: {resources.auto_precision(device.key != launch.CPU)}.")
        if note := jax_cpu_note(params["precision"], gpus=[] if device.key == launch.CPU else [device.name]):
            st.warning(note.removeprefix("note: "))
        submitted = st.form_submit_button("Launch", type="primary")
    st.caption("One run per device: launching on a device that a run is using is refused (not queued) — stop that "
               "run or wait for it. The trainer is a separate process; it keeps going if you close this tab.")
    if not submitted:
        return
    try:
        chosen = [device.key] if device.key == launch.CPU else launch.gpu_range(device.key, gpu_count, gpus_seen)
        run = launch.launch(params, label=label, devices=chosen, root=root)
    except (launch.LaunchError, ValueError, OSError) as error:
        flash("error", str(error))
    else:
        st.session_state[state.TRAIN_WATCHED] = run.name
        flash("success", f"Launched {run.name}.")


# --- the live view --------------------------------------------------------------------------------------------
# The fragment below redraws every second. Its elements keep their places (variable content goes into fixed
# containers): an element that moves is rebuilt by the browser, and rebuilt charts flicker.

def action_buttons(run: RunDir, run_state: str, root) -> None:
    c = st.columns([1, 1, 1, 2, 3])
    if c[0].button("Stop", key="train.stop", disabled=run_state not in ("queued", "running"),
                   help="Finish the current step, write a checkpoint, end with status `stopped`."):
        act(lambda: launch.stop(run), f"Asked {run.name} to stop.")
    if c[1].button("Resume", key="train.resume", disabled=run_state not in RESUMABLE,
                   help="Continue from the last checkpoint; its curves carry on."):
        act(lambda: launch.resume(run), f"Resumed {run.name}.")
    if c[2].button("Delete", key="train.delete", disabled=run_state in ACTIVE_STATES):
        st.session_state[state.TRAIN_CONFIRM_DELETE] = run.name
    # The explorer lists a run once it no longer trains (its checkpoints stop changing): the same rule here.
    usable = run_state not in ACTIVE_STATES and run.best_model() is not None
    if c[3].button("Use this model in the explorer", key="train.use", disabled=not usable,
                   help="Draw, Reconstruct and Latent then use this run's best weights. Possible once the run "
                        "has finished or stopped with a checkpoint."):
        picker.use_run(run.name)
        flash("success", f"The explorer now uses run {run.name}.")
        st.rerun()
    if picker.chosen_key() == catalog.run_key(run.name):
        c[4].page_link(PAGES["draw"], label="The explorer uses this run: draw a digit", icon=":material/draw:")


def continue_with_changes(run: RunDir, run_state: str) -> None:
    """Resume (or extend a finished run) with more epochs or a new learning-rate schedule: `--resume --epochs
    --lr --lr_decay`."""
    if run_state in ACTIVE_STATES or not run.last_checkpoint.is_file():
        return
    resumes_in = run.checkpoint_state().get("epochs_completed", 0)
    with st.expander("Continue with more epochs or a new learning rate"):
        try:
            config = TrainConfig.from_dict(run.read_config())
        except (TypeError, ValueError, KeyError) as error:
            st.caption(f"The run's config.json cannot be read: {error}")
            return
        changed = continue_inputs(run.name, config, resumes_in)
        ended = run_state == "finished" and changed.get("epochs", config.epochs) <= resumes_in
        if ended:
            st.caption(f"The run has trained all {resumes_in} epochs: give it more to continue.")
        if st.button("Resume with these", key="train.continue", disabled=not changed or ended,
                     help="The new schedule applies from the epoch the run resumes in; earlier epochs keep theirs."):
            act(lambda: launch.resume(run, **changed),
                f"Resumed {run.name} with " + ", ".join(f"{name} {value:g}" for name, value in changed.items()) + ".")


def confirm_delete(run: RunDir, root) -> None:
    if st.session_state.get(state.TRAIN_CONFIRM_DELETE) != run.name:
        return
    st.warning(f"Delete run **{run.name}** and everything in its folder (checkpoints, logs)?")
    yes, no, _ = st.columns([1, 1, 6])
    if yes.button("Yes, delete", key="train.delete_yes", type="primary"):
        st.session_state.pop(state.TRAIN_CONFIRM_DELETE)
        act(lambda: launch.delete(run, root), f"Deleted {run.name}.")
    if no.button("Cancel", key="train.delete_no"):
        st.session_state.pop(state.TRAIN_CONFIRM_DELETE)
        st.rerun()


def show_status_message(run: RunDir, status: dict) -> None:
    run_state = status.get("state")
    if run_state in ("failed", "interrupted"):
        where = run.checkpoint_position()
        resume = f" Resume continues from its checkpoint at {where}." if where else ""
        st.error(f"{status.get('message') or f'The run is {run_state}.'}{resume}")
        tail = run.stdout_tail(15)
        if tail:
            st.code(tail, language=None)
    elif status.get("message"):
        st.caption(status["message"])


def show_reconstructions(run: RunDir) -> None:
    model = run.best_model()
    if model is None:
        st.caption("Reconstructions of fixed test digits appear here after the first epoch's checkpoint.")
        return
    dataset = run.read_config().get("dataset", "mnist")
    try:
        strip, predicted = resources.run_reconstructions(str(model), catalog.file_version(model), dataset)
    except (ModelLoadError, DataUnavailable, OSError) as error:
        st.caption(f"No reconstructions: {error}")
        return
    st.image(strip, caption=f"Fixed test images (top) and their reconstructions (bottom) from `{model.name}`; "
                            f"predicted: {' · '.join(predicted)}")


@st.fragment(run_every=1)
def live_view(root, names: list[str]) -> None:
    """Everything that changes while a run trains, re-read from disk about every second."""
    runs = list_runs(root)
    if [r.name for r in runs] != names:  # a run appeared (another tab, the CLI) or vanished: rebuild the selectors
        st.rerun()
    st.dataframe(dashboard.runs_table(runs), hide_index=True,
                 column_config={"best val acc": st.column_config.NumberColumn(format="%.4f"),
                                "config": st.column_config.TextColumn(width="large")})

    run = RunDir(root / st.session_state[state.TRAIN_WATCHED])
    status = run.read_status()
    run_state = status.get("state", "missing")
    st.subheader(f"{run.name}: :{dashboard.STATE_COLORS.get(run_state, 'gray')}[{run_state}]")
    progress = dashboard.progress(status, run.read_config())
    st.progress(progress.fraction, text=progress.text)
    with st.container():
        show_status_message(run, status)
    action_buttons(run, run_state, root)
    continue_with_changes(run, run_state)
    with st.container():
        confirm_delete(run, root)

    overlay = st.session_state.get(state.TRAIN_OVERLAY, [])
    compared = [run] + [RunDir(root / name) for name in overlay if name != run.name]
    curves = dashboard.curve_figures(compared)
    left, right = st.columns(2)
    left.plotly_chart(curves["step_loss"], key="train.chart.step_loss")
    right.plotly_chart(curves["epoch_loss"], key="train.chart.epoch_loss")
    left.plotly_chart(curves["accuracy"], key="train.chart.accuracy")
    right.plotly_chart(curves["lr"], key="train.chart.lr")
    with st.container():
        show_reconstructions(run)


# --- the page -------------------------------------------------------------------------------------------------

st.title("Train")
root = runs_root()
st.markdown(f"Train CapsNets in the background and watch them learn. Runs live in `{root}`.")
launch_form(root)
if message := st.session_state.pop(state.TRAIN_FLASH, None):
    kind, text = message
    (st.error if kind == "error" else st.success)(text)

runs = list_runs(root)
if not runs:
    st.info("No runs yet: fill in the form and press Launch (a subset of a few thousand images and 1-2 epochs "
            "shows the curves within minutes on a CPU).")
    st.stop()

names = [r.name for r in runs]
if st.session_state.get(state.TRAIN_WATCHED) not in names:
    active = [r.name for r in runs if r.read_status().get("state") in ACTIVE_STATES]
    st.session_state[state.TRAIN_WATCHED] = (active or names)[0]
st.session_state[state.TRAIN_OVERLAY] = [n for n in st.session_state.get(state.TRAIN_OVERLAY, []) if n in names]
c = st.columns(2)
c[0].selectbox("Watch run", names, key=state.TRAIN_WATCHED)
c[1].multiselect("Overlay the curves of", names, key=state.TRAIN_OVERLAY,
                 help="Compare runs: their curves are drawn together.")
live_view(root, names)

with st.expander("Prefer TensorBoard?"):
    st.markdown(f"Tick **Write TensorBoard logs** when launching (`--debug`); each run then writes to "
                f"`<run>/tensorboard/`. Start TensorBoard on all runs with\n\n"
                f"```\ntensorboard --logdir {root}\n```")
