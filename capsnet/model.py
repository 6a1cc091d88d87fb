"""The CapsNet architecture: conv -> primary capsules -> digit capsules -> masked decoder.

`build_capsnet` returns three Keras models that share their layers (and so their weights):

- `train`: inputs (image, one-hot label) -> (capsule lengths, reconstruction); the decoder sees the true class.
- `eval`: image -> (capsule lengths, reconstruction, capsules); the decoder sees the longest capsule.
- `decoder`: (digit capsules [10, 16], class one-hot) -> image; used to manipulate the latent code.
- `routing`: image -> coupling coefficients of every routing round, [batch, routings, classes, primary capsules].

Weights saved from any of them load into the others, because they are built from one `CapsNet` object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from capsnet.config import ModelConfig
from capsnet.layers import DigitCapsule, Length, Mask, PrimaryCapsule


@dataclass
class CapsNet:
    train: keras.Model
    eval: keras.Model
    decoder: keras.Model
    routing: keras.Model
    config: ModelConfig

    # Model-only weight files go through the eval model: it is never compiled, so no optimizer state is written,
    # and it holds every weighted layer of the network.
    def load_weights(self, path: str | Path) -> None:
        self.eval.load_weights(str(path))

    def save_weights(self, path: str | Path) -> None:
        self.eval.save_weights(str(path))


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


def build_capsnet(config: ModelConfig | None = None) -> CapsNet:
    config = config or ModelConfig()
    image = keras.Input(config.input_shape, name="image")
    label = keras.Input((config.num_classes,), name="label")

    features = layers.Conv2D(config.conv_filters, config.conv_kernel, activation="relu", name="conv1")(image)
    primary = PrimaryCapsule(config.primary_dim, config.primary_channels, config.primary_kernel,
                             config.primary_strides, name="primary_capsules")(features)
    digit_layer = DigitCapsule(config.num_classes, config.digit_dim, config.routings,
                               init_stddev=config.w_init_stddev, name="digit_capsules")
    # One call gives both outputs: Keras cannot build a model from a second call of the layer with other kwargs.
    capsules, couplings = digit_layer(primary, return_couplings=True)
    lengths = Length(name="length")(capsules)

    decoder = build_decoder(config)
    mask = Mask(name="mask")
    train_recon = layers.Identity(name="reconstruction", dtype="float32")(decoder(mask([capsules, label])))
    eval_recon = layers.Identity(name="reconstruction", dtype="float32")(decoder(mask(capsules)))

    train_model = keras.Model([image, label], [lengths, train_recon], name="capsnet_train")
    eval_model = keras.Model(image, [lengths, eval_recon, capsules], name="capsnet_eval")

    capsule_input = keras.Input((config.num_classes, config.digit_dim), name="capsules")
    class_input = keras.Input((config.num_classes,), name="class_one_hot")
    decoder_model = keras.Model([capsule_input, class_input], decoder(mask([capsule_input, class_input])),
                                name="capsnet_decoder")
    routing_model = keras.Model(image, couplings, name="capsnet_routing")
    return CapsNet(train_model, eval_model, decoder_model, routing_model, config)
