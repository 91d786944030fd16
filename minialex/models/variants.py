"""AlexNet in four sizes, each declared as data: its input, its convolution stages, its classifier.

================  =============  ======================================================  ===========
variant           input          layout                                                  params
================  =============  ======================================================  ===========
``paper``         3×227×227      the 2012 network: 96/256/384/384/256, LRN, groups 2     60,965,224
``d2l``           1×224×224      Dive into Deep Learning's single column, no LRN/groups  46,764,746
``torchvision``   3×224×224      torchvision's 64/192/384/256/256 ("one weird trick")     61,100,840
``mini``          1×28×28 or     the same layer types, sized for digits and CIFAR on a     166,634
                  3×32×32        CPU (see :data:`MINI`)                                  (1×28×28)
``keras-cifar10`` 3×32×32        the Keras CIFAR-10 tutorial's: 3×3 convolutions,        9,638,474
                                 BatchNorm after conv1 and conv2, fc 2048-2048           + 704 buffers
================  =============  ======================================================  ===========

Parameter counts are at the default number of classes (1000, 10, 1000, 10, 10); "buffers" are BatchNorm's
running statistics (Keras's "non-trainable params"), which no optimiser updates.

A variant is a :class:`Variant`: a list of :class:`ConvStage` (one convolution with its ReLU, and the LRN
and max-pooling that follow it where the variant has them), the widths of the hidden fully connected layers
and a few flags. :func:`minialex.models.alexnet` turns it into layers with the paper's names: stage i gives
``conv{i}``, ``relu{i}``, ``norm{i}`` (LRN), ``pool{i}``; then ``flatten``; then the fully connected layers
continue the count (``fc6``, ``relu6``, ``drop6``, ``fc7``, ... ``fc8`` after five stages; ``fc4``, ``fc5``
after the ``mini`` variant's three). A stage's normalisation is ``norm{i}``: LRN after the ReLU (where the paper
puts it, §3.3), BatchNorm between the convolution and the ReLU (where Ioffe & Szegedy and the Keras tutorial
put it): ``conv{i} norm{i} relu{i}``. Parameters are ``"conv1.weight"``, ``"fc8.bias"``, ... Adding a variant
is adding one ``Variant(...)`` to :data:`REGISTRY`.

Why 227 and not the paper's "224". The paper says 224×224×3, but conv1 (11×11, stride 4, no padding) then
gives (224 − 11)/4 + 1 = 54.25 positions, and its Figure 2 lists 253,440 conv1 neurons, which is no
square layout of 96 maps. Caffe's reference model crops 227: (227 − 11)/4 + 1 = 55, the 96×55×55 that
every later size follows from. torchvision keeps 224 and pads conv1 by 2 instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from minialex import validate
from minialex.errors import ConfigError

OVERLAPPING_POOL = (3, 2)
"""The paper's overlapping max-pooling (§3.4): 3×3 windows at stride 2."""

PAPER_ONE_BIASES = ("conv2", "conv4", "conv5", "fc6", "fc7")
"""The layers whose biases the paper's initialisation sets to 1 (§5): the grouped convolutions and the
hidden fully connected layers ("this initialization accelerates the early stages of learning by providing
the ReLUs with positive inputs"); every other bias starts at 0."""


NORMS = ("lrn", "batchnorm", "none")
"""What ``alexnet(..., norm=...)`` puts in the normalised stages: the paper's LRN, BatchNorm, or nothing."""

NORM_PLACES = ("paper", "every")
"""Where ``alexnet(..., norm=..., norm_at=...)`` normalises: after conv1 and conv2 (where the paper has LRN),
or after every convolution."""


@dataclass(frozen=True)
class ConvStage:
    """One convolution stage: ``conv{i}`` → ``relu{i}`` → ``norm{i}`` (LRN) → ``pool{i}`` (if ``pool``), or with
    BatchNorm ``conv{i}`` → ``norm{i}`` → ``relu{i}`` → ``pool{i}``.

    ``channels`` is the convolution's output width; ``norm`` is ``"lrn"``, ``"batchnorm"`` or None;
    ``pool`` is (kernel, stride) of a max-pooling or None.
    """

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    norm: str | None = None
    pool: tuple[int, int] | None = None


@dataclass(frozen=True)
class Variant:
    """Everything that distinguishes one AlexNet from another.

    Attributes
    ----------
    name : the name ``alexnet(name)`` takes
    in_channels, image_size, num_classes : the defaults of the input and the output
    stages : the convolution stages, in order
    hidden : widths of the hidden fully connected layers (each followed by a ReLU and dropout)
    dropout_first : False: dropout after each hidden ReLU (the paper's, Caffe's, d2l's order); True:
        dropout on the *input* of each hidden layer (torchvision's order)
    paper_one_biases : the layers ``init="paper"`` gives bias 1 (the same roles as :data:`PAPER_ONE_BIASES`)
    dropout : the drop probability of every dropout layer (the paper's 0.5, §4.2)
    image_size_by_channels : (channels, size) pairs: default image sizes that depend on ``in_channels``
        (``mini``: 32 for 3 channels, CIFAR-10)
    fixed_image_size : the one image size the variant accepts (None: any that fits), and why
    widths_option : whether ``alexnet(..., widths=...)`` may resize the stages and hidden layers
    batchnorm_convention : the running-statistics convention of its BatchNorm layers, ``"pytorch"`` or
        ``"keras"`` (see :mod:`minialex.layers.batchnorm`)
    """

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    stages: tuple[ConvStage, ...]
    hidden: tuple[int, ...]
    dropout_first: bool = False
    dropout: float = 0.5
    paper_one_biases: tuple[str, ...] = PAPER_ONE_BIASES
    image_size_by_channels: tuple[tuple[int, int], ...] = ()
    fixed_image_size: tuple[int, str] | None = None
    widths_option: bool = False
    batchnorm_convention: str = "pytorch"

    @property
    def widths(self) -> tuple[int, ...]:
        """The output width of every stage, then of every hidden layer."""
        return (*(s.channels for s in self.stages), *self.hidden)


def alexnet_stages(
    widths: tuple[int, int, int, int, int], conv1_padding: int = 0, groups: int = 1, norm: str | None = None
) -> tuple[ConvStage, ...]:
    """The five stages every full-size AlexNet shares, at the given output ``widths``.

    conv1 11×11 at stride 4 (padded by ``conv1_padding``), conv2 5×5 padded by 2, conv3 to conv5 3×3 padded by
    1, overlapping pooling after stages 1, 2 and 5. The paper's two-column layout adds ``groups=2`` to conv2,
    conv4 and conv5 (the convolutions that see only their own GPU's maps, §3.5) and ``norm="lrn"`` after the
    first two ReLUs (§3.3).
    """
    w1, w2, w3, w4, w5 = widths
    return (
        ConvStage(w1, 11, stride=4, padding=conv1_padding, norm=norm, pool=OVERLAPPING_POOL),
        ConvStage(w2, 5, padding=2, groups=groups, norm=norm, pool=OVERLAPPING_POOL),
        ConvStage(w3, 3, padding=1),
        ConvStage(w4, 3, padding=1, groups=groups),
        ConvStage(w5, 3, padding=1, groups=groups, pool=OVERLAPPING_POOL),
    )


# The paper, §3.5, with Caffe's exact parameters: 96/256/384/384/256, two columns (groups 2), LRN.
PAPER = Variant(
    "paper", in_channels=3, image_size=227, num_classes=1000,
    stages=alexnet_stages((96, 256, 384, 384, 256), groups=2, norm="lrn"), hidden=(4096, 4096),
)

# Dive into Deep Learning, §8.1: the paper's widths in one column (no groups, no LRN), conv1 padded by 1.
D2L = Variant(
    "d2l", in_channels=1, image_size=224, num_classes=10,
    stages=alexnet_stages((96, 256, 384, 384, 256), conv1_padding=1), hidden=(4096, 4096),
)

# torchvision's AlexNet: 64/192/384/256/256 in one column, conv1 padded by 2; its classifier drops the inputs of
# fc6 and fc7 (not, as in the paper's order, their outputs). widths=(64, 192, 384, 384, 256, 4096, 4096) is the
# common blog variant (61,838,248 parameters at 1000 classes); five widths resize the convolutions only.
TORCHVISION = Variant(
    "torchvision", in_channels=3, image_size=224, num_classes=1000,
    stages=alexnet_stages((64, 192, 384, 256, 256), conv1_padding=2), hidden=(4096, 4096),
    dropout_first=True,
    widths_option=True,
    fixed_image_size=(
        224,
        "torchvision's AdaptiveAvgPool2d((6, 6)) is the identity only there, and minialex does not implement it",
    ),
)

MINI = Variant(
    "mini", in_channels=1, image_size=28, num_classes=10,
    # Every layer type of the paper, sized for 28×28 digits and 32×32 CIFAR on a CPU::
    #
    #   conv1  32@5×5 pad 2   → relu1 → norm1 → pool1 3/2     1×28×28 → 32×28×28 → 32×13×13
    #   conv2  64@3×3 pad 1, groups 2 → relu2 → norm2 → pool2  → 64×13×13 → 64×6×6
    #   conv3  96@3×3 pad 1   → relu3 → pool3 3/2              → 96×6×6  → 96×2×2 = 384
    #   fc4    384 → 256 → relu4 → drop4 (p = 0.5)
    #   fc5    256 → classes
    #
    # (3×32×32 input: 32×32 → 15 → 15 → 7 → 7 → 3, so fc4 is 864 → 256.) 166,634 parameters for digits.
    #
    # * conv1 is 5×5 at stride 1 with "same" padding, not 11×11 at stride 4: a digit stroke is 2–3 pixels
    #   wide and the whole digit about 20, so a stride of 4 would skip strokes; 5×5 sees a stroke with both
    #   its edges.
    # * Widths grow like the paper's (96 → 256 → 384) but at a third of the size and with three convolutions
    #   instead of five: a few thousand training digits cannot feed 2 M parameters, and a training step must
    #   stay cheap on two CPU cores.
    # * LRN (the paper's constants) after the first two ReLUs, as in the paper; groups = 2 in conv2 keeps the
    #   two-column idea visible (and halves conv2's cost); overlapping 3/2 max-pooling after each stage.
    # * One hidden FC layer of 256 with dropout 0.5 instead of two of 4096: on a 2×2×96 feature map a second
    #   hidden layer adds parameters, not accuracy.
    #
    # Its measured accuracy and speed are in docs/layers-and-models.md.
    stages=(
        ConvStage(32, 5, padding=2, norm="lrn", pool=OVERLAPPING_POOL),
        ConvStage(64, 3, padding=1, groups=2, norm="lrn", pool=OVERLAPPING_POOL),
        ConvStage(96, 3, padding=1, pool=OVERLAPPING_POOL),
    ),
    hidden=(256,),
    paper_one_biases=("conv2", "fc4"),  # its grouped convolution and its hidden FC layer
    image_size_by_channels=((3, 32),),
    widths_option=True,
)

KERAS_CIFAR10 = Variant(
    "keras-cifar10", in_channels=3, image_size=32, num_classes=10,
    # The AlexNet of the Keras CIFAR-10 tutorial, layer for layer ("valid" is padding 0, "same" padding 1 for a
    # 3×3 kernel at stride 1; Keras's Conv2D and Dense have biases)::
    #
    #   conv1  96@3×3 valid  → norm1 (BatchNorm) → relu1 → pool1 3/2     3×32×32 → 96×30×30 → 96×14×14
    #   conv2 256@3×3 valid  → norm2 (BatchNorm) → relu2 → pool2 3/2     → 256×12×12 → 256×5×5
    #   conv3 384@3×3 same   → relu3                                     → 384×5×5
    #   conv4 384@3×3 same   → relu4                                     → 384×5×5
    #   conv5 256@3×3 same   → relu5 → pool5 3/2                         → 256×2×2 = 1024
    #   fc6 1024 → 2048 → relu6 → drop6 (0.5);  fc7 2048 → 2048 → relu7 → drop7 (0.5);  fc8 2048 → 10
    #
    # 9,638,474 trainable parameters and 2·(96 + 256) = 704 running statistics. Its BatchNorm layers follow
    # Keras's convention (momentum 0.99 on the running value, ε = 1e-3, biased running variance). The softmax
    # is in the loss. Keras draws Glorot-uniform weights; minialex uses its own schemes (init=).
    stages=(
        ConvStage(96, 3, norm="batchnorm", pool=OVERLAPPING_POOL),
        ConvStage(256, 3, norm="batchnorm", pool=OVERLAPPING_POOL),
        ConvStage(384, 3, padding=1),
        ConvStage(384, 3, padding=1),
        ConvStage(256, 3, padding=1, pool=OVERLAPPING_POOL),
    ),
    hidden=(2048, 2048),
    widths_option=True,
    batchnorm_convention="keras",
)

REGISTRY: dict[str, Variant] = {v.name: v for v in (MINI, PAPER, D2L, TORCHVISION, KERAS_CIFAR10)}
"""Every variant by name; :func:`minialex.models.alexnet` builds any of them."""

VARIANTS = tuple(REGISTRY)
"""The variant names, ``("mini", "paper", "d2l", "torchvision", "keras-cifar10")``."""

MINI_WIDTHS = MINI.widths
"""conv1, conv2, conv3 channels and fc4 units of the ``mini`` variant: (32, 64, 96, 256)."""

INITS = ("paper", "he")
"""The initialisation schemes (see :mod:`minialex.models.build`); ``"he"`` is every variant's default."""


def get_variant(name: Any) -> Variant:
    """The :class:`Variant` called ``name``, or a ConfigError listing the known ones."""
    return REGISTRY[validate.choice(name, "model variant", tuple(REGISTRY))]


def variant_defaults(variant: str, in_channels: int | None = None) -> dict[str, Any]:
    """The defaults of ``variant``: ``in_channels``, ``image_size``, ``num_classes``, ``init``, ``input_shape``.

    For ``mini`` the image size follows the channels: 28 for 1 channel (digits), 32 for 3 (CIFAR-10).
    """
    spec = get_variant(variant)
    c = spec.in_channels if in_channels is None else in_channels
    size = dict(spec.image_size_by_channels).get(c, spec.image_size)
    return {
        "in_channels": c,
        "image_size": size,
        "num_classes": spec.num_classes,
        "init": "he",
        "input_shape": (c, size, size),
    }


def check_widths(spec: Variant, widths: Any) -> tuple[int, ...]:
    """``widths`` for ``spec``, completed to one per stage and one per hidden layer; the variant's own when None.

    ``widths`` lists every stage's width and then every hidden layer's, or the stages' only (the hidden
    layers keep the variant's widths): ``alexnet("torchvision", widths=(64, 192, 384, 384, 256))``. Each is a
    positive integer that its stage's groups divide.
    """
    if widths is None:
        return spec.widths
    if not spec.widths_option:
        allowed = [repr(v.name) for v in REGISTRY.values() if v.widths_option]
        listed = ", ".join(allowed[:-1]) + f" and {allowed[-1]}" if len(allowed) > 1 else allowed[0]
        raise ConfigError(f"alexnet: widths= applies to the {listed} variants only, not {spec.name!r}")
    convs = [f"conv{i}" for i in range(1, len(spec.stages) + 1)]
    names = convs + [f"fc{len(spec.stages) + i}" for i in range(1, len(spec.hidden) + 1)]
    if not isinstance(widths, (tuple, list)) or len(widths) not in (len(convs), len(names)):
        raise ConfigError(
            f"alexnet: widths for {spec.name!r} must be {len(convs)} ({', '.join(convs)}) or {len(names)} positive "
            f"integers ({', '.join(names)}), got {widths!r}"
        )
    given = tuple(
        validate.integer(w, f"alexnet: the {name} width", low=1) for w, name in zip(widths, names, strict=False)
    )
    for stage, width, name in zip(spec.stages, given, names, strict=False):
        if width % stage.groups:
            raise ConfigError(f"alexnet: the {name} width must be divisible by its groups={stage.groups}, got {width}")
    return given if len(given) == len(names) else given + spec.hidden


def normalised_stages(spec: Variant, norm: Any = None, norm_at: Any = None) -> tuple[ConvStage, ...]:
    """The stages of ``spec`` with the normalisation ``norm`` at the places ``norm_at`` (see :data:`NORMS`).

    ``norm=None`` keeps the variant's own layout (``norm_at`` must then be None too). ``"none"`` removes
    every normalisation; ``"lrn"`` or ``"batchnorm"`` puts that kind after conv1 and conv2 (``norm_at="paper"``,
    the default: where the paper has LRN) or after every convolution (``"every"``) and nowhere else.
    """
    if norm is None:
        if norm_at is not None:
            raise ConfigError(f"alexnet: norm_at={norm_at!r} needs norm= ('lrn' or 'batchnorm') to say what goes there")
        return spec.stages
    norm = validate.choice(norm, "alexnet: norm", NORMS)
    norm_at = validate.choice("paper" if norm_at is None else norm_at, "alexnet: norm_at", NORM_PLACES)
    kind = None if norm == "none" else norm
    places = range(len(spec.stages)) if norm_at == "every" else range(min(2, len(spec.stages)))
    return tuple(replace(s, norm=kind if i in places else None) for i, s in enumerate(spec.stages))
