"""CapsNet (Sabour, Frosst & Hinton, 2017) in Keras 3.

Where things live: `layers` (squash, routing), `model` (the network), `losses` (margin + reconstruction),
`data` (MNIST sources), `train` (recipe and callbacks), `rundir` (run-directory format), `evaluate` (test and
manipulation grids), `inference` (model loading, fast single-image calls), `cli`.
"""

__version__ = "0.1.0"
