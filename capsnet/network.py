"""What both networks are (`capsnet.model.CapsNet`, `capsnet.baseline.BaselineCNN`): a Keras model built from its
config dataclass in a precision, holding views of the same layers (at least `train` and `eval`), saved as that
config, so that a `.keras` file rebuilds the same network with nothing else to go on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import keras

from capsnet.precision import dtype_policy


class Network(keras.Model):
    """A subclass names its `config_class` and builds its views in `build_views`; calling it is calling `eval`."""

    config_class: ClassVar[type]

    def __init__(self, config: Any = None, precision: str = "float32", **kwargs):
        super().__init__(**kwargs)
        cls = self.config_class
        self.model_config = cls.from_dict(config) if isinstance(config, dict) else config or cls()
        with dtype_policy(precision):
            self.build_views(self.model_config)
        self.built = True  # its views are built Functional models

    def build_views(self, config: Any) -> None:
        raise NotImplementedError

    @property
    def config(self) -> Any:
        return self.model_config

    def call(self, images, training=False):
        return self.eval(images, training=training)

    def get_config(self) -> dict:
        return {"name": self.name, "config": dataclasses.asdict(self.model_config)}

    @staticmethod
    def training_example(images, one_hot) -> tuple:
        """The training view's (inputs, targets) for a batch of images [b, h, w, 1] and one-hot labels."""
        raise NotImplementedError
