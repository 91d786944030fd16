"""Building an AlexNet from its :class:`~minialex.models.variants.Variant`, with every weight drawn once.

Initialisation (``init=``). The builder gives each convolution and linear layer its initial scale, and the
layer draws its weights once, from N(0, std²):

* ``"paper"`` (the paper, §5): every weight ~ N(0, 0.01²); bias 1 in the layers the variant declares
  (:data:`~minialex.models.variants.PAPER_ONE_BIASES` for the large variants: conv2, conv4, conv5, fc6,
  fc7; conv2 and fc4 for ``mini``), 0 elsewhere.
* ``"he"``: weights ~ N(0, 2 / fan_in) with fan_in = C_in/G · KH · KW (conv) or in (linear), biases 0.
  Each layer then keeps the variance of its input through the ReLUs, whatever the depth and width. The
  output layer (the last fully connected one) is the exception: it feeds no ReLU, and at He's scale its
  logits have a standard deviation of order 1, so the untrained network is confidently wrong and its
  initial loss lies well above ln(classes). It is drawn N(0, 0.01²), the paper's scale, instead: every class
  starts about equally likely, the initial loss is ≈ ln(classes) (the sanity check the trainer prints), and
  the gradient still reaches every hidden layer through the output layer's small weights.

The default is ``"he"`` for every variant, the paper's included. With the paper's fixed std of 0.01, each
layer multiplies the scale of the image-dependent signal by about 0.01·√(fan_in/2), well below 1, so that at
the output the part of the logits that depends on the image is tiny next to the constant part the 1-biases
feed in, and training starts on a plateau. :func:`signal_ratio` measures that (its figures, and what they
mean for training, are in docs/layers-and-models.md). Caffe's replication of the paper met the same
plateau: its ``bvlc_alexnet`` uses std 0.005 in fc6/fc7 and biases 0.1 "since initialization to 1 gave flat
loss". ``init="paper"`` reproduces the published recipe for those who want to see it.

Every draw goes through :func:`minialex.backend.normal`, so :func:`minialex.seed` makes a model
reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex.errors import ConfigError, LayerInputError
from minialex.layers import (
    PAPER_LRN,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
)
from minialex.layers.base import float_dtype
from minialex.models.summary import format_table, layer_table
from minialex.models.variants import (
    INITS,
    ConvStage,
    Variant,
    check_widths,
    get_variant,
    normalised_stages,
    variant_defaults,
)

NamedLayers = list[tuple[str, Layer]]

PAPER_STD = 0.01
"""The paper's weight scale, N(0, 0.01²) (§5); also the output layer's scale under ``init="he"``."""


def initial_scale(init: str, name: str, is_output: bool, one_biases: tuple[str, ...]) -> dict[str, Any]:
    """The ``weight_std`` (None: He's) and ``bias_value`` that scheme ``init`` gives the layer ``name``."""
    if init == "paper":
        return {"weight_std": PAPER_STD, "bias_value": 1.0 if name in one_biases else 0.0}
    return {"weight_std": PAPER_STD if is_output else None, "bias_value": 0.0}


def feature_layers(
    spec: Variant, stages: tuple[ConvStage, ...], in_channels: int, widths: tuple[int, ...], init: str, dtype: Any
) -> NamedLayers:
    """``conv{i}``, ``relu{i}`` and, where the stage has them, ``norm{i}`` and ``pool{i}`` for every stage.

    LRN follows the ReLU (the paper's order); BatchNorm precedes it (Ioffe & Szegedy's and Keras's order),
    with the variant's running-statistics convention.
    """
    layers: NamedLayers = []
    channels = in_channels
    for i, (stage, width) in enumerate(zip(stages, widths, strict=False), start=1):
        scale = initial_scale(init, f"conv{i}", False, spec.paper_one_biases)
        conv = Conv2d(channels, width, stage.kernel, stage.stride, stage.padding, stage.groups, dtype=dtype, **scale)
        layers.append((f"conv{i}", conv))
        if stage.norm == "batchnorm":
            layers.append((f"norm{i}", BatchNorm2d(width, convention=spec.batchnorm_convention, dtype=dtype)))
        layers.append((f"relu{i}", ReLU()))
        if stage.norm == "lrn":
            layers.append((f"norm{i}", LocalResponseNorm(*PAPER_LRN)))
        if stage.pool is not None:
            layers.append((f"pool{i}", MaxPool2d(*stage.pool)))
        channels = width
    return layers


def classifier_layers(
    spec: Variant, features: int, widths: tuple[int, ...], classes: int, init: str, dtype: Any
) -> NamedLayers:
    """The hidden fully connected layers, each with its ReLU and dropout, then the output layer.

    Numbered after the stages: ``fc6 relu6 drop6 fc7 relu7 drop7 fc8`` after five stages, or with
    ``dropout_first`` (torchvision's order) ``drop6 fc6 relu6 drop7 fc7 relu7 fc8``.
    """
    layers: NamedLayers = []
    first = len(spec.stages) + 1
    width_in = features
    for j, width in enumerate(widths[len(spec.stages) :], start=first):
        scale = initial_scale(init, f"fc{j}", False, spec.paper_one_biases)
        fc, relu = (f"fc{j}", Linear(width_in, width, dtype=dtype, **scale)), (f"relu{j}", ReLU())
        drop = (f"drop{j}", Dropout(spec.dropout))
        layers += [drop, fc, relu] if spec.dropout_first else [fc, relu, drop]
        width_in = width
    output = f"fc{first + len(spec.hidden)}"
    scale = initial_scale(init, output, True, spec.paper_one_biases)
    return [*layers, (output, Linear(width_in, classes, dtype=dtype, **scale))]


class AlexNet(Sequential):
    """A :class:`~minialex.layers.Sequential` that knows its variant, input shape and classes.

    Attributes
    ----------
    variant : str
    input_shape : (C, H, W) that :meth:`forward` expects
    num_classes : int
    config : dict that rebuilds the same architecture through ``alexnet(**config)``
    """

    def __init__(self, layers: NamedLayers, *, variant: str, input_shape: tuple[int, int, int], config: dict) -> None:
        super().__init__(*layers)
        self.variant = variant
        self.input_shape = tuple(input_shape)
        self.num_classes = int(config["num_classes"])
        self.config = dict(config)
        self.name = f"AlexNet '{variant}'"

    def _check_images(self, shape: Any) -> None:
        if len(shape) != 4 or tuple(shape[1:]) != self.input_shape:
            raise LayerInputError(
                f"{self.name}: expected images of shape (N, {', '.join(map(str, self.input_shape))}), got "
                f"{tuple(shape)}; resize the images or build the model with alexnet({self.variant!r}, "
                "in_channels=..., image_size=...)"
            )

    def forward(self, x: Any) -> Any:
        """Logits (N, num_classes) for images ``x`` of shape (N, *input_shape)."""
        self._check_images(tuple(getattr(x, "shape", ())))
        return super().forward(x)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, num_classes) for images of shape (N, *input_shape); other shapes are rejected as by :meth:`forward`."""
        self._check_images(self._check_shape(input_shape))
        return super().output_shape(input_shape)

    def summary(self, input_shape: tuple[int, int, int] | None = None) -> str:
        """Each layer's output shape, parameter count, MACs and FLOPs for one image, with totals.

        Computed from the shapes (see :mod:`minialex.models.summary`); nothing is run.
        """
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        title = f"{self.name}: input {'×'.join(map(str, shape))}, {self.num_classes} classes"
        return format_table(layer_table(self, shape), title)

    def __repr__(self) -> str:
        return f"AlexNet(variant={self.variant!r}, input_shape={self.input_shape}) " + super().__repr__()


def alexnet(
    variant: str = "mini",
    num_classes: int | None = None,
    in_channels: int | None = None,
    init: str | None = None,
    dtype: Any = np.float32,
    image_size: int | None = None,
    widths: tuple[int, ...] | None = None,
    norm: str | None = None,
    norm_at: str | None = None,
) -> AlexNet:
    """Build an AlexNet.

    Parameters
    ----------
    variant : ``"mini"`` (default), ``"paper"``, ``"d2l"``, ``"torchvision"`` or ``"keras-cifar10"`` (see
        :mod:`minialex.models.variants`)
    num_classes, in_channels, image_size : None for the variant's defaults (:func:`variant_defaults`).
        ``paper`` and ``d2l`` accept other square image sizes (fc6 then has another input size);
        ``torchvision`` needs 224 (see :mod:`minialex.models.pretrained`).
    init : ``"he"`` or ``"paper"``; None for the variant's default (``"he"``; see the module docstring)
    dtype : float32 (default) or float64
    widths : ``mini``, ``torchvision`` and ``keras-cifar10``: the width of every convolution, optionally
        followed by those of the hidden fully connected layers (e.g. ``(64, 192, 384, 384, 256)`` for
        torchvision, or mini's (conv1, conv2, conv3, fc4), default :data:`MINI_WIDTHS`; conv2's must be even);
        see :func:`~minialex.models.variants.check_widths`
    norm : None (the variant's own normalisation), ``"lrn"``, ``"batchnorm"`` or ``"none"``;
        ``norm_at`` ``"paper"`` (default: after conv1 and conv2) or ``"every"`` (after every convolution).
        See :func:`~minialex.models.variants.normalised_stages`.

    Returns
    -------
    AlexNet, in training mode.
    """
    spec = get_variant(variant)
    if in_channels is not None:
        in_channels = validate.integer(in_channels, "alexnet: in_channels", low=1)
    defaults = variant_defaults(variant, in_channels)
    c = defaults["in_channels"]
    if image_size is not None:
        image_size = validate.integer(image_size, "alexnet: image_size", low=1)
    if num_classes is not None:
        num_classes = validate.integer(num_classes, "alexnet: num_classes", low=1)
    size = defaults["image_size"] if image_size is None else image_size
    classes = defaults["num_classes"] if num_classes is None else num_classes
    init = validate.choice(defaults["init"] if init is None else init, "alexnet: init", INITS)
    try:
        dtype = float_dtype(dtype, "alexnet").type
    except LayerInputError as exc:
        raise ConfigError(str(exc)) from None
    widths = check_widths(spec, widths)
    stages = normalised_stages(spec, norm, norm_at)
    if spec.fixed_image_size is not None and size != spec.fixed_image_size[0]:
        fixed, reason = spec.fixed_image_size
        raise ConfigError(
            f"alexnet: the {variant!r} variant needs {fixed}×{fixed} input, got image_size={size}: {reason}"
        )

    features = feature_layers(spec, stages, c, widths, init, dtype)
    try:
        flat = math.prod(Sequential(*features).output_shape((1, c, size, size))[1:])
    except LayerInputError as exc:
        raise ConfigError(f"alexnet: image_size={size} is too small for the {variant!r} variant ({exc})") from exc
    layers = [*features, ("flatten", Flatten()), *classifier_layers(spec, flat, widths, classes, init, dtype)]

    config = {"variant": variant, "num_classes": classes, "in_channels": c, "image_size": size, "init": init}
    config["dtype"] = np.dtype(dtype).name
    if spec.widths_option:
        config["widths"] = list(widths)
    if norm is not None:
        config["norm"], config["norm_at"] = norm, "paper" if norm_at is None else norm_at
    return AlexNet(layers, variant=variant, input_shape=(c, size, size), config=config)


def signal_ratio(model: AlexNet, batch: int = 2, seed: int = 0) -> float:
    """How much the logits at init depend on the image: std over images / (mean |logit| + tiny).

    A value near 0 means every image gets nearly the same logits (a flat start). Draws its own
    N(0, 1) images from a private generator, so it does not disturb :func:`minialex.seed`.
    """
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.standard_normal((batch, *model.input_shape)).astype(model.params["conv1.weight"].dtype))
    was_training = model.training
    model.eval()
    try:
        logits = backend.to_numpy(model.forward(x)).astype(np.float64)
    finally:
        model.train(was_training)
    return float(logits.std(axis=0).mean() / (np.abs(logits).mean() + 1e-30))
