"""A baseline CNN to hold CapsNet's results against, trained with the same recipe and small enough to ship.

The paper's baseline (its Table 1) has three convolutional layers (256, 256 and 128 channels, 5x5) and two dense
layers (328 and 192 units): 35.4M parameters against CapsNet's 8.2M, ~140 MB as float32, too big for this repository
and slow to train on a CPU. Ours keeps the classic shape at a smaller width: convolution blocks of 32 and 64 channels
(5x5, ReLU, 2x2 max-pooling), a dense layer of 256 units with dropout 0.5 and a softmax over the classes, 0.86M
parameters, 3.4 MB. It trains as CapsNet does (same data, same random shifts of up to 2 pixels, Adam with the same
learning-rate schedule, same epochs), with cross-entropy in place of the margin and reconstruction losses.

`BaselineCNN` is a registered Keras model like `CapsNet`, its `get_config` its `CNNConfig`, saved as a `.keras`
file. Its `eval` view maps images to class probabilities, which is what `capsnet.evaluate.class_scores` and the
Robustness page compare with CapsNet's capsule lengths.
"""

from __future__ import annotations

import keras
from keras import layers

from capsnet.config import CNNConfig
from capsnet.network import Network


@keras.saving.register_keras_serializable(package="capsnet")
class BaselineCNN(Network):
    """Two views of the same layers: `train` (image -> class probabilities, dropout active in training) and `eval`,
    the same network, called by `BaselineCNN` itself."""

    config_class = CNNConfig

    def build_views(self, config: CNNConfig) -> None:
        self.train = self.eval = _build(config)

    @staticmethod
    def training_example(images, one_hot) -> tuple:
        """The training view's (inputs, targets) for a batch: images in, one-hot classes out."""
        return images, one_hot


def _build(config: CNNConfig) -> keras.Model:
    image = keras.Input(config.input_shape, name="image")
    x = image
    for index, filters in enumerate(config.conv_filters):
        x = layers.Conv2D(filters, config.conv_kernel, padding="same", activation="relu", name=f"conv{index + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{index + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    probabilities = layers.Dense(config.num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(image, probabilities, name="baseline_cnn")


def compile_baseline(model: keras.Model, lr: float) -> None:
    """Adam + cross-entropy, with accuracy: the CapsNet recipe's optimizer, the classic classifier's loss."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="categorical_crossentropy",
                  metrics=["categorical_accuracy"], jit_compile=False)
