"""Exact folding of one supernet path into its deployed network (SCARLET Lemma 4.1 and appendix A).

A skip choice carried by an ELS is a bias-free 1x1 convolution, so it composes with the next 1x1 convolution:
``W3[o, c] = sum_p W_next[o, p] W_els[p, c]``. Walking the path, every run of consecutive identity layers becomes
one pending linear map ``M`` from the deployed tensor ``z`` to the tensor ``x = M z`` the supernet computes:

- an ELS multiplies ``M`` by its weight (chains compose); a plain ``skip`` multiplies it by ``[I; 0]`` (its zero
  padded channels), whose composition is the next weight restricted to the first channels;
- a stride-2 identity leaves a :class:`~scarlet.standalone.Subsample` at its place (a strided 1x1 conv is a
  subsample followed by a 1x1 conv, and subsampling commutes with ``M``);
- ``M`` is absorbed by the next real convolution: the next MBConv's expansion conv, or the tail (head) conv after
  the last layer. Its input width becomes the width of ``z``, the last non-identity output.

The exactness caveat the proof does not cover: when the absorbing block has an identity shortcut in the supernet
(stride 1, in == out), the supernet computes ``M z + f(M z)``. Folding ``M`` into ``f``'s first conv leaves the
shortcut carrying ``M z``, so the folded block keeps that map on its shortcut:

- ``identity``: ``M`` is the identity (no identity layer before the block, or plain skips that kept the width);
- ``pad``: plain skips that grew the width: ``M z`` is ``z`` with zero channels appended, no weights;
- ``projection``: ELS before the block: a bias-free 1x1 conv holding ``M`` (``z``'s width to the block's width).

The deployed structure therefore depends only on the architecture, the supernet config and ``fold_bn``
(:func:`plan_fold`), and an :class:`ExportedNet` is rebuilt from those plus its state_dict. ``fold_bn`` also folds
every BatchNorm (running statistics, i.e. eval mode) into the convolution before it, which then gets a bias.

ELS-ReLU (the non-equivariant ablation) is not linear and cannot be folded: :func:`plan_fold` refuses it.
This module is the exact fold only; the "retrain" variant (ELS dropped, what the papers train from scratch) is
:class:`~scarlet.standalone.StandaloneNet`, see :mod:`scarlet.export`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scarlet.arch import Arch, parse_arch
from scarlet.blocks import MBConv, Stabilizer, init_weights
from scarlet.errors import ScarletError
from scarlet.space import get_space, scale_channels
from scarlet.standalone import Subsample
from scarlet.supernet import FirstBlock, Head, Stem, Supernet, SupernetConfig, layer_shapes

SHORTCUTS = ("none", "identity", "pad", "projection")

# (conv, BatchNorm after it) pairs of every module the fold touches.
CONV_BN = {
    Stem: (("conv", "bn"),),
    FirstBlock: (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    MBConv: (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    Head: (("conv", "bn"),),
}

# Largest relative error (max |deployed - supernet| / max |supernet|) an exact fold may show.
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def compose(w_els: torch.Tensor, w_next: torch.Tensor) -> torch.Tensor:
    """Lemma 4.1: the weight of ``conv(w_next) o conv1x1(w_els)``, shape (out, c_in, k, k).

    ``w_els`` is (c_mid, c_in, 1, 1), ``w_next`` is (out, c_mid, k, k). Uses ``scarlet_kernels.fold_els`` when the
    kernel package provides it, else the einsum below (the same formula).
    """
    try:
        from scarlet_kernels import fold_els
    except ImportError:
        return torch.einsum("omhw,mi->oihw", w_next, w_els[:, :, 0, 0])
    return fold_els(w_els, w_next)


@dataclass(frozen=True)
class BlockSpec:
    """One module of the deployed block stack: an MBConv, or the subsampling a stride-2 identity leaves."""

    layer: int  # searchable layer (1-based) this module comes from
    kind: str  # "mbconv" or "subsample"
    stride: int
    in_channels: int = 0
    out_channels: int = 0
    hidden: int = 0
    expansion: int = 0
    kernel: int = 0
    se: bool = False
    shortcut: str = "none"  # one of SHORTCUTS


@dataclass(frozen=True)
class Fold:
    """A run of consecutive identity layers and the convolution that absorbed it."""

    layers: tuple[int, ...]  # 1-based
    kind: str  # "els" or "skip"
    stride: int  # total subsampling of the run
    in_channels: int  # width of the deployed tensor entering the run (last non-identity output)
    out_channels: int  # width the supernet had after the run
    into: str  # deployed module that absorbed the map, e.g. "blocks.4.conv_pw" or "head.conv"
    into_layer: int | None  # searchable layer of that block (1-based); None for the head
    shortcut: str  # what the absorbing block's shortcut carries (SHORTCUTS)


@dataclass(frozen=True)
class FoldPlan:
    arch: Arch
    config: SupernetConfig
    blocks: tuple[BlockSpec, ...]
    folds: tuple[Fold, ...]
    head_in: int  # input width of the tail conv

    @property
    def projections(self) -> list[dict]:
        """Where an exact fold had to add a 1x1 projection shortcut."""
        shapes = layer_shapes(self.config)
        return [{"layer": f.into_layer, "module": f.into.rsplit(".", 1)[0] + ".shortcut",
                 "in_channels": f.in_channels, "out_channels": f.out_channels, "after_identity_layers": f.layers,
                 "madds": f.in_channels * f.out_channels * shapes[f.into_layer - 1].in_size ** 2}
                for f in self.folds if f.shortcut == "projection"]

    def to_dict(self) -> dict:
        return {"blocks": [asdict(b) for b in self.blocks], "folds": [asdict(f) for f in self.folds],
                "projections": self.projections, "head_in": self.head_in}


def plan_fold(arch, config: SupernetConfig) -> FoldPlan:
    """The deployed structure of ``arch`` folded out of a supernet with ``config`` (no weights needed)."""
    space = get_space(config.space)
    arch = parse_arch(arch, space)
    channels = scale_channels(space.first_block_channels, config.width)  # width of the deployed tensor z
    blocks: list[BlockSpec] = []
    folds: list[Fold] = []
    run: list[int] = []  # pending identity layers
    run_stride = 1

    def close_run(into: str, into_layer: int | None, nominal: int, shortcut: str) -> None:
        if run:
            folds.append(Fold(tuple(run), config.skip, run_stride, channels, nominal, into, into_layer, shortcut))

    for i, (shape, g) in enumerate(zip(layer_shapes(config), arch.genes)):
        choice = space.choices[g]
        if choice.identity:
            if config.skip == "els-relu":
                raise ScarletError(f"layer {i + 1} is an identity carried by ELS-ReLU (ELS followed by ReLU), which "
                                   f"is not linear and cannot be folded exactly; use the retrain variant or a "
                                   f"supernet trained with --skip els")
            run.append(i + 1)
            run_stride *= shape.stride
            if shape.stride > 1:
                blocks.append(BlockSpec(i + 1, "subsample", shape.stride))
            continue
        residual = shape.stride == 1 and shape.in_channels == shape.out_channels  # the supernet block's shortcut
        if not residual:
            shortcut = "none"
        elif not run or (config.skip == "skip" and channels == shape.in_channels):
            shortcut = "identity"
        else:
            shortcut = "pad" if config.skip == "skip" else "projection"
        close_run(f"blocks.{len(blocks)}.conv_pw", i + 1, shape.in_channels, shortcut)
        blocks.append(BlockSpec(i + 1, "mbconv", shape.stride, channels, shape.out_channels,
                                round(shape.in_channels * choice.expansion), choice.expansion, choice.kernel,
                                choice.se, shortcut))
        channels, run, run_stride = shape.out_channels, [], 1
    close_run("head.conv", None, layer_shapes(config)[-1].out_channels, "none")
    return FoldPlan(arch, config, tuple(blocks), tuple(folds), channels)


class FoldedMBConv(MBConv):
    """An MBConv whose shortcut is what the fold left: none, identity, zero-channel pad or 1x1 projection."""

    def __init__(self, spec: BlockSpec, family: str):
        super().__init__(spec.in_channels, spec.out_channels, spec.stride, spec.expansion, spec.kernel, spec.se,
                         family, hidden=spec.hidden, residual=False)
        self.shortcut_kind = spec.shortcut
        self.shortcut = (nn.Conv2d(spec.in_channels, spec.out_channels, 1, bias=False)
                         if spec.shortcut == "projection" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # the branch only: residual=False
        if self.shortcut_kind == "identity":
            return x + y
        if self.shortcut_kind == "pad":
            return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels)) + y
        if self.shortcut_kind == "projection":
            return self.shortcut(x) + y
        return y

    def extra_repr(self) -> str:
        return f"shortcut={self.shortcut_kind}"


def _strip_bn(module: nn.Module) -> None:
    """Replace each (conv, BN) pair by a conv with bias and no BN (weights to be filled by the fold)."""
    kind = next(k for k in CONV_BN if isinstance(module, k))
    for conv_name, bn_name in CONV_BN[kind]:
        c = getattr(module, conv_name)
        setattr(module, conv_name, nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                             groups=c.groups, bias=True))
        setattr(module, bn_name, nn.Identity())


class ExportedNet(nn.Module):
    """The exact deployed network of a supernet path: stem -> first -> blocks -> head, ELS folded away.

    Built from the architecture, the supernet config and ``fold_bn`` alone (``.plan`` is the fold layout);
    :func:`fold_path` fills in the weights.
    """

    def __init__(self, arch, config: SupernetConfig, fold_bn: bool = False):
        super().__init__()
        self.plan = plan_fold(arch, config)
        self.config, self.arch, self.fold_bn = config, self.plan.arch, fold_bn
        space = get_space(config.space)
        stem_ch = scale_channels(space.stem_channels, config.width)
        self.stem = Stem(config.in_channels, stem_ch, config.stem_stride)
        self.first = FirstBlock(stem_ch, scale_channels(space.first_block_channels, config.width))
        self.blocks = nn.Sequential(*(FoldedMBConv(b, space.family) if b.kind == "mbconv" else Subsample(b.stride)
                                      for b in self.plan.blocks))
        self.head = Head(self.plan.head_in, scale_channels(space.tail_channels, config.width), config.num_classes,
                         config.dropout)
        init_weights(self)
        if fold_bn:
            for m in [self.stem, self.first, *self.blocks, self.head]:
                if not isinstance(m, Subsample):
                    _strip_bn(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first(self.stem(x))))


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def _stabilizer_map(stab: Stabilizer) -> torch.Tensor:
    """The skip choice as a (out, in, 1, 1) weight: the ELS weight, or [I; 0] for a plain skip."""
    if stab.kind == "skip":
        return torch.eye(stab.out_channels, stab.in_channels, dtype=torch.float64)[:, :, None, None]
    return _f64(stab.conv.weight)


@torch.no_grad()
def _load_conv_bn(dst: nn.Module, src: nn.Module, fold_bn: bool, in_map: torch.Tensor | None = None) -> None:
    """Copy (or fold BN into) each conv of ``src`` into ``dst``; ``in_map`` is composed into the first conv."""
    for conv_name, bn_name in CONV_BN[next(k for k in CONV_BN if isinstance(src, k))]:
        w = _f64(getattr(src, conv_name).weight)
        if in_map is not None:
            w, in_map = compose(in_map, w), None
        conv, bn = getattr(dst, conv_name), getattr(src, bn_name)
        if fold_bn:
            scale = _f64(bn.weight) / torch.sqrt(_f64(bn.running_var) + bn.eps)
            conv.weight.copy_(w * scale[:, None, None, None])
            conv.bias.copy_(_f64(bn.bias) - _f64(bn.running_mean) * scale)
        else:
            conv.weight.copy_(w)
            getattr(dst, bn_name).load_state_dict(bn.state_dict())


@torch.no_grad()
def fold_path(supernet: Supernet, arch, fold_bn: bool = False) -> ExportedNet:
    """The exact deployed network of ``arch``'s path through ``supernet`` (eval-mode function, BN running stats).

    Folding is computed in float64 on the CPU; the result has the supernet's dtype and device. Raises
    ScarletError for ELS-ReLU identities.
    """
    arch = supernet.arch(arch)
    net = ExportedNet(arch, supernet.config, fold_bn).to(torch.float64)
    _load_conv_bn(net.stem, supernet.stem, fold_bn)
    _load_conv_bn(net.first, supernet.first, fold_bn)
    deployed = iter(b for b in net.blocks if isinstance(b, FoldedMBConv))
    pending = None  # (x's width, z's width, 1, 1) map accumulated over the current run of identities
    for layer, g in zip(supernet.layers, arch.genes):
        src = layer[g]
        if isinstance(src, Stabilizer):
            m = _stabilizer_map(src)
            pending = m if pending is None else compose(pending, m)
            continue
        dst = next(deployed)
        _load_conv_bn(dst, src, fold_bn, pending)
        if src.se is not None:
            dst.se.load_state_dict(src.se.state_dict())
        if dst.shortcut is not None:
            dst.shortcut.weight.copy_(pending)
        pending = None
    _load_conv_bn(net.head, supernet.head, fold_bn, pending)
    net.head.classifier.load_state_dict(supernet.head.classifier.state_dict())
    ref = supernet.stem.conv.weight
    return net.to(device=ref.device, dtype=ref.dtype).train(supernet.training)


@dataclass(frozen=True)
class Discrepancy:
    """How far a deployed network's output is from the supernet path's on the same inputs."""

    dtype: str
    batch: int
    max_abs: float
    max_rel: float  # max |deployed - supernet| / max |supernet|
    tolerance: float

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_rel) and self.max_rel <= self.tolerance

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def random_inputs(config: SupernetConfig, batch: int = 4, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.in_channels, config.resolution, config.resolution, generator=g).to(dtype)


def output_error(out: torch.Tensor, ref: torch.Tensor, tolerance: float) -> Discrepancy:
    diff = (out.double() - ref.double()).abs().max().item()
    scale = ref.double().abs().max().item()
    return Discrepancy(str(ref.dtype).replace("torch.", ""), ref.shape[0], diff, diff / max(scale, 1e-300),
                       tolerance)


@torch.no_grad()
def check_fold(supernet: Supernet, arch, net: nn.Module, inputs: torch.Tensor | None = None) -> Discrepancy:
    """Run the supernet path and ``net`` in eval mode on the same inputs (random by default); modes restored."""
    ref_w = supernet.stem.conv.weight
    if inputs is None:
        inputs = random_inputs(supernet.config, dtype=ref_w.dtype)
    inputs = inputs.to(device=ref_w.device, dtype=ref_w.dtype)
    modes = supernet.training, net.training
    supernet.eval(), net.eval()
    try:
        ref, out = supernet(inputs, supernet.arch(arch)), net(inputs)
    finally:
        supernet.train(modes[0]), net.train(modes[1])
    return output_error(out, ref, TOLERANCE.get(ref.dtype, 1e-2))
