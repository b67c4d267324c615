"""Keras 3 denoising networks: the seed's Dense denoiser and step-conditioned U-Nets (1D and 2D).

Every network built by :func:`build_network` takes ``x_t`` (B, *spatial, C) and ``t`` (B,) (real-valued
steps) and returns the predicted noise ``eps`` with the shape of ``x_t``. Only registered layers are
used (no Lambda), so a model is rebuilt from ``config.json`` and its weights file alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from keras.layers import Concatenate, Dense, Flatten, Input, Reshape  # noqa: E402
from keras.models import Model  # noqa: E402

from diffuse_cli.config import ModelConfig  # noqa: E402
from diffuse_cli.encoding import angle_rates, sinusoidal_step_encoding  # noqa: E402


# --------------------------------------------------------------------------------------------------
# The seed chapter's two example builders, kept verbatim (9.2.3 and 9.2.6) except for int(np.prod(...)).
# --------------------------------------------------------------------------------------------------
def build_denoising_network(input_shape):
    """
    Builds a simple denoising network.

    Parameters:
    - input_shape: Shape of the input data.

    Returns:
    - A Keras model for denoising.
    """
    inputs = Input(shape=input_shape)
    x = Flatten()(inputs)
    x = Dense(128, activation='relu')(x)
    x = Dense(int(np.prod(input_shape)), activation='linear')(x)  # int(): Keras 3 rejects numpy ints
    outputs = Reshape(input_shape)(x)
    return Model(inputs, outputs)


def build_full_diffusion_model(input_shape, d_model):
    """
    Builds the full diffusion model.

    Parameters:
    - input_shape: Shape of the input data.
    - d_model: Dimensionality of the model.

    Returns:
    - A Keras model for the full diffusion process.
    """
    # Input layers for data and step encoding
    data_input = Input(shape=input_shape)
    step_input = Input(shape=(d_model,))
    # Flatten and concatenate inputs
    x = Flatten()(data_input)
    x = Concatenate()([x, step_input])
    # Denoising network layers
    x = Dense(128, activation='relu')(x)
    x = Dense(int(np.prod(input_shape)), activation='linear')(x)  # int(): Keras 3 rejects numpy ints
    outputs = Reshape(input_shape)(x)
    return Model([data_input, step_input], outputs)


# --------------------------------------------------------------------------------------------------
# Step encodings
# --------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable("diffuse_cli")
class SinusoidalStepEncoding(layers.Layer):
    """The seed's sinusoidal encoding of real-valued steps t (B,) -> (B, dim).

    ``angle = t / 10000^(2 * (i // 2) / dim)``; ``enc[:, 2k] = sin(angle)``, ``enc[:, 2k+1] = cos(angle)``.
    Computed in float64 (angles reach T = 1000 rad, where float32 loses ~1e-4) and returned as float32,
    so it equals :func:`diffuse_cli.encoding.sinusoidal_step_encoding` to 1e-7.
    """

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self._rates = angle_rates(self.dim).astype(np.float64)[None, :]
        self._even = (np.arange(self.dim) % 2 == 0)[None, :]

    def call(self, t):
        t = ops.cast(ops.reshape(t, (-1, 1)), "float64")
        angle = t * ops.convert_to_tensor(self._rates, dtype="float64")
        enc = ops.where(ops.convert_to_tensor(self._even), ops.sin(angle), ops.cos(angle))
        return ops.cast(enc, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable("diffuse_cli")
class LearnedStepEncoding(layers.Layer):
    """A learned table of step encodings, rows t = 0..T, read at real t by linear interpolation.

    ``enc(t) = (1 - f) * table[floor t] + f * table[floor t + 1]``, ``f = t - floor t``, t clipped to [0, T].
    The table starts as the sinusoidal encoding, so training begins where the seed's encoding is.
    """

    def __init__(self, timesteps: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.timesteps = int(timesteps)
        self.dim = int(dim)

    def build(self, input_shape) -> None:
        self.table = self.add_weight(
            name="table", shape=(self.timesteps + 1, self.dim), initializer="zeros", trainable=True
        )
        init = sinusoidal_step_encoding(np.arange(self.timesteps + 1), self.dim).astype(np.float32)
        self.table.assign(init)

    def call(self, t):
        t = ops.clip(ops.reshape(ops.cast(t, "float32"), (-1,)), 0.0, float(self.timesteps))
        lo = ops.floor(t)
        frac = ops.expand_dims(t - lo, -1)
        lo_i = ops.cast(lo, "int32")
        hi_i = ops.minimum(lo_i + 1, self.timesteps)
        rows_lo = ops.take(self.table, lo_i, axis=0)
        rows_hi = ops.take(self.table, hi_i, axis=0)
        return rows_lo * (1.0 - frac) + rows_hi * frac

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "timesteps": self.timesteps, "dim": self.dim}


@keras.saving.register_keras_serializable("diffuse_cli")
class ScaleShift(layers.Layer):
    """FiLM conditioning: ``h * (1 + scale) + shift`` with (scale, shift) = split(emb) broadcast over space.

    Inputs ``[h (B, *spatial, c), emb (B, 2c)]``; this is how the step encoding reaches every block.
    """

    def call(self, inputs):
        h, emb = inputs
        c = h.shape[-1]
        rank = len(h.shape) - 2
        emb = ops.reshape(emb, (-1,) + (1,) * rank + (2 * c,))
        scale, shift = emb[..., :c], emb[..., c:]
        return h * (1.0 + scale) + shift

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable("diffuse_cli")
class GroupNormalization(layers.GroupNormalization):
    """Keras' GroupNormalization (same weights, same result) computed with channel-last reductions.

    Same class name on purpose: Keras files weights under the snake-cased class name
    (``layers/group_normalization_3/vars``), so models saved before this layer existed still load.

    ``mu_g = mean over space and the group's channels of x``; ``var_g = mean of (x - mu_g)^2`` likewise;
    ``y = (x - mu_g) / sqrt(var_g + eps) * gamma + beta``. Keras reshapes to (B, *spatial, G, C/G) and
    reduces over that 5-D view, which is slow on CPU; here each channel is reduced over space first (a
    contiguous reduction) and only the (B, C) means are grouped. Profile: GroupNorm was 45 % of a 512x512
    call; this layer makes the whole network ~1.4x faster on CPU (bench/README.md).
    """

    def _group_mean(self, t):
        """(B, 1.., C) per-channel statistics -> the mean of each group, broadcast back to (B, 1.., C)."""
        c = t.shape[-1]
        g = ops.reshape(t, (-1, self.groups, c // self.groups))
        g = ops.broadcast_to(ops.mean(g, axis=-1, keepdims=True), ops.shape(g))
        return ops.reshape(g, ops.shape(t))

    def call(self, inputs):
        x = inputs
        if x.dtype in ("float16", "bfloat16"):
            x = ops.cast(x, "float32")  # statistics in float32 under mixed precision, as Keras does
        axes = tuple(range(1, len(x.shape) - 1))
        centred = x - self._group_mean(ops.mean(x, axis=axes, keepdims=True))
        var = self._group_mean(ops.mean(ops.square(centred), axis=axes, keepdims=True))
        inv = ops.rsqrt(var + self.epsilon)
        if self.scale:
            inv = inv * self.gamma
        y = centred * inv
        if self.center:
            y = y + self.beta
        return ops.cast(y, inputs.dtype)


def step_encoding_layer(config: ModelConfig) -> layers.Layer:
    """The configured encoding layer, always named ``step_encoding`` (LoadedModel looks it up by name)."""
    if config.embedding == "learned":
        return LearnedStepEncoding(config.timesteps, config.embedding_dim, name="step_encoding", dtype="float32")
    return SinusoidalStepEncoding(config.embedding_dim, name="step_encoding", dtype="float32")


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------
def build_network(config: ModelConfig, mixed_precision: bool = False) -> keras.Model:
    """Build the network a (validated) model config describes; inputs ``x_t``, ``t``, output ``eps``.

    ``mixed_precision``: Keras' ``mixed_float16`` policy (float16 compute, float32 variables, so the same
    weights file loads either way), for GPUs. The step encoding, GroupNorm statistics and the output layer
    stay float32: angles up to T = 1000 rad and the predicted noise need float32's precision.
    """
    builders = {"dense": _build_dense, "unet": _build_unet}
    if config.arch not in builders:
        raise ValueError(f"unknown arch {config.arch!r}")
    previous = keras.config.dtype_policy()
    if mixed_precision:  # layers read the global policy when created; restored at once
        keras.config.set_dtype_policy("mixed_float16")
    try:
        return builders[config.arch](config)
    finally:
        keras.config.set_dtype_policy(previous)


def _build_dense(config: ModelConfig) -> keras.Model:
    """The seed's Dense denoiser with its step encoding computed inside the model.

    ``eps = Reshape(Dense_n(relu(Dense_h([flatten(x_t), enc(t)]))))`` for fixed-length 1D signals.
    """
    length, channels = int(config.length or 0), config.channels
    x_in = Input(shape=(length, channels), name="x_t")
    t_in = Input(shape=(), name="t")
    enc = step_encoding_layer(config)(t_in)
    x = Flatten(name="flatten")(x_in)
    x = Concatenate(name="concat_step")([x, enc])
    x = Dense(config.dense_hidden, activation="relu", name="hidden")(x)
    if config.activation_noise > 0:
        x = layers.GaussianNoise(config.activation_noise, name="hidden_noise")(x)
    x = Dense(length * channels, activation="linear", name="out", dtype="float32")(x)
    eps = Reshape((length, channels), name="eps", dtype="float32")(x)
    return Model([x_in, t_in], eps, name="dense_denoiser")


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest of 8, 4, 2, 1 that divides the channel count."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class _UNetBuilder:
    """Functional-API helpers shared by the 1D and 2D U-Net (only the layer classes depend on rank)."""

    def __init__(self, config: ModelConfig) -> None:
        self.rank = config.rank
        self.kernel = config.kernel
        self.noise = config.activation_noise
        self.conv_cls = layers.Conv2D if self.rank == 2 else layers.Conv1D
        self.up_cls = layers.UpSampling2D if self.rank == 2 else layers.UpSampling1D
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def conv(self, x, filters: int, kernel: int | None = None, strides: int = 1, zero: bool = False):
        return self.conv_cls(
            filters,
            kernel or self.kernel,
            strides=strides,
            padding="same",
            kernel_initializer="zeros" if zero else "glorot_uniform",
            name=self.name("conv"),
        )(x)

    def norm_act(self, x):
        x = GroupNormalization(groups=_groups(x.shape[-1]), epsilon=1e-5, name=self.name("gn"))(x)
        return layers.Activation("silu", name=self.name("silu"))(x)

    def res_block(self, x, temb, filters: int):
        """``h = conv(silu(gn(x))); h = conv(silu(film(gn(h), temb))); out = skip(x) + h`` (zero-init 2nd conv)."""
        h = self.norm_act(x)
        h = self.conv(h, filters)
        emb = Dense(2 * filters, name=self.name("temb_proj"))(temb)
        h = GroupNormalization(groups=_groups(filters), epsilon=1e-5, name=self.name("gn"))(h)
        h = ScaleShift(name=self.name("film"))([h, emb])
        h = layers.Activation("silu", name=self.name("silu"))(h)
        if self.noise > 0:
            # Regularises like dropout but keeps every unit; Keras applies it only when training=True.
            h = layers.GaussianNoise(self.noise, name=self.name("act_noise"))(h)
        h = self.conv(h, filters, zero=True)
        skip = x if x.shape[-1] == filters else self.conv(x, filters, kernel=1)
        return layers.Add(name=self.name("res"))([skip, h])


def _build_unet(config: ModelConfig) -> keras.Model:
    """Conditioned residual U-Net, rank 1 or 2.

    ``temb = silu(W2 silu(W1 enc(t)))``; encoder levels of ``blocks`` residual blocks (GroupNorm, SiLU,
    FiLM with temb) then a stride-2 conv; a middle of two blocks; decoder levels: nearest upsample + conv,
    concatenate the encoder skip, residual blocks; GroupNorm, SiLU, zero-initialised output conv
    (so the untrained network predicts eps = 0 and the loss starts at exactly E[eps^2] = 1).
    """
    b = _UNetBuilder(config)
    widths, blocks, channels = list(config.widths), config.blocks, config.channels
    spatial = (None,) * b.rank
    x_in = Input(shape=spatial + (channels,), name="x_t")
    t_in = Input(shape=(), name="t")

    temb_dim = 4 * widths[0]
    enc = step_encoding_layer(config)(t_in)
    temb = Dense(temb_dim, activation="silu", name="time_mlp_1")(enc)
    temb = Dense(temb_dim, name="time_mlp_2")(temb)
    temb = layers.Activation("silu", name="time_silu")(temb)

    x = b.conv(x_in, widths[0])
    skips = []
    for level, width in enumerate(widths):
        for _ in range(blocks):
            x = b.res_block(x, temb, width)
        if level < len(widths) - 1:
            skips.append(x)
            x = b.conv(x, width, strides=2)  # downsample
    for _ in range(2):
        x = b.res_block(x, temb, widths[-1])
    for level in range(len(widths) - 2, -1, -1):
        width = widths[level]
        x = b.up_cls(size=2, name=b.name("up"))(x)
        x = b.conv(x, width)
        x = layers.Concatenate(name=b.name("skip"))([x, skips.pop()])
        for _ in range(blocks):
            x = b.res_block(x, temb, width)
    x = b.norm_act(x)
    eps = b.conv_cls(channels, b.kernel, padding="same", kernel_initializer="zeros", name="eps", dtype="float32")(x)
    return Model([x_in, t_in], eps, name=f"unet{b.rank}d")
