"""The cost T(a) of TuNAS's reward, from one of three sources (sheet A5):

- ``madds``: multiply-accumulates of the deployed network (``scarlet.decisions.cost``), in millions;
- ``latency``: a per-layer latency table measured on this machine (``scarlet.tunas.latency``), in ms;
- ``table``: a latency (or any additive cost) table supplied by the user, in the same JSON format.

TuNAS's cost model is linear in one-hot per-layer features, i.e. a per-layer lookup table summed over the layers
plus a bias. A table here holds, for every layer of the space, one entry per *concrete form* the layer can take
(input and output widths, kernel, expanded width, SE, stride, feature-map size: what ``concrete.resolve`` gives),
and a fit ``T = scale * sum(entries) + bias`` of whole networks (the pool, the classifier and per-call overheads
are in the bias). Zeroed layers are identities and cost nothing.

Table file (JSON)::

    {"format": "scarlet-cost-table", "version": 1, "space": "proxylessnas", "width": 0.25, "divisor": 8,
     "in_channels": 1, "resolution": 32, "num_classes": 10, "unit": "ms", "device": "...",
     "fit": {"scale": 1.0, "bias": 0.2},
     "layers": {"stem": [{"form": {"kind": "conv", "c_in": 1, ...}, "cost": 0.05}, ...], ...}}

Every form of every layer must be present; anything else is a one-line ScarletError naming the file and the entry.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, fields
from pathlib import Path

from scarlet.decisions.arch import DecisionArch
from scarlet.decisions.concrete import ConcreteLayer, resolve
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.space import Decision, Space
from scarlet.errors import ScarletError

TABLE_FORMAT = "scarlet-cost-table"
TABLE_VERSION = 1
COST_SOURCES = ("madds", "latency", "table")
TABLE_MAX_BYTES = 64 << 20
FORM_FIELDS = tuple(f.name for f in fields(ConcreteLayer) if f.name != "name")


def form_of(c: ConcreteLayer) -> dict:
    d = asdict(c)
    d.pop("name")
    return d


def form_key(form: dict) -> tuple:
    return tuple(form[f] for f in FORM_FIELDS)


def layer_forms(space: Space, resolution: int) -> dict[str, list[ConcreteLayer]]:
    """Every concrete form of every (non-identity) layer, in space order.

    A TuNAS layer's form depends on its own decisions and on its input width, which is the filters value of the
    layer before it (zeroed layers keep the width), so the product of those decisions enumerates them all.
    """
    if space.family != "tunas":
        raise ScarletError(f"cost tables are built for the TuNAS spaces, not {space.name}")
    base = {d.key: d.choices[0] for d in space.decisions}
    out: dict[str, list[ConcreteLayer]] = {}
    prev_filters = None
    for i, spec in enumerate(space.layers):
        keys = [d.key for d in spec.decisions()]
        if isinstance(prev_filters, Decision) and prev_filters.key not in keys:
            keys.append(prev_filters.key)
        seen: dict[tuple, ConcreteLayer] = {}
        for combo in itertools.product(*(space.decision(k).choices for k in keys)):
            values = {**base, **dict(zip(keys, combo))}
            c = resolve(space, DecisionArch(space.name, tuple(values.items())), resolution)[i]
            if c.kind != "identity":
                seen.setdefault(form_key(form_of(c)), c)
        out[spec.name] = list(seen.values())
        prev_filters = spec.attr("filters")
    return out


def table_header(space: Space, resolution: int, num_classes: int) -> dict:
    return {"format": TABLE_FORMAT, "version": TABLE_VERSION, "space": space.name,
            "in_channels": space.in_channels, "divisor": space.divisor, "resolution": resolution,
            "num_classes": num_classes}


class TableCost:
    """``T(a) = scale * sum of the per-layer entries + bias``, from a validated table."""

    def __init__(self, table: dict, space: Space, resolution: int, num_classes: int, source: str):
        self.source = source
        self.unit = table.get("unit", "")
        self.scale, self.bias = float(table["fit"]["scale"]), float(table["fit"]["bias"])
        self.entries = {name: {form_key(e["form"]): float(e["cost"]) for e in entries}
                        for name, entries in table["layers"].items()}
        self.space, self.resolution = space, resolution

    def layer_sum(self, arch) -> float:
        total = 0.0
        for spec, c in zip(self.space.layers, resolve(self.space, arch, self.resolution)):
            if c.kind == "identity":
                continue
            try:
                total += self.entries[spec.name][form_key(form_of(c))]
            except KeyError:
                raise ScarletError(f"{self.source}: no entry for layer {spec.name} form {form_of(c)}") from None
        return total

    def __call__(self, arch) -> float:
        return self.scale * self.layer_sum(arch) + self.bias


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_table(table, space: Space, resolution: int, num_classes: int, source: str) -> dict:
    """Refuse, in one line naming ``source`` and the entry, a table that does not fit this run exactly."""
    if not isinstance(table, dict):
        raise ScarletError(f"{source} must hold a JSON object")
    if table.get("format") != TABLE_FORMAT or table.get("version") != TABLE_VERSION:
        raise ScarletError(f"{source} is not a {TABLE_FORMAT} version {TABLE_VERSION} file (format/version keys)")
    for key, want in table_header(space, resolution, num_classes).items():
        if table.get(key) != want:
            raise ScarletError(f"{source}: {key} is {json.dumps(table.get(key))}, this run needs {json.dumps(want)}")
    fit = table.get("fit")
    if not isinstance(fit, dict) or not all(_is_number(fit.get(k)) for k in ("scale", "bias")) \
            or fit["scale"] <= 0:
        raise ScarletError(f"{source}: fit must be {{\"scale\": number > 0, \"bias\": number}}")
    layers = table.get("layers")
    if not isinstance(layers, dict):
        raise ScarletError(f"{source}: layers must map layer names to lists of entries")
    forms = layer_forms(space, resolution)
    unknown = set(layers) - set(forms)
    if unknown:
        raise ScarletError(f"{source}: space {space.name} has no layer {sorted(unknown)[0]!r}")
    for name, wanted in forms.items():
        entries = layers.get(name)
        if not isinstance(entries, list):
            raise ScarletError(f"{source}: layer {name} is missing or not a list of entries")
        have = set()
        for j, e in enumerate(entries):
            where = f"{source}: layer {name} entry {j}"
            if not isinstance(e, dict) or not isinstance(e.get("form"), dict) or set(e["form"]) != set(FORM_FIELDS):
                raise ScarletError(f"{where} must be {{\"form\": {{{', '.join(FORM_FIELDS)}}}, \"cost\": number}}")
            if not _is_number(e.get("cost")) or e["cost"] < 0:
                raise ScarletError(f"{where}: cost must be a finite number >= 0, got {json.dumps(e.get('cost'))}")
            have.add(form_key(e["form"]))
        missing = [c for c in wanted if form_key(form_of(c)) not in have]
        if missing:
            raise ScarletError(f"{source}: layer {name} lacks {len(missing)} of its {len(wanted)} forms "
                               f"(first: {form_of(missing[0])})")
    return table


def read_table(path: str, space: Space, resolution: int, num_classes: int) -> TableCost:
    p = Path(path)
    source = f"cost table {p}"
    if not p.is_file():
        raise ScarletError(f"{source} does not exist" if not p.exists() else f"{source} is not a file")
    if p.stat().st_size > TABLE_MAX_BYTES:
        raise ScarletError(f"{source} is larger than {TABLE_MAX_BYTES >> 20} MiB")
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScarletError(f"{source} is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ScarletError(f"{source} is not valid JSON ({getattr(e, 'msg', 'too deep')})") from None
    return TableCost(check_table(table, space, resolution, num_classes, source), space, resolution, num_classes,
                     source)


class MaddsCost:
    """Millions of multiply-accumulates of the deployed network."""

    unit = "MMAdds"

    def __init__(self, space: Space, resolution: int, num_classes: int):
        self.model = DecisionCostModel(space, resolution, num_classes)

    def __call__(self, arch) -> float:
        return self.model.madds(arch) / 1e6
