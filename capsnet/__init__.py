"""CapsNet (Sabour, Frosst & Hinton, 2017) in Keras 3, and the core of CapsNet Explorer.

Where things live:

- the network: `layers` (squash, primary capsules, routing-by-agreement), `model` (CapsNet and its `.keras` file),
  `baseline` (the baseline CNN), `losses` (margin + reconstruction), `config` (ModelConfig, CNNConfig, TrainConfig,
  the dataset, network and precision lists);
- data and training: `data` (offline MNIST and Fashion-MNIST sources), `pipeline` (the NumPy input), `train`
  (recipe, callbacks, resume, graceful stop, NaN), `distribute` (several GPUs or machines), `rundir` (the
  run-directory format and the runs folder), `launch` (training runs as separate processes, devices);
- using a model: `inference` (the one loading path, fast single-image calls), `compiled` (per-backend compiled
  functions), `reference` (models of the CapsNet-Keras reference), `evaluate` (accuracy, manipulation grids),
  `affine` (transformations and accuracy sweeps), `imaging` (digit arrays and PNGs), `preprocess` (drawings, photos
  and scans to MNIST-style input), `photos` (rendered photos for the benchmark), `sample` (the shipped test digits);
- commands: `cli` (`python -m capsnet ...`), `bench`, `publish`, `gpu_check`, `backend` (which backend, its devices,
  starting TensorFlow quietly);
- `explorer/`: the Streamlit app's side (navigation, session state, cached resources, figures, model catalog,
  dashboard). Nothing outside it imports Streamlit, Plotly or pandas.
"""

__version__ = "0.1.0"
