"""The CapsNet architecture: conv -> primary capsules -> digit capsules -> masked decoder.

`CapsNet` is one Keras model that holds four views of the same layers (and so the same weights):

- `train`: inputs (image, one-hot label) -> (capsule lengths, reconstruction); the decoder sees the true class. For
  images of several digits (MultiMNIST) the label is one one-hot per digit, and the decoder runs once per digit,
  masked by that digit's label: reconstructions [batch, digits, height, width, 1].
- `eval`: image -> (capsule lengths, reconstruction, capsules); the decoder sees the longest capsule. Calling the
  CapsNet itself is calling `eval`.
- `decoder`: (digit capsules [10, 16], class one-hot) -> image; used to manipulate the latent code.
- `routing`: image -> routing-by-agreement, round by round, as a dict: the primary capsules `primary` [batch, 1152,
  8], their predictions for every class `predictions` [batch, classes, 1152, 16], the coupling coefficients of every
  round `couplings` [batch, routings, classes, 1152] and the digit capsules after every round `capsules`
  [batch, routings, classes, 16].

Saved with `net.save("model.keras")`, a file holds the `ModelConfig` (its `get_config`) and the weights, so
`keras.saving.load_model(path, safe_mode=True)` rebuilds the same network with nothing else to go on.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from capsnet.baseline import BaselineCNN
from capsnet.config import CNNConfig, ModelConfig, digits_per_image
from capsnet.files import written_whole
from capsnet.layers import DigitCapsule, Length, Mask, PrimaryCapsule
from capsnet.network import Network


def build_decoder(config: ModelConfig) -> keras.Sequential:
    height, width, channels = config.input_shape
    hidden = [layers.Dense(units, activation="relu", name=f"dense_{i + 1}") for i, units in
              enumerate(config.decoder_units)]
    return keras.Sequential(
        [
            keras.Input((config.num_classes * config.digit_dim,)),
            *hidden,
            # The output layer runs in float32 so reconstructions and the MSE are exact under mixed precision.
            layers.Dense(height * width * channels, activation="sigmoid", dtype="float32", name="pixels"),
            layers.Reshape(config.input_shape, dtype="float32", name="image"),
        ],
        name="decoder",
    )


@keras.saving.register_keras_serializable(package="capsnet")
class CapsNet(Network):
    """The network of the paper's figures 1 and 2, built from a `ModelConfig` in `precision`."""

    config_class = ModelConfig

    def build_views(self, config: ModelConfig) -> None:
        self.train, self.eval, self.decoder, self.routing = _build_views(config)

    @staticmethod
    def training_example(images, one_hot) -> tuple:
        """The training view reads the label too (its decoder sees the true class); both outputs have targets: the
        margin loss reads the label, the reconstruction loss the (shifted) image itself."""
        return (images, one_hot), {"length": one_hot, "reconstruction": images}

    # A bare `.weights.h5` holds the eval view's weights (it has every weighted layer and no optimizer), as files of
    # this project always have; a `.keras` file goes through Keras' own saving instead and needs neither method.
    def load_weights(self, filepath: str | Path, *args, **kwargs) -> None:
        self.eval.load_weights(str(filepath), *args, **kwargs)

    def save_weights(self, filepath: str | Path, *args, **kwargs) -> None:
        self.eval.save_weights(str(filepath), *args, **kwargs)


def build_network(config: ModelConfig | CNNConfig, precision: str = "float32") -> keras.Model:
    """The network a config describes: a CapsNet, or the baseline CNN (`capsnet.baseline`)."""
    if isinstance(config, CNNConfig):
        return BaselineCNN(config, precision)
    return CapsNet(config, precision)


def save_model(net: keras.Model, path: str | Path) -> Path:
    """Write `net` (a CapsNet or a BaselineCNN) as a `.keras` file: its config and float32 weights, without optimizer
    state (a copy that was never compiled is saved, a third of the size). The file appears whole or not at all:
    written aside, then renamed."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: model files end in .keras")
    clean = type(net)(net.config, name=net.name)
    clean.eval.set_weights(net.eval.get_weights())
    with written_whole(path) as partial:
        clean.save(partial)
    return path


def _build_views(config: ModelConfig) -> tuple[keras.Model, keras.Model, keras.Model, keras.Model]:
    image = keras.Input(config.input_shape, name="image")
    digits = digits_per_image(config.dataset)
    # One digit per image: a one-hot label [classes]. Several (MultiMNIST): one one-hot per digit [digits, classes].
    label = keras.Input((config.num_classes,) if digits == 1 else (digits, config.num_classes), name="label")

    features = layers.Conv2D(config.conv_filters, config.conv_kernel, activation="relu", name="conv1")(image)
    primary = PrimaryCapsule(config.primary_dim, config.primary_channels, config.primary_kernel,
                             config.primary_strides, name="primary_capsules")(features)
    digit_layer = DigitCapsule(config.num_classes, config.digit_dim, config.routings,
                               init_stddev=config.w_init_stddev, name="digit_capsules")
    # One call gives every output: Keras cannot build a model from a second call of the layer with other kwargs.
    predictions, couplings, capsules_per_round = digit_layer(primary, return_trace=True)
    capsules = layers.Identity(name="capsules", dtype="float32")(capsules_per_round[:, -1])  # after the last round
    lengths = Length(name="length")(capsules)

    decoder = build_decoder(config)
    mask = Mask(name="mask")
    if digits == 1:
        train_recon = layers.Identity(name="reconstruction", dtype="float32")(decoder(mask([capsules, label])))
    else:  # the decoder once per digit, masked by that digit's own label: [batch, digits, height, width, channels]
        per_digit = [decoder(mask([capsules, label[:, k]])) for k in range(digits)]
        train_recon = layers.Identity(name="reconstruction", dtype="float32")(keras.ops.stack(per_digit, axis=1))
    eval_recon = layers.Identity(name="reconstruction", dtype="float32")(decoder(mask(capsules)))

    train_model = keras.Model([image, label], [lengths, train_recon], name="capsnet_train")
    eval_model = keras.Model(image, [lengths, eval_recon, capsules], name="capsnet_eval")

    capsule_input = keras.Input((config.num_classes, config.digit_dim), name="capsules")
    class_input = keras.Input((config.num_classes,), name="class_one_hot")
    decoder_model = keras.Model([capsule_input, class_input], decoder(mask([capsule_input, class_input])),
                                name="capsnet_decoder")
    routing_model = keras.Model(image, {"primary": primary, "predictions": predictions, "couplings": couplings,
                                        "capsules": capsules_per_round}, name="capsnet_routing")
    return train_model, eval_model, decoder_model, routing_model
