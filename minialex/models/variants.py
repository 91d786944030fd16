"""AlexNet in four sizes, assembled from minialex's layers.

================  =============  ======================================================  ===========
variant           input          layout                                                  params
================  =============  ======================================================  ===========
``paper``         3×227×227      the 2012 network: 96/256/384/384/256, LRN, groups 2     60,965,224
``d2l``           1×224×224      Dive into Deep Learning's single column, no LRN/groups  46,764,746
``torchvision``   3×224×224      torchvision's 64/192/384/256/256 ("one weird trick")     61,100,840
``mini``          1×28×28 or     the same layer types, sized for digits and CIFAR on a     166,634
                  3×32×32        CPU (see :func:`mini_layers`)                            (1×28×28)
================  =============  ======================================================  ===========

Parameter counts are at the default number of classes (1000, 10, 1000, 10).

Why 227 and not the paper's "224". The paper says 224×224×3, but conv1 (11×11, stride 4, no padding) then
gives (224 − 11)/4 + 1 = 54.25 positions, and its Figure 2 lists 253,440 conv1 neurons, which is no
square layout of 96 maps. Caffe's reference model crops 227: (227 − 11)/4 + 1 = 55, the 96×55×55 that
every later size follows from. torchvision keeps 224 and pads conv1 by 2 instead.

Every layer has the paper's name: ``conv1``, ``relu1``, ``norm1`` (LRN), ``pool1``, ..., ``pool5``,
``flatten``, ``fc6``, ``relu6``, ``drop6``, ``fc7``, ``relu7``, ``drop7``, ``fc8``; parameters are
``"conv1.weight"``, ``"fc8.bias"``, ...

Initialisation (``init=``):

* ``"paper"`` ([P] §5): every weight ~ N(0, 0.01²); biases 1 in conv2, conv4, conv5, fc6 and fc7 (the
  grouped convolutions and the hidden fully connected layers: "this initialization accelerates the
  early stages of learning by providing the ReLUs with positive inputs"), 0 elsewhere.
* ``"he"``: weights ~ N(0, 2 / fan_in) with fan_in = C_in/G · KH · KW (conv) or in (linear), biases 0.
  Each layer then keeps the variance of its input through the ReLUs, whatever the depth and width. The
  output layer (fc8) is the exception: it feeds no ReLU, and at He's scale its logits have a standard
  deviation of order 1, so the untrained network is confidently wrong and its initial loss lies well above
  ln(classes) (4.6 instead of 2.3 for ``mini``). It is drawn N(0, 0.01²), the paper's scale, instead:
  every class starts about equally likely, the initial loss is ≈ ln(classes) (the sanity check the
  trainer prints), and the gradient still reaches every hidden layer through fc8's small weights.

The default is ``"he"`` for every variant, the paper's included. With the paper's fixed std of 0.01,
each layer multiplies the scale of the image-dependent signal by about 0.01·√(fan_in/2) (0.19 at conv1,
whose input is not rectified, then 0.25 to 0.68), so that at the output the part of the logits that
depends on the image is tiny next to the constant part the 1-biases feed in, and training starts on a
plateau. :func:`signal_ratio` measures it (std of the logits across images over their mean size, 4 random
images, ``seed(0)``): 1.4e-4 for ``paper`` with the paper's init, 0.12 with He's (``mini``: 3.6e-5 and
0.12). In practice ``minialex train --init paper`` (the ``mini`` model, otherwise the default recipe)
stayed at chance, 10 % held-out accuracy and a loss of ln 10, for its first two epochs, where He's
initialisation was at 88 % after one. Caffe's replication of the paper met exactly this: its
``bvlc_alexnet`` uses std 0.005 in fc6/fc7 and biases 0.1 "since initialization to 1 gave flat loss".
``init="paper"`` reproduces the published recipe for those who want to see it.

Every draw goes through :func:`minialex.backend.normal`, so :func:`minialex.seed` makes a model
reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import ConfigError, LayerInputError
from minialex.layers import Conv2d, Dropout, Flatten, Layer, Linear, LocalResponseNorm, MaxPool2d, ReLU, Sequential
from minialex.models.summary import format_table, layer_table

VARIANTS = ("mini", "paper", "d2l", "torchvision")
INITS = ("paper", "he")

# The paper's positive biases: the grouped convolutions and the hidden FC layers ([P] §5).
_PAPER_ONE_BIASES = ("conv2", "conv4", "conv5", "fc6", "fc7")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"in_channels": 3, "image_size": 227, "num_classes": 1000, "init": "he"},
    "d2l": {"in_channels": 1, "image_size": 224, "num_classes": 10, "init": "he"},
    "torchvision": {"in_channels": 3, "image_size": 224, "num_classes": 1000, "init": "he"},
    "mini": {"in_channels": 1, "image_size": 28, "num_classes": 10, "init": "he"},
}

MINI_WIDTHS = (32, 64, 96, 256)
"""conv1, conv2, conv3 channels and fc4 units of the ``mini`` variant."""

NamedLayers = list[tuple[str, Layer]]


def variant_defaults(variant: str, in_channels: int | None = None) -> dict[str, Any]:
    """The defaults of ``variant``: ``in_channels``, ``image_size``, ``num_classes``, ``init``, ``input_shape``.

    For ``mini`` the image size follows the channels: 28 for 1 channel (digits), 32 for 3 (CIFAR-10).
    """
    if variant not in _DEFAULTS:
        raise ConfigError(f"unknown model variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    out = dict(_DEFAULTS[variant])
    if in_channels is not None:
        out["in_channels"] = in_channels
    if variant == "mini" and out["in_channels"] == 3:
        out["image_size"] = 32
    out["input_shape"] = (out["in_channels"], out["image_size"], out["image_size"])
    return out


# ---------------------------------------------------------------------------------------------------------
# The four layouts. Each returns the feature layers (convolutions) and a function that builds the
# classifier once the flattened feature size is known.


def paper_features(c: int, dtype: Any) -> NamedLayers:
    """[P] §3.5 with Caffe's exact parameters: conv1 11×11/4; conv2, conv4 and conv5 in 2 groups."""
    lrn = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    return [
        ("conv1", Conv2d(c, 96, 11, stride=4, dtype=dtype)),
        ("relu1", ReLU()),
        ("norm1", LocalResponseNorm(**lrn)),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(96, 256, 5, padding=2, groups=2, dtype=dtype)),
        ("relu2", ReLU()),
        ("norm2", LocalResponseNorm(**lrn)),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(256, 384, 3, padding=1, dtype=dtype)),
        ("relu3", ReLU()),
        ("conv4", Conv2d(384, 384, 3, padding=1, groups=2, dtype=dtype)),
        ("relu4", ReLU()),
        ("conv5", Conv2d(384, 256, 3, padding=1, groups=2, dtype=dtype)),
        ("relu5", ReLU()),
        ("pool5", MaxPool2d(3, 2)),
    ]


def d2l_features(c: int, dtype: Any) -> NamedLayers:
    """d2l.ai §8.1: one column of 96/256/384/384/256, conv1 padded by 1, no LRN, no groups."""
    return [
        ("conv1", Conv2d(c, 96, 11, stride=4, padding=1, dtype=dtype)),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(96, 256, 5, padding=2, dtype=dtype)),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(256, 384, 3, padding=1, dtype=dtype)),
        ("relu3", ReLU()),
        ("conv4", Conv2d(384, 384, 3, padding=1, dtype=dtype)),
        ("relu4", ReLU()),
        ("conv5", Conv2d(384, 256, 3, padding=1, dtype=dtype)),
        ("relu5", ReLU()),
        ("pool5", MaxPool2d(3, 2)),
    ]


def torchvision_features(c: int, dtype: Any) -> NamedLayers:
    """torchvision's ``features``: 64/192/384/256/256, conv1 padded by 2, no LRN, no groups."""
    return [
        ("conv1", Conv2d(c, 64, 11, stride=4, padding=2, dtype=dtype)),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(64, 192, 5, padding=2, dtype=dtype)),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(192, 384, 3, padding=1, dtype=dtype)),
        ("relu3", ReLU()),
        ("conv4", Conv2d(384, 256, 3, padding=1, dtype=dtype)),
        ("relu4", ReLU()),
        ("conv5", Conv2d(256, 256, 3, padding=1, dtype=dtype)),
        ("relu5", ReLU()),
        ("pool5", MaxPool2d(3, 2)),
    ]


def big_classifier(features: int, num_classes: int, dtype: Any, dropout_first: bool) -> NamedLayers:
    """fc6 → fc7 → fc8 with 4096 hidden units and dropout 0.5.

    ``dropout_first=False`` is the paper's (Caffe's, d2l's) order, dropout after each hidden ReLU:
    fc6 → relu6 → drop6 → fc7 → relu7 → drop7 → fc8. ``True`` is torchvision's, dropout on the *input*
    of fc6 and fc7: drop6 → fc6 → relu6 → drop7 → fc7 → relu7 → fc8. Both drop the same activations
    (the flattened features are not dropped by the paper; the fc7 output is not dropped by torchvision).
    """
    fc6 = [("fc6", Linear(features, 4096, dtype=dtype)), ("relu6", ReLU())]
    fc7 = [("fc7", Linear(4096, 4096, dtype=dtype)), ("relu7", ReLU())]
    if dropout_first:
        layers = [("drop6", Dropout(0.5)), *fc6, ("drop7", Dropout(0.5)), *fc7]
    else:
        layers = [*fc6, ("drop6", Dropout(0.5)), *fc7, ("drop7", Dropout(0.5))]
    return [*layers, ("fc8", Linear(4096, num_classes, dtype=dtype))]


def mini_layers(
    c: int, image_size: int, num_classes: int, dtype: Any, widths: tuple[int, int, int, int] = MINI_WIDTHS
) -> NamedLayers:
    """The ``mini`` AlexNet: every layer type of the paper, sized for 28×28 digits and 32×32 CIFAR on a CPU.

    ::

        conv1  32@5×5 pad 2   → relu1 → norm1 → pool1 3/2     1×28×28 → 32×28×28 → 32×13×13
        conv2  64@3×3 pad 1, groups 2 → relu2 → norm2 → pool2  → 64×13×13 → 64×6×6
        conv3  96@3×3 pad 1   → relu3 → pool3 3/2              → 96×6×6  → 96×2×2 = 384
        fc4    384 → 256 → relu4 → drop4 (p = 0.5)
        fc5    256 → classes

    (3×32×32 input: 32×32 → 15 → 15 → 7 → 7 → 3, so fc4 is 864 → 256.) 166,634 parameters for digits,
    4.3 M multiply-adds per image.

    Design, layer by layer, against the paper:

    * conv1 is 5×5 at stride 1 with "same" padding, not 11×11 at stride 4: a digit stroke is 2–3 pixels
      wide and the whole digit about 20, so a stride of 4 would skip strokes. 5×5 sees a stroke with both
      its edges. (A stride-2 conv1 with 48 maps was tried: about 2× cheaper per batch, but it stayed
      near 96.5 % in a short run where this design passed 97.5 %.)
    * Widths grow like the paper's (96 → 256 → 384) but at a third of the size and with three convolutions
      instead of five: 4,000 training digits cannot feed 2 M parameters, and a 128-image forward+backward
      must stay near 0.1 s on two CPU cores.
    * LRN (k = 2, n = 5, α = 1e-4, β = 0.75) after the first two ReLUs, as in the paper; groups = 2 in
      conv2 keeps the two-column idea visible (and halves conv2's cost); overlapping 3/2 max-pooling after
      each stage, as in the paper.
    * One hidden FC layer of 256 with dropout 0.5 instead of two of 4096: on a 2×2×96 feature map a second
      hidden layer adds parameters, not accuracy.

    Measured on the embedded MNIST-5k (4,000 training / 1,000 held-out digits, seed 0), He initialisation and
    the paper's SGD (momentum 0.9, weight decay 5e-4):

    * without augmentation, lr 0.01, batch 128: 97.6 % held-out accuracy after 13 epochs and 97.5 % after
      20 (96.8–97.8 % in between);
    * with ``minialex train``'s defaults (pad-and-crop augmentation, batch 64, lr 0.02 divided by 10 after
      12 of 18 epochs): 98.9 % at the end (99.0 % at best), at about 970 training images/s on two
      otherwise idle cores, 74 s of training.

    ``widths`` (conv1, conv2, conv3, fc4) shrinks or grows it, e.g. to a few hundred parameters for a
    gradient check; conv2's width must be even (groups 2).
    """
    w1, w2, w3, hidden = widths
    lrn = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    features = [
        ("conv1", Conv2d(c, w1, 5, padding=2, dtype=dtype)),
        ("relu1", ReLU()),
        ("norm1", LocalResponseNorm(**lrn)),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(w1, w2, 3, padding=1, groups=2, dtype=dtype)),
        ("relu2", ReLU()),
        ("norm2", LocalResponseNorm(**lrn)),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(w2, w3, 3, padding=1, dtype=dtype)),
        ("relu3", ReLU()),
        ("pool3", MaxPool2d(3, 2)),
    ]
    flat = _flat_size(features, (c, image_size, image_size))
    return [
        *features,
        ("flatten", Flatten()),
        ("fc4", Linear(flat, hidden, dtype=dtype)),
        ("relu4", ReLU()),
        ("drop4", Dropout(0.5)),
        ("fc5", Linear(hidden, num_classes, dtype=dtype)),
    ]


def _flat_size(features: NamedLayers, input_shape: tuple[int, int, int]) -> int:
    rows = layer_table(Sequential(*features), input_shape)
    return math.prod(rows[-1].output_shape)


# ---------------------------------------------------------------------------------------------------------


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

    def forward(self, x: Any) -> Any:
        """Logits (N, num_classes) for images ``x`` of shape (N, *input_shape)."""
        if getattr(x, "ndim", None) != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = tuple(getattr(x, "shape", ()))
            raise LayerInputError(
                f"{self.name}: expected images of shape (N, {', '.join(map(str, self.input_shape))}), got {shape}; "
                f"resize the images or build the model with alexnet({self.variant!r}, in_channels=..., image_size=...)"
            )
        return super().forward(x)

    def summary(self, input_shape: tuple[int, int, int] | None = None) -> str:
        """Each layer's output shape, parameter count, MACs and FLOPs for one image, with totals.

        Computed from the shapes (see :mod:`minialex.models.summary`); nothing is run.
        """
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        title = f"{self.name}: input {'×'.join(map(str, shape))}, {self.num_classes} classes"
        return format_table(layer_table(self, shape), title)

    def __repr__(self) -> str:
        return f"AlexNet(variant={self.variant!r}, input_shape={self.input_shape}) " + super().__repr__()


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"alexnet: {what} must be a positive integer, got {value!r}")
    return int(value)


def alexnet(
    variant: str = "mini",
    num_classes: int | None = None,
    in_channels: int | None = None,
    init: str | None = None,
    dtype: Any = np.float32,
    image_size: int | None = None,
    widths: tuple[int, int, int, int] | None = None,
) -> AlexNet:
    """Build an AlexNet.

    Parameters
    ----------
    variant : ``"mini"`` (default), ``"paper"``, ``"d2l"`` or ``"torchvision"``
    num_classes, in_channels, image_size : None for the variant's defaults (:func:`variant_defaults`).
        ``paper`` and ``d2l`` accept other square image sizes (fc6 then has another input size);
        ``torchvision`` needs 224 (see :mod:`minialex.models.pretrained`).
    init : ``"he"`` or ``"paper"``; None for the variant's default (``"he"``; see the module docstring)
    dtype : float32 (default) or float64
    widths : ``mini`` only: (conv1, conv2, conv3, fc4) widths, default :data:`MINI_WIDTHS`

    Returns
    -------
    AlexNet, in training mode.
    """
    defaults = variant_defaults(variant, None if in_channels is None else _positive_int(in_channels, "in_channels"))
    c = defaults["in_channels"]
    size = defaults["image_size"] if image_size is None else _positive_int(image_size, "image_size")
    classes = defaults["num_classes"] if num_classes is None else _positive_int(num_classes, "num_classes")
    init = defaults["init"] if init is None else init
    if init not in INITS:
        raise ConfigError(f"alexnet: init must be one of {', '.join(INITS)}, got {init!r}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"alexnet: dtype must be float32 or float64, got {np.dtype(dtype)}")
    dtype = np.dtype(dtype).type
    if widths is not None and variant != "mini":
        raise ConfigError(f"alexnet: widths= applies to the 'mini' variant only, not {variant!r}")
    if variant == "torchvision" and size != 224:
        raise ConfigError(
            f"alexnet: the 'torchvision' variant needs 224×224 input, got image_size={size}: torchvision's "
            "AdaptiveAvgPool2d((6, 6)) is the identity only there, and minialex does not implement it"
        )

    if variant == "mini":
        widths = MINI_WIDTHS if widths is None else tuple(_positive_int(w, "widths entry") for w in widths)
        if len(widths) != 4 or widths[1] % 2:
            raise ConfigError(f"alexnet: widths must be 4 positive ints with an even conv2 width, got {widths}")
        try:
            layers = mini_layers(c, size, classes, dtype, widths)
        except LayerInputError as exc:
            raise ConfigError(f"alexnet: image_size={size} is too small for the 'mini' variant ({exc})") from exc
    else:
        builder = {"paper": paper_features, "d2l": d2l_features, "torchvision": torchvision_features}[variant]
        features = builder(c, dtype)
        try:
            flat = _flat_size(features, (c, size, size))
        except LayerInputError as exc:
            raise ConfigError(f"alexnet: image_size={size} is too small for the {variant!r} variant ({exc})") from exc
        classifier = big_classifier(flat, classes, dtype, dropout_first=variant == "torchvision")
        layers = [*features, ("flatten", Flatten()), *classifier]

    config = {"variant": variant, "num_classes": classes, "in_channels": c, "image_size": size, "init": init}
    config["dtype"] = np.dtype(dtype).name
    if variant == "mini":
        config["widths"] = list(widths)
    model = AlexNet(layers, variant=variant, input_shape=(c, size, size), config=config)
    initialise(model, init)  # the one place that defines the initial weights (the layers' own draws are replaced)
    return model


def initialise(model: Sequential, scheme: str) -> Sequential:
    """Draw every conv/linear weight again by ``scheme`` (``"paper"`` or ``"he"``) and set the biases, in place.

    ``"paper"``: W ~ N(0, 0.01²); bias 1 in conv2, conv4, conv5, fc6, fc7, and in the other layers
    of the same role in ``mini`` (its grouped conv2 and its hidden fc4); 0 elsewhere.
    ``"he"``: W ~ N(0, 2/fan_in), bias 0; the output layer (the last conv/linear) W ~ N(0, 0.01²).
    """
    if scheme not in INITS:
        raise ConfigError(f"initialise: scheme must be one of {', '.join(INITS)}, got {scheme!r}")
    one_biases = set(_PAPER_ONE_BIASES)
    if getattr(model, "variant", None) == "mini":
        one_biases = {"conv2", "fc4"}
    weighted = [(name, layer) for name, layer in model.named_layers() if isinstance(layer, (Conv2d, Linear))]
    output_name = weighted[-1][0] if weighted else None
    for name, layer in weighted:
        weight = layer.params["weight"]
        fan_in = weight.size // weight.shape[0]
        std = 0.01 if scheme == "paper" or name == output_name else math.sqrt(2.0 / fan_in)
        weight[...] = backend.normal(weight.shape, std=std, dtype=weight.dtype.type)
        if "bias" in layer.params:
            layer.params["bias"][...] = 1.0 if scheme == "paper" and name in one_biases else 0.0
    return model


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
