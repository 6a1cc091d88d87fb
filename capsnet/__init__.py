"""CapsNet (Sabour, Frosst & Hinton, 2017) in Keras 3, and the core of CapsNet Explorer.

Where things live:

- the network: `layers` (squash, primary capsules, routing-by-agreement), `network` (what both networks share),
  `model` (CapsNet and its `.keras` file), `baseline` (the baseline CNN), `losses` (margin + reconstruction),
  `config` (ModelConfig, CNNConfig, TrainConfig and its parameters' bounds, the dataset, network and precision lists);
- data and training: `data` (offline MNIST and Fashion-MNIST sources), `pipeline` (the NumPy input), `train`
  (recipe, callbacks, resume, graceful stop, NaN), `distribute` (several GPUs or machines), `rundir` (the
  run-directory format and the runs folder), `launch` (training runs as separate processes, devices);
- using a model: `inference` (the one loading path, fast single-image calls), `compiled` (per-backend compiled
  functions), `reference` (models of the CapsNet-Keras reference), `evaluate` (accuracy, manipulation grids),
  `affine` (transformations and accuracy sweeps), `imaging` (digit arrays and PNGs), `preprocess` (drawings, photos
  and scans to MNIST-style input), `sample` (the shipped test digits), `assets` (where shipped files live), `files`
  (files written whole);
- commands: `cli` (`python -m capsnet ...`), `backend` (which backend, its devices, starting TensorFlow quietly);
- `tools/`: the maintainers' tools: `bench` and `stepprofile` (speed), `photos` (rendered photos and their
  benchmark), `publish` (a run into assets/ with its card), `gpu_check` (the prepared GPU check);
- `explorer/`: the Streamlit app's side (navigation, session state, cached resources, figures, model catalog,
  dashboard). Nothing outside it imports Streamlit, Plotly or pandas.
"""

__version__ = "0.1.0"
