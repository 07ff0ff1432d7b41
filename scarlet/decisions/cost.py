"""MAdds and parameters of the deployed network of an architecture in a decision space, from per-layer tables.

Counting convention (as ``scarlet.cost``, REFERENCE section 5): MAdds are the multiply-accumulates of every
convolution (SE / attention 1x1 convs included) and of the classifier, nothing for BN, activations, pooling,
residual additions or the attention scaling; parameters are conv weights and biases, BN scale and shift, and the
classifier's weight and bias. Identity layers cost nothing.

A layer's cost depends only on its concrete form (input width, kernel, expanded width, attention, output width,
feature-map size), so each layer keeps a table from concrete form to (MAdds, params), filled on first use; the
cost of an architecture is a sum of lookups plus the classifier.

``num_classes`` defaults to 1000. TuNAS's networks have a 1001-way classifier (TFDS labels, index 1000 unused):
with C head channels that adds C MAdds and C + 1 parameters (1281 parameters for a 1280-wide head).
"""

from __future__ import annotations

from scarlet.decisions.concrete import ConcreteLayer, resolve
from scarlet.decisions.space import Space, get_space


def layer_cost(c: ConcreteLayer) -> tuple[int, int]:
    """(MAdds, params) of one concrete layer."""
    out2, in2 = c.out_size**2, c.in_size**2
    if c.kind == "identity":
        return 0, 0
    if c.kind == "conv":
        return c.c_in * c.c_out * c.kernel**2 * out2, c.c_in * c.c_out * c.kernel**2 + 2 * c.c_out
    if c.kind == "conv_bias":
        return c.c_in * c.c_out, c.c_in * c.c_out + c.c_out
    if c.kind == "project":
        return c.c_in * c.c_out * out2, c.c_in * c.c_out + 2 * c.c_out
    if c.kind == "sepconv":
        madds = c.c_in * c.kernel**2 * out2 + c.c_in * c.c_out * out2
        return madds, c.c_in * c.kernel**2 + 2 * c.c_in + c.c_in * c.c_out + 2 * c.c_out
    if c.kind == "ib":
        h, r = c.hidden, max(c.attention, 1)
        madds = c.c_in * h * in2 + r * h * c.kernel**2 * out2 + h * c.c_out * out2
        params = c.c_in * h + 2 * h + r * h * c.kernel**2 + 2 * r * h + h * c.c_out + 2 * c.c_out
        if c.attention:
            madds += h * c.reduced + c.reduced * r * h
            params += h * c.reduced + c.reduced + c.reduced * r * h + r * h
        return madds, params
    raise ValueError(f"unknown layer kind {c.kind!r}")


class DecisionCostModel:
    """Cost tables of one space at one input resolution and number of classes."""

    def __init__(self, space: str | Space, resolution: int = 224, num_classes: int = 1000):
        self.space = get_space(space)
        self.resolution, self.num_classes = resolution, num_classes
        self.tables: list[dict[ConcreteLayer, tuple[int, int]]] = [{} for _ in self.space.layers]

    def cost(self, arch) -> tuple[int, int]:
        """(MAdds, params) of the deployed network of ``arch``."""
        madds = params = 0
        layers = resolve(self.space, arch, self.resolution)
        for table, c in zip(self.tables, layers):
            if c not in table:
                table[c] = layer_cost(c)
            m, p = table[c]
            madds, params = madds + m, params + p
        width = layers[-1].c_out
        return madds + width * self.num_classes, params + width * self.num_classes + self.num_classes

    def madds(self, arch) -> int:
        return self.cost(arch)[0]

    def params(self, arch) -> int:
        return self.cost(arch)[1]
