"""Cost model: MAdds and parameters of the deployed network of an architecture, from precomputed tables.

Counting convention (REFERENCE section 5, reproduces the papers' figures): MAdds are the multiply-accumulates of
every convolution and of the classifier, SE 1x1 convolutions included, nothing for BN, activations, pooling or the
SE scaling; parameters are conv weights, SE biases, BN scale and shift, classifier weight and bias.

The cost of an architecture is that of its deployed network (ELS folded away): an identity costs nothing, and the
next real convolution takes the channels of the last non-identity output. So a layer's cost depends on the width
that reaches it, and the tables are indexed ``[layer][choice][input width]``; the cost of an architecture is a
sum of lookups.

CLI: ``python -m scarlet.cost ARCH [--space S] [--resolution R] [--classes N] [--width W] [--json]``.
"""

from __future__ import annotations

import json
import sys

from scarlet.arch import Arch, parse_arch
from scarlet.errors import ArgumentParser, cli_main
from scarlet.space import get_space, scale_channels
from scarlet.supernet import SupernetConfig, conv_out, layer_shapes


def _bn(c: int) -> int:
    return 2 * c


def mbconv_cost(c_in: int, hidden: int, c_out: int, kernel: int, se: bool, in_size: int,
                out_size: int) -> tuple[int, int]:
    """(MAdds, params) of one MBConv block whose expansion conv sees ``c_in`` channels."""
    madds = c_in * hidden * in_size**2 + hidden * kernel**2 * out_size**2 + hidden * c_out * out_size**2
    params = c_in * hidden + _bn(hidden) + hidden * kernel**2 + _bn(hidden) + hidden * c_out + _bn(c_out)
    if se:
        r = hidden // 4
        madds += 2 * hidden * r
        params += 2 * hidden * r + r + hidden
    return madds, params


class CostModel:
    """Lookup tables for one supernet configuration (space, width, resolution, classes)."""

    def __init__(self, config: SupernetConfig):
        self.config = config
        self.space = space = get_space(config.space)
        w = config.width
        shapes = layer_shapes(config)
        stem_ch = scale_channels(space.stem_channels, w)
        first_ch = scale_channels(space.first_block_channels, w)
        tail_ch = scale_channels(space.tail_channels, w)
        s = conv_out(config.resolution, config.stem_stride)
        # Fixed parts: stem conv + first block (dw 3x3, 1x1), classifier; the tail conv depends on its input.
        self.fixed_madds = (config.in_channels * stem_ch * 9 * s * s + stem_ch * 9 * s * s + stem_ch * first_ch * s * s
                            + tail_ch * config.num_classes)
        self.fixed_params = (config.in_channels * stem_ch * 9 + _bn(stem_ch) + stem_ch * 9 + _bn(stem_ch)
                             + stem_ch * first_ch + _bn(first_ch) + tail_ch * config.num_classes + config.num_classes)
        # Widths that can reach each layer: the first block's output or any earlier layer's output.
        reach = [first_ch]
        self.tables: list[list[dict[int, tuple[int, int]]]] = []
        for shape in shapes:
            per_choice = []
            for c in space.choices:
                if c.identity:
                    per_choice.append({w_in: (0, 0) for w_in in reach})
                    continue
                hidden = round(shape.in_channels * c.expansion)
                per_choice.append({w_in: mbconv_cost(w_in, hidden, shape.out_channels, c.kernel, c.se,
                                                     shape.in_size, shape.out_size) for w_in in reach})
            self.tables.append(per_choice)
            reach = sorted(set(reach) | {shape.out_channels})
        final = shapes[-1].out_size
        self.tail = {w_in: (w_in * tail_ch * final * final, w_in * tail_ch + _bn(tail_ch)) for w_in in reach}
        self.out_channels = [s.out_channels for s in shapes]
        self.first_channels = first_ch

    def cost(self, arch: Arch | tuple[int, ...]) -> tuple[int, int]:
        """(MAdds, params) of the deployed network of ``arch``."""
        genes = arch.genes if isinstance(arch, Arch) else arch
        madds, params = self.fixed_madds, self.fixed_params
        width = self.first_channels
        identity = self.space.identity_index
        for layer, (table, g) in enumerate(zip(self.tables, genes)):
            m, p = table[g][width]
            madds += m
            params += p
            if g != identity:
                width = self.out_channels[layer]
        m, p = self.tail[width]
        return madds + m, params + p

    def madds(self, arch) -> int:
        return self.cost(arch)[0]

    def params(self, arch) -> int:
        return self.cost(arch)[1]


def _parse(argv):
    p = ArgumentParser(prog="python -m scarlet.cost", description="MAdds and parameters of an architecture "
                                "(deployed network, ELS folded away).")
    p.add_argument("arch", help="encoding '1,3,...', readable tokens or a name such as scarlet-a")
    p.add_argument("--space", default=None, help="search space (default: the named architecture's, else scarlet-s2)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--stem-stride", type=int, default=2, choices=(1, 2))
    p.add_argument("--json", action="store_true", help="print JSON")
    return p.parse_args(argv)


@cli_main
def main(argv=None):
    from scarlet.arch import NAMED_ARCHS

    args = _parse(argv)
    space = args.space or NAMED_ARCHS.get(args.arch.strip().lower(), ("scarlet-s2",))[0]
    config = SupernetConfig(space=space, resolution=args.resolution, num_classes=args.classes, width=args.width,
                            stem_stride=args.stem_stride)
    arch = parse_arch(args.arch, config.space)
    madds, params = CostModel(config).cost(arch)
    if args.json:
        print(json.dumps({"arch": arch.encoding(), "space": config.space, "resolution": config.resolution,
                          "classes": config.num_classes, "madds": madds, "params": params}))
    else:
        print(f"{arch.encoding()} ({config.space}, {config.resolution}x{config.resolution}, "
              f"{config.num_classes} classes): {madds / 1e6:.1f}M MAdds, {params / 1e6:.2f}M params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
