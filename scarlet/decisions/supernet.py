"""Masked weight-sharing supernet for the decision spaces (TuNAS section 4.1, sheet A2).

Each layer holds its weights once, at the widest width any architecture can give it, and a path uses slices:

- the 1x1 expansion and projection convs (and the stem/head convs, the sepconv's pointwise conv, BN scale, shift
  and running statistics) are shared by every expansion, kernel and width choice; a path keeps the **first** k
  channels, which is TuNAS's channel masking (``kernel * (in_mask x out_mask)``, first-k masks) without computing
  the masked-out channels; BN statistics are per channel, so BN on the sliced channels equals TuNAS's masked BN;
- expanded widths are relative to the **sampled** input width (``concrete.resolve``);
- depthwise kernels are separate per kernel size, each with its own BN, as TuNAS's branches
  (``depthwise="separate"``), or centre-cropped from one kernel of the largest size with one shared BN
  (``depthwise="centre-crop"``, the documented alternative); the stem's kernel choices are always separate;
- squeeze-and-excitation is a switch: its weights are used only when the path turns it on; FP-NAS's split-attention
  choices {2, 4} use a second, separate set of MBConv weights (FP-NAS section 4: "we do not share the model
  weights of MBConv block between choices of no. of splits", so the supernet weights double), in which 2 splits
  use the first two of the four splits' depthwise kernels and attention logits;
- a zeroed TuNAS layer makes its residual layer the identity; an FBNet kernel-0 layer is the identity or a 1x1
  projection (its own widest weights, sliced);
- the block-level filters decision gives every layer of a block the same output width.

Initialisation (``init``): ``independent`` draws every tensor on its own (He-normal fan-out per group, as
``scarlet.blocks.init_weights``); neither TuNAS nor FP-NAS specifies more. ``one-function`` then makes every choice
of a layer start as the same function, as the FairNAS/SCARLET supernet does (issue 9, LEARNING.md): without it a
path through several shape-changing layers with random choices is a different random network at every step and
training stalls at chance (TuNAS proxylessnas, width 0.25, digits: loss 2.6 after 40 random-path steps, 1.3 with
it; a fixed path reaches 0.8). It sets, after the independent draw:

- larger depthwise (and stem) kernels = the smallest kernel's weights at the centre, zero outer taps (per kernel
  in ``separate`` mode; in ``centre-crop`` mode the taps outside the smallest kernel are zeroed);
- the projection columns of hidden channels beyond the smallest expansion zero, so every expansion starts equal;
- the squeeze-and-excitation / split-attention expand conv zero: a constant gate, which the BN after the
  projection normalises away, so attention on and off start equal (up to BN's eps);
- the last BN scale of layers that always have a shortcut zero (the residual branch starts as the identity).

Kernel 0 (FBNet's skip or 1x1 projection) and the activation choice cannot be made the same function; FBNet
spaces with random skips at their stride-2 layers still stall at width 0.25 (measured; see the report).

``forward(x, arch)`` runs one path; ``standalone_state_dict(arch)`` gives the sliced weights under the standalone
network's names, and ``build_standalone(arch)`` the standalone network with them copied in. Both run
``ops.layer_forward``, so a path equals its standalone network (tested in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scarlet.blocks import init_weights
from scarlet.decisions import ops
from scarlet.decisions.concrete import ConcreteLayer, make_divisible, resolve
from scarlet.decisions.space import LayerSpec, Space, get_space, scale_filters
from scarlet.decisions.standalone import Attention, DecisionStandaloneNet, batch_norm2d, conv2d
from scarlet.errors import ScarletError

DEPTHWISE_MODES = ("separate", "centre-crop")
INIT_MODES = ("independent", "one-function")


def _bn_slice(bn: nn.BatchNorm2d, prefix: str, n: int) -> dict[str, Tensor]:
    return {f"{prefix}.weight": bn.weight[:n], f"{prefix}.bias": bn.bias[:n],
            f"{prefix}.running_mean": bn.running_mean[:n], f"{prefix}.running_var": bn.running_var[:n]}


class _Kernels(nn.Module):
    """Depthwise conv + BN for several kernel sizes.

    ``separate``: a conv and a BN per kernel size, TuNAS's branches (``_depthwise_conv``: each kernel size is its
    own depthwise conv + BN + activation). ``centre-crop``: one conv of the largest size, cropped, and one BN.
    """

    def __init__(self, channels: int, multiplier: int, kernels, mode: str):
        super().__init__()
        self.mode = mode
        self.kernels = tuple(sorted(kernels))
        kept = [max(kernels)] if mode == "centre-crop" else sorted(kernels)
        self.convs = nn.ModuleDict({str(k): conv2d(channels, channels * multiplier, k, groups=channels) for k in kept})
        self.bns = nn.ModuleDict({str(k): batch_norm2d(channels * multiplier) for k in kept})

    def _key(self, kernel: int) -> str:
        return str(kernel) if self.mode == "separate" else next(iter(self.convs))

    def weight(self, kernel: int) -> Tensor:
        key = self._key(kernel)
        o = (int(key) - kernel) // 2
        return self.convs[key].weight[:, :, o:o + kernel, o:o + kernel]

    def bn(self, kernel: int) -> nn.BatchNorm2d:
        return self.bns[self._key(kernel)]

    def start_as_smallest(self) -> None:
        """Every kernel size computes what the smallest one does (the one-function init)."""
        if self.mode == "separate":
            centre_pad_kernels(self.convs)
        else:
            conv = next(iter(self.convs.values()))
            _zero_outside(conv.weight, min(self.kernels))


@torch.no_grad()
def _zero_outside(weight: Tensor, kernel: int) -> None:
    """Zero the taps of a k x k weight outside its centred ``kernel`` x ``kernel`` window."""
    k = weight.shape[-1]
    o = (k - kernel) // 2
    keep = torch.zeros_like(weight)
    keep[..., o:o + kernel, o:o + kernel] = 1
    weight.mul_(keep)


@torch.no_grad()
def centre_pad_kernels(convs: nn.ModuleDict) -> None:
    """Convs keyed by kernel size: each larger one becomes the smallest one's weights centred in zeros."""
    sizes = sorted(int(k) for k in convs)
    small = convs[str(sizes[0])].weight
    for k in sizes[1:]:
        w = convs[str(k)].weight
        o = (k - sizes[0]) // 2
        w.zero_()
        w[:, :, o:o + sizes[0], o:o + sizes[0]].copy_(small)


class _InvertedBottleneckWeights(nn.Module):
    """Widest weights of one inverted bottleneck; ``splits`` > 1 lays depthwise outputs out as (channel, split)."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernels, reduced: int, splits: int, mode: str):
        super().__init__()
        self.hidden, self.splits = hidden, splits
        self.expand, self.bn1 = conv2d(c_in, hidden), batch_norm2d(hidden)
        self.dw = _Kernels(hidden, splits, kernels, mode)
        self.att = Attention(hidden, reduced, splits) if reduced else None
        self.project, self.bn3 = conv2d(hidden, c_out), batch_norm2d(c_out)

    @torch.no_grad()
    def start_as_one_function(self, smallest_hidden: int, residual: bool) -> None:
        self.dw.start_as_smallest()
        self.project.weight[:, smallest_hidden:] = 0
        if self.att is not None:
            nn.init.zeros_(self.att.expand.weight)
        if residual:
            nn.init.zeros_(self.bn3.weight)

    def _split(self, t: Tensor, h: int, r: int) -> Tensor:
        """Channels (g, m) with g < h, m < r of a tensor whose first dim is laid out (hidden, splits)."""
        return t.unflatten(0, (self.hidden, self.splits))[:h, :r].flatten(0, 1)

    def weights(self, c: ConcreteLayer) -> dict[str, Tensor]:
        h, r = c.hidden, max(c.attention, 1)
        w = {"expand.weight": self.expand.weight[:h, :c.c_in], **_bn_slice(self.bn1, "bn1", h),
             "dw.weight": self._split(self.dw.weight(c.kernel), h, r),
             "project.weight": self.project.weight[:c.c_out, :h], **_bn_slice(self.bn3, "bn3", c.c_out)}
        for name in ("weight", "bias", "running_mean", "running_var"):
            w[f"bn2.{name}"] = self._split(getattr(self.dw.bn(c.kernel), name), h, r)
        if c.attention:
            w["att.reduce.weight"] = self.att.reduce.weight[:c.reduced, :h]
            w["att.reduce.bias"] = self.att.reduce.bias[:c.reduced]
            w["att.expand.weight"] = self._split(self.att.expand.weight, h, r)[:, :c.reduced]
            w["att.expand.bias"] = self._split(self.att.expand.bias, h, r)
        return w

    @torch.no_grad()
    def write_back(self, c: ConcreteLayer, w: dict[str, Tensor]) -> None:
        """With r < splits the sliced BN statistics are copies: store their training-mode update."""
        h, r = c.hidden, max(c.attention, 1)
        for name in ("running_mean", "running_var"):
            getattr(self.dw.bn(c.kernel), name).unflatten(0, (self.hidden, self.splits))[:h, :r].copy_(
                w[f"bn2.{name}"].unflatten(0, (h, r)))


class SupernetLayer(nn.Module):
    """The widest weights of one layer of the skeleton, given the widths that can reach it."""

    def __init__(self, spec: LayerSpec, space: Space, widths_in: set[int], depthwise: str):
        super().__init__()
        self.spec = spec
        self.widths_in = tuple(sorted(widths_in))
        c_in, f = max(widths_in), max(spec.choices("filters"))
        kernels = [k for k in spec.choices("kernel") if k]
        if spec.kind in ("conv", "conv_bias"):
            bias = spec.kind == "conv_bias"
            # the stem's kernel choices {3, 5} are separate conv + BN branches in TuNAS, in either depthwise mode
            self.convs = nn.ModuleDict({str(k): conv2d(c_in, f, k, bias=bias) for k in kernels or [1]})
            self.bns = None if bias else nn.ModuleDict({str(k): batch_norm2d(f) for k in kernels or [1]})
        elif spec.kind == "sepconv":
            self.dw = _Kernels(c_in, 1, kernels, depthwise)
            self.pw, self.bn2 = conv2d(c_in, f), batch_norm2d(f)
        elif spec.kind == "ib":
            hiddens = {scale_filters(c, e, space.divisor) for c in widths_in for e in spec.choices("expansion")}
            h = max(hiddens)
            red = max(make_divisible(0.25 * x, space.divisor) for x in hiddens)
            att = spec.choices("attention", 0)
            self.plain = _InvertedBottleneckWeights(c_in, h, f, kernels, red if 1 in att else 0, 1, depthwise)
            splits = max(att)
            self.split = (_InvertedBottleneckWeights(c_in, h, f, kernels, red, splits, depthwise)
                          if splits > 1 else None)
            if space.family == "fbnet" and 0 in spec.choices("kernel") and spec.first:
                self.proj, self.proj_bn = conv2d(c_in, f), batch_norm2d(f)
        else:
            raise ValueError(f"unknown layer kind {spec.kind!r}")

    @torch.no_grad()
    def start_as_one_function(self, space: Space) -> None:
        """Every choice of this layer computes the same function (see the module docstring)."""
        spec = self.spec
        if spec.kind == "conv" and len(self.convs) > 1:
            centre_pad_kernels(self.convs)
        elif spec.kind == "sepconv":
            self.dw.start_as_smallest()
        elif spec.kind == "ib":
            # the fewest hidden channels any path has; wider paths start with zero projection columns beyond it
            smallest = min(scale_filters(c, e, space.divisor) for c in self.widths_in for e in
                           spec.choices("expansion"))
            # TuNAS: residual exactly on ResidualSpec layers; FBNet: stride 1 inside a block (one filters decision
            # per block), while a block's first layer has a shortcut only on some paths
            always_residual = spec.residual or (space.family == "fbnet" and spec.stride == 1 and not spec.first)
            for ib in (self.plain, self.split):
                if ib is not None:
                    ib.start_as_one_function(smallest, always_residual)

    def _ib(self, c: ConcreteLayer) -> _InvertedBottleneckWeights:
        return self.split if c.attention > 1 else self.plain

    def weights(self, c: ConcreteLayer) -> dict[str, Tensor]:
        if c.kind in ("conv", "conv_bias"):
            conv = self.convs[str(c.kernel)]
            w = {"conv.weight": conv.weight[:c.c_out, :c.c_in]}
            if c.kind == "conv_bias":
                return {**w, "conv.bias": conv.bias[:c.c_out]}
            return {**w, **_bn_slice(self.bns[str(c.kernel)], "bn", c.c_out)}
        if c.kind == "sepconv":
            return {"dw.weight": self.dw.weight(c.kernel)[:c.c_in], **_bn_slice(self.dw.bn(c.kernel), "bn1", c.c_in),
                    "pw.weight": self.pw.weight[:c.c_out, :c.c_in], **_bn_slice(self.bn2, "bn2", c.c_out)}
        if c.kind == "project":
            return {"conv.weight": self.proj.weight[:c.c_out, :c.c_in], **_bn_slice(self.proj_bn, "bn", c.c_out)}
        return self._ib(c).weights(c)

    def write_back(self, c: ConcreteLayer, w: dict[str, Tensor]) -> None:
        if c.kind == "ib" and c.attention > 1:
            self._ib(c).write_back(c, w)


class DecisionSupernet(nn.Module):
    """Masked weight-sharing supernet of a decision space (``space`` a name or a :class:`Space`)."""

    def __init__(self, space: str | Space, num_classes: int = 1000, depthwise: str = "separate",
                 init: str = "independent"):
        super().__init__()
        if depthwise not in DEPTHWISE_MODES:
            raise ScarletError(f"depthwise must be one of {', '.join(DEPTHWISE_MODES)}, got {depthwise!r}")
        if init not in INIT_MODES:
            raise ScarletError(f"supernet init must be one of {', '.join(INIT_MODES)}, got {init!r}")
        self.space = space = get_space(space)
        widths = {space.in_channels}
        layers = []
        for spec in space.layers:
            layers.append(SupernetLayer(spec, space, widths, depthwise))
            outs = set(spec.choices("filters"))
            can_skip = spec.choices("op", "ib") != ("ib",) or 0 in spec.choices("kernel", 1)
            widths = outs | widths if can_skip else outs
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Linear(max(widths), num_classes)
        init_weights(self)
        if init == "one-function":
            for layer in self.layers:
                layer.start_as_one_function(space)

    def _path(self, arch, resolution: int) -> list[tuple[int, ConcreteLayer]]:
        return [(i, c) for i, c in enumerate(resolve(self.space, arch, resolution)) if c.kind != "identity"]

    def forward(self, x: Tensor, arch) -> Tensor:
        path = self._path(arch, x.shape[-1])
        used = [self.layers[i].weights(c) for i, c in path]
        c_last = path[-1][1].c_out
        out = ops.network_forward([c for _, c in path], x, used.__getitem__,
                                  (self.classifier.weight[:, :c_last], self.classifier.bias), self.training)
        if self.training:
            for (i, c), w in zip(path, used):
                self.layers[i].write_back(c, w)
        return out

    def standalone_state_dict(self, arch) -> dict[str, Tensor]:
        """The path's sliced weights under ``DecisionStandaloneNet``'s state-dict names (copies)."""
        path = self._path(arch, 224)
        state = {}
        for j, (i, c) in enumerate(path):
            for key, t in self.layers[i].weights(c).items():
                state[f"layers.{j}.{key}"] = t.detach().clone()
        state["classifier.weight"] = self.classifier.weight[:, :path[-1][1].c_out].detach().clone()
        state["classifier.bias"] = self.classifier.bias.detach().clone()
        return state

    def build_standalone(self, arch) -> DecisionStandaloneNet:
        """The standalone network of ``arch`` with the supernet's sliced weights copied in."""
        p = next(self.parameters())
        net = DecisionStandaloneNet(self.space, arch, self.classifier.out_features).to(p.device, p.dtype)
        missing, unexpected = net.load_state_dict(self.standalone_state_dict(arch), strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise RuntimeError(f"standalone/supernet weight names disagree: {missing} {unexpected}")
        return net
