"""CapsNet (Sabour, Frosst & Hinton, 2017) in Keras 3, and the core of CapsNet Explorer.

Where things live:

- the network: `layers` (squash, primary capsules, routing-by-agreement), `model` (CapsNet and its `.keras` file),
  `losses` (margin + reconstruction), `config` (ModelConfig, TrainConfig, the dataset and precision lists);
- data and training: `data` (offline MNIST sources), `train` (recipe, callbacks, resume, graceful stop), `rundir`
  (the run-directory format and the runs folder), `launch` (training runs as separate processes, devices);
- using a model: `inference` (the one loading path, fast single-image calls), `reference` (models of the
  CapsNet-Keras reference), `evaluate` (accuracy, manipulation grids), `imaging` (digit arrays and PNGs),
  `preprocess` (drawings and photos to MNIST-style input), `sample` (the shipped test digits);
- commands: `cli` (`python -m capsnet ...`), `bench`, `publish`, `backend` (starting TensorFlow quietly);
- `explorer/`: the Streamlit app's side (navigation, session state, cached resources, figures, model catalog,
  dashboard). Nothing outside it imports Streamlit, Plotly or pandas.
"""

__version__ = "0.1.0"
