"""The routing plan: slot layout by shape, static signature under strict fairness, gather indices."""

from executor_cases import fair_perms, tiny_model
from scarlet.executor import build_plan
from scarlet.samplers import EFSampler


def archs_of(perms):
    return [tuple(col) for col in perms.t().tolist()]


def test_s2_slots_grouped_by_shape():
    model = tiny_model("scarlet-s2")
    plan = build_plan(model, archs_of(fair_perms("scarlet-s2", seed=1)))
    for lp in plan.layers:
        assert lp.choices == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)  # e3 (k3, k3se, ...), e6, identity
        assert [(g.start, g.stop) for g in lp.groups] == [(0, 6), (6, 12)]
        for g in lp.groups:
            assert [(r.start, r.stop, r.kernel) for r in g.kernel_runs] == [(0, 2, 3), (2, 4, 5), (4, 6, 7)]
            assert g.se_positions == (1, 3, 5)
        assert lp.identity == (12, 13)
    per_choice = build_plan(model, archs_of(fair_perms("scarlet-s2", seed=1)), grouping="choice")
    assert len(per_choice.layers[0].groups) == 12


def test_signature_is_static_under_strict_fairness_and_routing_follows_paths():
    model = tiny_model("scarlet-s1")
    plans = [build_plan(model, archs_of(fair_perms("scarlet-s1", seed=s))) for s in range(3)]
    assert len({p.signature for p in plans}) == 1
    assert len({tuple(p.routing().tolist()) for p in plans}) == 3
    plan, perms = plans[0], fair_perms("scarlet-s1", seed=0)
    for layer in range(1, len(plan.layers)):
        prev, cur = plan.layers[layer - 1], plan.layers[layer]
        for slot, src in enumerate(plan.sources(layer)):
            assert prev.paths[src] == cur.paths[slot]  # the slot reads its own path's activation
            assert cur.choices[slot] == perms[layer, cur.paths[slot]]
    last = plan.layers[-1]
    assert [last.paths[s] for s in plan.head_order()] == list(range(plan.num_paths))


def test_duplicates_sorted_by_path():
    model = tiny_model("scarlet-s1")
    perms = EFSampler("scarlet-s1", seed=0).permutations()
    plan = build_plan(model, archs_of(perms))
    for lp in plan.layers:
        assert lp.paths == tuple(range(7))
        assert len(set(lp.choices)) == 1
    assert plan.routing().tolist() == list(range(7)) * len(plan.layers)
