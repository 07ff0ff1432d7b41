"""The stacked multi-path forward: P paths of a supernet in one pass, slots of equal shape as grouped ops.

Layout: between layers the P path activations are one tensor (B, P * C, H, W), slot s in channels
[s * C, (s + 1) * C), in the slot order of the layer's :class:`~scarlet.executor.plan.LayerPlan`. A layer gathers
each group's inputs from the previous layer's output with its (device) source index, runs the group with
weights concatenated inside the autograd graph (so every choice keeps its own parameters and gets its own
gradient), and concatenates the groups' outputs in slot order.

- Stem and first block run once on the batch (their BN statistics updated once per path, see
  :mod:`scarlet.executor.norm`); the first searchable layer reads the shared tensor directly (a grouped conv
  over identical inputs is one conv with the slots' weights stacked on the output channels).
- Stage A: 1x1 expansion as a conv with ``groups`` = slots, one BN over the group, activation.
- Stage B: depthwise conv per run of equal kernel size (or one masked-depthwise launch from
  :mod:`scarlet_kernels` on a GPU), one BN, activation; SE gates on the SE slots only.
- Stage C: 1x1 projection with ``groups`` = slots, one BN, residual.
- The head runs on the stacked paths: its 1x1 conv is one conv over (B * P) images, its BN is segmented per path.

scarlet_kernels' fused SE and ELS-pointwise kernels are not called here. Both take paths stacked as
(P, N, C, H, W), so every call would need a transposing copy of the (B, P * C, H, W) activation each way, as the
masked depthwise conv does; SE here is already one mean, two grouped 1x1 convs and one multiply per group. ELS
fusion composes an ELS with the *next layer's* 1x1 conv on the same path, but the next layer groups its slots by
hidden width across paths whatever their previous choice, so fusing would split each group into "after an ELS"
and "after an MBConv" parts and add grouped convs to save the smallest op of a layer. Neither was measured on a
GPU; on a CPU the kernels would run their PyTorch reference.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from scarlet.executor.plan import MBGroup, Plan

KERNEL_ENVELOPE = 7


def _cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def _gather(x: torch.Tensor, slots: int, index: torch.Tensor) -> torch.Tensor:
    """Slots ``index`` of the stacked activation x (B, slots * C, H, W), as (B, len(index) * C, H, W)."""
    b, c, h, w = x.shape
    picked = x.view(b, slots, c // slots, h, w).index_select(1, index)
    return picked.view(b, -1, h, w)


def dead_border_taps(size: int, kernel: int, stride: int) -> int:
    """Kernel rows (and columns) at each border of a ``kernel``-wide, "same"-padded conv that only ever meet the
    zero padding of a ``size``-wide input: at 1x1 or 2x2 feature maps most of a 7x7 kernel is such taps."""
    pad = kernel // 2
    out = (size + 2 * pad - kernel) // stride + 1
    left = pad - (out - 1) * stride  # taps left of the first input row for every output, the last included
    right = kernel - pad - size  # taps right of the last input row even for the first output
    return max(0, min(left, right))


class _Kernels:
    """scarlet_kernels' masked depthwise conv when importable; on error, one warning and PyTorch ops after."""

    def __init__(self, mode: str):
        self.fn, self.mode = None, mode
        if mode == "off":
            return
        try:
            from scarlet_kernels import masked_depthwise_conv2d
        except Exception as e:  # noqa: BLE001 - any import failure means "no kernels"
            if mode == "on":
                raise
            if torch.cuda.is_available():
                warnings.warn(f"scarlet_kernels unavailable ({e}); the batched executor uses PyTorch ops",
                              stacklevel=3)
            return
        self.fn = masked_depthwise_conv2d

    def usable(self, x: torch.Tensor) -> bool:
        """Mode "auto" uses the kernels on CUDA tensors only, "on" everywhere (on a CPU: their PyTorch reference)."""
        return self.fn is not None and (x.is_cuda or self.mode == "on")

    def disable(self, error: Exception) -> None:
        warnings.warn(f"scarlet_kernels' masked depthwise conv failed ({error}); falling back to PyTorch ops",
                      stacklevel=3)
        self.fn = None


class StackedForward:
    """Runs a :class:`Plan` through a supernet with a pluggable BatchNorm (see :mod:`scarlet.executor.norm`)."""

    def __init__(self, model, kernels: str = "auto"):
        if kernels not in ("auto", "on", "off"):
            raise ValueError(f"kernels must be 'auto', 'on' or 'off', got {kernels!r}")
        self.model = model
        self.kernels = _Kernels(kernels)
        self._static: dict = {}  # small index tensors that depend only on the plan's signature

    # -- fixed parts ------------------------------------------------------------------------------------------
    def stem(self, images: torch.Tensor, norm, repeat: int) -> torch.Tensor:
        """Stem and first block, computed once; their BN modules see ``repeat`` identical updates."""
        stem, first = self.model.stem, self.model.first
        x = stem.conv(images)
        x = stem.act(norm(x, [stem.bn], ("stem", "bn"), repeat=repeat))
        x = first.conv_dw(x)
        x = first.act(norm(x, [first.bn1], ("first", "bn1"), repeat=repeat))
        x = first.conv_pw(x)
        return norm(x, [first.bn2], ("first", "bn2"), repeat=repeat)

    def head(self, x: torch.Tensor, slots: int, norm, order: torch.Tensor, dropout: str,
             dropout_order: list[int] | None = None):
        """Logits (B, slots, classes) of the stacked last-layer output, in slot order.

        ``dropout``: "off" (evaluation), "exact" (one mask per path, drawn in path order (``dropout_order``: the
        slots in path order) as the sequential step draws them).
        """
        head = self.model.head
        b, c, h, w = x.shape
        y = head.conv(x.reshape(b * slots, c // slots, h, w))
        y = y.reshape(b, -1, h, w)  # a view in NCHW, a copy in channels_last
        y = head.act(norm(y, [head.bn] * slots, ("head", "bn"), order=order))
        feats = y.mean((2, 3)).view(b, slots, -1)
        p = head.dropout.p if isinstance(head.dropout, torch.nn.Dropout) else 0.0
        if p > 0 and dropout == "exact":
            parts = [None] * slots
            for s in dropout_order:
                parts[s] = F.dropout(feats[:, s], p, True)
            feats = torch.stack(parts, 1)
        return F.linear(feats, head.classifier.weight, head.classifier.bias)

    # -- searchable layers ------------------------------------------------------------------------------------
    def layers(self, x: torch.Tensor, plan: Plan, sources: list, norm) -> torch.Tensor:
        """Every searchable layer; ``x`` is the shared stem output, ``sources`` the routing views."""
        prev_slots = None  # None: x is the shared (unstacked) stem output
        for index, lp in enumerate(plan.layers):
            x = self._layer(index, lp, x, prev_slots, sources[index], norm)
            prev_slots = lp.size
        return x

    def _layer(self, index, lp, x, prev_slots, source, norm):
        modules = self.model.layers[index]
        pieces = []
        for gi, g in enumerate(lp.groups):
            mods = [modules[c] for c in lp.choices[g.start:g.stop]]
            xin = x if prev_slots is None else _gather(x, prev_slots, source[g.start:g.stop])
            pieces.append(self._mbconv_group(index, gi, g, mods, xin, prev_slots is None, norm))
        if lp.identity is not None:
            a, e = lp.identity
            mods = [modules[c] for c in lp.choices[a:e]]
            xin = x if prev_slots is None else _gather(x, prev_slots, source[a:e])
            pieces.append(self._identity_group(mods, xin, prev_slots is None))
        return _cat(pieces, 1)

    def _mbconv_group(self, index: int, gi: int, g: MBGroup, mods, xin, shared: bool, norm):
        n, m0 = g.size, mods[0]
        site = (index, gi)
        # Stage A: expansion. On a shared input the grouped conv is one conv with stacked output channels.
        y = F.conv2d(xin, _cat([m.conv_pw.weight for m in mods]), groups=1 if shared else n)
        y = m0.act1(norm(y, [m.bn1 for m in mods], site + ("bn1",)))
        # Stage B: depthwise.
        y = self._depthwise(y, g, mods)
        y = m0.act2(norm(y, [m.bn2 for m in mods], site + ("bn2",)))
        if g.se_positions:
            y = self._squeeze_excite(y, g, mods)
        # Stage C: projection.
        y = F.conv2d(y, _cat([m.conv_pwl.weight for m in mods]), groups=n)
        y = norm(y, [m.bn3 for m in mods], site + ("bn3",))
        if m0.residual:
            y = y + (xin.repeat(1, n, 1, 1) if shared else xin)
        return y

    def _depthwise(self, y: torch.Tensor, g: MBGroup, mods) -> torch.Tensor:
        stride, hid = mods[0].stride, g.hidden
        if len(g.kernel_runs) > 1 and self.kernels.usable(y):
            try:
                return self._masked_depthwise(y, g, mods)
            except Exception as e:  # noqa: BLE001 - a failing kernel is replaced by PyTorch ops, once
                if y.is_cuda and torch.cuda.is_current_stream_capturing():
                    raise  # fails the capture, which falls back to eager steps
                self.kernels.disable(e)
        # split, not slicing: its backward is one concatenation, not a zero-filled tensor per run
        parts = y.split([(run.stop - run.start) * hid for run in g.kernel_runs], 1)
        outs = []
        for run, part in zip(g.kernel_runs, parts):
            weight = _cat([m.conv_dw.weight for m in mods[run.start:run.stop]])
            # Taps that only meet padding contribute exact zeros; dropping them is the same conv, and much faster
            # on small maps (oneDNN's depthwise backward at 1x1 maps costs as much for a 7x7 kernel as at 8x8).
            dead = min(dead_border_taps(n, run.kernel, stride) for n in part.shape[-2:])
            if dead:
                weight = weight[:, :, dead:run.kernel - dead, dead:run.kernel - dead]
            outs.append(F.conv2d(part, weight, None, stride, run.kernel // 2 - dead, 1,
                                 (run.stop - run.start) * hid))
        return _cat(outs, 1)

    def _masked_depthwise(self, y, g: MBGroup, mods):
        n, hid = g.size, g.hidden
        b, _, h, w = y.shape
        weights = []
        for m in mods:
            pad = (KERNEL_ENVELOPE - m.kernel) // 2
            weights.append(F.pad(m.conv_dw.weight[:, 0], (pad, pad, pad, pad)))
        weight = torch.stack(weights).to(y.dtype)
        key = ("kernels", y.device, tuple(m.kernel for m in mods))
        if key not in self._static:
            self._static[key] = torch.tensor([m.kernel for m in mods], dtype=torch.int32, device=y.device)
        x5 = y.view(b, n, hid, h, w).transpose(0, 1).contiguous()
        out = self.kernels.fn(x5, weight, self._static[key], stride=mods[0].stride)
        return out.transpose(0, 1).reshape(b, n * hid, out.shape[-2], out.shape[-1])

    def _squeeze_excite(self, y: torch.Tensor, g: MBGroup, mods) -> torch.Tensor:
        n, hid = g.size, g.hidden
        b = y.shape[0]
        se = [mods[p].se for p in g.se_positions]
        ns = len(se)
        pooled = y.mean((2, 3)).view(b, n, hid)
        if ns < n:
            key = ("se", y.device, g.se_positions)
            if key not in self._static:
                self._static[key] = torch.tensor(g.se_positions, dtype=torch.int64, device=y.device)
            positions = self._static[key]
            pooled = pooled.index_select(1, positions)
        s = pooled.reshape(b, ns * hid, 1, 1)
        s = se[0].act(F.conv2d(s, _cat([m.conv_reduce.weight for m in se]), _cat([m.conv_reduce.bias for m in se]),
                               groups=ns))
        s = se[0].gate(F.conv2d(s, _cat([m.conv_expand.weight for m in se]), _cat([m.conv_expand.bias for m in se]),
                                groups=ns))
        if ns < n:  # gates of 1 on the slots without SE
            s = torch.ones(b, n, hid, dtype=s.dtype, device=s.device).index_copy(1, positions, s.view(b, ns, hid))
        return y * s.view(b, n * hid, 1, 1)

    def _identity_group(self, mods, xin, shared: bool) -> torch.Tensor:
        m0, n = mods[0], len(mods)
        if m0.conv is None:  # plain skip: subsample, zero channels appended
            b, c, h, w = xin.shape
            slots = 1 if shared else n
            y = xin.view(b, slots, c // slots, h, w)
            if m0.stride > 1:
                y = y[..., :: m0.stride, :: m0.stride]
            if m0.out_channels > m0.in_channels:
                y = F.pad(y, (0, 0, 0, 0, 0, m0.out_channels - m0.in_channels))
            y = y.reshape(b, slots * m0.out_channels, y.shape[-2], y.shape[-1])
            return y.repeat(1, n, 1, 1) if shared and n > 1 else y
        y = F.conv2d(xin, _cat([m.conv.weight for m in mods]), None, m0.stride, 0, 1, 1 if shared else n)
        return torch.relu(y) if m0.kind == "els-relu" else y

    # -- whole pass -------------------------------------------------------------------------------------------
    def logits(self, x0: torch.Tensor, plan: Plan, routing: torch.Tensor, norm,
               dropout: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, P, classes) in slot order, head order) from the shared stem output."""
        sources, order = plan.routing_views(routing)
        x = self.layers(x0, plan, sources, norm)
        dropout_order = plan.head_order() if dropout == "exact" else None
        return self.head(x, plan.num_paths, norm, order, dropout, dropout_order), order

    def losses(self, x0, labels, plan, routing, norm, dropout="exact") -> tuple[torch.Tensor, torch.Tensor]:
        """(per-slot mean cross-entropy (P,), head order): slot s's loss is ``losses[s]``."""
        logits, order = self.logits(x0, plan, routing, norm, dropout)
        b, p, k = logits.shape
        per = F.cross_entropy(logits.reshape(b * p, k), labels.repeat_interleave(p), reduction="none")
        return per.view(b, p).mean(0), order
