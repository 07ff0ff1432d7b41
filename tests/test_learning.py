"""A supernet that learns (issue 9): the init schemes, the mean of the shared gradients, the warm-up, and a tiny
two-choice supernet whose loss falls well below chance with the trainer's defaults."""

import copy
import json
import math

import pytest
import torch

from scarlet.blocks import MBConv, Stabilizer
from scarlet.data import BatchStream, load_dataset
from scarlet.errors import ScarletError
from scarlet.executor import make_step
from scarlet.fair_step import sequential_step, shared_parameters
from scarlet.supernet import Supernet
from scarlet.train import build_parser, learning_rate, _resolve_config


def tiny(init, space="scarlet-s2", skip="els", seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(space=space, skip=skip, width=0.25, resolution=16, stem_stride=2, in_channels=1, num_classes=10,
               init=init)
    cfg.update(overrides)
    return Supernet(**cfg).double().train()


def layer_input(model, layer, n=8, seed=0):
    """A batch as it reaches ``layer`` through the e3k3 path."""
    g = torch.Generator().manual_seed(seed)
    x = model.forward_stem(torch.randn(n, 1, model.resolution, model.resolution, generator=g, dtype=torch.float64))
    for l in range(layer):
        x = model.layers[l][0](x)
    return x


# Layer 0 of the skeleton: stride 2 and 16 -> 24 channels, so its MBConv choices have no shortcut.
@pytest.mark.parametrize("space", ["scarlet-s2", "fairnas"])
@torch.no_grad()
def test_same_function_init_makes_every_choice_of_a_layer_one_function(space):
    model = tiny("same-function", space)
    for layer in (0, 5):  # no shortcut; stride-1 48 -> 48 with shortcut (skeleton layer 6)
        x = layer_input(model, layer)
        blocks = [c for c in model.layers[layer] if isinstance(c, MBConv)]
        outs = [b(x) for b in blocks]
        assert outs[0].abs().max() > 0.1  # not a trivially zero function
        for b, out in zip(blocks, outs):
            # SE gates are the constant 0.5, which the last BN (batch statistics) normalises away up to its eps.
            torch.testing.assert_close(out, outs[0], rtol=1e-3, atol=1e-3 if b.se is not None else 1e-10)
    # Each choice keeps its own weights.
    ptrs = [p.data_ptr() for c in model.layers[0] for p in c.parameters()]
    assert len(ptrs) == len(set(ptrs))
    # The papers' independent init gives different functions (the check above can fail).
    ind = tiny("independent", space)
    x = layer_input(ind, 0)
    assert (ind.layers[0][0](x) - ind.layers[0][1](x)).abs().max() > 0.1


@torch.no_grad()
def test_same_function_choices_diverge_after_one_update():
    model = tiny("same-function")
    perms = torch.stack([torch.randperm(13) for _ in range(19)])
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 1, 16, 16, generator=g, dtype=torch.float64)
    labels = torch.randint(10, (8,), generator=g)
    with torch.enable_grad():
        sequential_step(model, images, labels, perms, torch.optim.SGD(model.parameters(), lr=0.1))
    x = layer_input(model, 0)
    a, b = model.layers[0][0], model.layers[0][2]  # e3k3 and e3k5 differ after they see different paths
    assert (a(x) - b(x)).abs().max() > 1e-4


@pytest.mark.parametrize("init", ["stable", "same-function"])
@torch.no_grad()
def test_stable_init_residual_blocks_and_els_start_as_identity(init):
    model = tiny(init)
    skip = tiny("independent", skip="skip")
    residual = 0
    for layer, shape in enumerate(model.shapes):
        x = layer_input(model, layer)
        for choice in model.layers[layer]:
            if isinstance(choice, MBConv) and choice.residual:
                residual += 1
                torch.testing.assert_close(choice(x), x, rtol=0, atol=0)
            elif isinstance(choice, Stabilizer):
                # the ELS computes what the plain skip computes: identity on the shared channels, zero elsewhere,
                # subsampled on stride 2 (layer 0 is stride 2 and 16 -> 24 channels)
                plain = skip.layers[layer][-1]
                assert isinstance(plain, Stabilizer) and plain.kind == "skip"
                torch.testing.assert_close(choice(x), plain(x), rtol=0, atol=0)
    assert residual > 0
    # Without the scheme neither holds.
    ind = tiny("independent")
    x = layer_input(ind, 0)
    assert (ind.layers[0][-1](x) - skip.layers[0][-1](x)).abs().max() > 0.1


def test_unknown_init_is_an_error():
    with pytest.raises(ScarletError, match="init"):
        Supernet(width=0.25, init="zeros")


def test_warmup_is_linear_then_cosine_and_a_pure_function_of_the_step():
    cfg = {"arch": None, "lr": 0.1, "epochs": 2, "warmup_steps": 4}
    lrs = [learning_rate(cfg, s, 10) for s in range(21)]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1)  # cosine starts at the peak after the warm-up ...
    assert lrs[12] == pytest.approx(0.05)  # ... is half-way 8 steps later ...
    assert lrs[20] == pytest.approx(0.0, abs=1e-12)  # ... and ends at 0 at the planned end
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert learning_rate({**cfg, "warmup_steps": 0}, 0, 10) == pytest.approx(0.1)
    standalone = {"arch": "scarlet-a", "lr": 0.1, "epochs": 2, "warmup_steps": 0}
    assert learning_rate(standalone, 25, 10) == pytest.approx(0.1 * 0.97)


def test_paper_config_keeps_the_papers_recipe():
    cfg = _resolve_config(build_parser().parse_args(["--config", "paper"]))
    assert (cfg["init"], cfg["shared_grad"], cfg["warmup_steps"]) == ("independent", "sum", 0)
    assert (cfg["lr"], cfg["batch_size"], cfg["width"], cfg["resolution"]) == (0.045, 256, 1.0, 224)
    default = _resolve_config(build_parser().parse_args([]))
    assert (default["init"], default["shared_grad"], default["lr"]) == ("same-function", "mean", 0.05)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_shared_grad_mean_is_the_sum_divided_by_the_paths_for_the_shared_parts_only():
    model = tiny("independent")
    perms = torch.stack([torch.randperm(13)[:3] for _ in range(19)])  # 3 paths (fewer than m keeps it fast)
    g = torch.Generator().manual_seed(2)
    images = torch.randn(8, 1, 16, 16, generator=g, dtype=torch.float64)
    labels = torch.randint(10, (8,), generator=g)
    summed = copy.deepcopy(model)
    sequential_step(summed, images, labels, perms, None, shared_grad="sum")
    sequential_step(model, images, labels, perms, None, shared_grad="mean")
    shared = {id(p) for p in shared_parameters(model)}
    a, b = _grads(summed), _grads(model)
    assert a.keys() == b.keys()
    scaled = 0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        if id(p) in shared:
            scaled += 1
            torch.testing.assert_close(b[name], a[name] / 3, rtol=1e-12, atol=0)
        else:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
    assert scaled == len(list(shared_parameters(model)))
    with pytest.raises(ScarletError, match="shared_grad"):
        sequential_step(model, images, labels, perms, None, shared_grad="max")


@pytest.mark.parametrize("in_flight", [None, 2])
def test_batched_executor_honours_mean_like_the_sequential_step(in_flight):
    """One SGD step of 4 paths in float64 (2 in flight: the stem is back-propagated after the chunks, then
    scaled)."""
    ref = tiny("independent", seed=3)
    got = copy.deepcopy(ref)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5) for m in (ref, got)]
    seq = make_step("sequential", ref, opts[0], shared_grad="mean")
    bat = make_step("batched", got, opts[1], shared_grad="mean", paths_in_flight=in_flight)
    g = torch.Generator().manual_seed(4)
    perms = torch.stack([torch.randperm(13, generator=g)[:4] for _ in range(19)])
    images = torch.randn(8, 1, 16, 16, generator=g, dtype=torch.float64)
    labels = torch.randint(10, (8,), generator=g)
    torch.testing.assert_close(seq(images, labels, perms), bat(images, labels, perms), rtol=1e-9, atol=1e-9)
    for (name, p), q in zip(ref.named_parameters(), got.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert (p.grad - q.grad).norm() <= 1e-8 * max(p.grad.norm().item(), 1e-6), name
        assert (p - q).norm() <= 1e-9 * max(p.norm().item(), 1e-6), name


def test_two_choice_supernet_learns_well_below_chance_with_the_default_recipe():
    """Strict fairness over two different choices per layer (e3k3 and e6k5+SE), m = 2 paths and one update per
    step, with the trainer's defaults (init, shared-gradient mode, warm-up, learning rate, batch 64): 24 steps at
    16x16 bring the training loss far below chance (ln 10 = 2.30; measured 0.77). The papers' independent init with
    summed gradients and lr 0.045 * 64 / 256 (the defaults before issue 9) stays at chance here (measured 2.29)."""
    cfg = _resolve_config(build_parser().parse_args([]))
    torch.manual_seed(0)
    model = Supernet(space="scarlet-s2", width=0.25, resolution=16, stem_stride=2, in_channels=1, num_classes=10,
                     init=cfg["init"]).train()
    data = load_dataset("digits", 16)
    stream = BatchStream(data.train, cfg["batch_size"], seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    step = make_step("sequential", model, opt, shared_grad=cfg["shared_grad"])
    choices = torch.tensor([0, 9])  # e3k3 and e6k5+SE
    steps = 24
    gen = torch.Generator().manual_seed(0)
    losses = []
    for s in range(steps):
        lr = learning_rate({**cfg, "epochs": 1}, s, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        perms = torch.stack([choices[torch.randperm(2, generator=gen)] for _ in range(19)])
        images, labels = stream.next()
        losses.append(step(images, labels, perms).mean().item())
    final = sum(losses[-5:]) / 5
    assert final < 0.5 * math.log(10), losses


def test_run_saved_before_the_new_options_resumes_with_the_old_recipe(tmp_path):
    """A checkpoint without init / shared_grad / warmup_steps (older runs) resumes as it was trained."""
    from scarlet.checkpoint import load_checkpoint, save_checkpoint
    from scarlet.train import main

    out = tmp_path / "run"
    tiny_run = ["--space", "fairnas", "--width", "0.125", "--resolution", "16", "--batch-size", "8", "--epochs", "1",
                "--eval-archs", "0", "--recalib-batches", "0", "--no-progress", "--out", str(out)]
    main([*tiny_run, "--max-steps", "1", "--init", "independent", "--shared-grad", "sum", "--warmup-steps", "0"])
    state = load_checkpoint(out / "checkpoint.pt")
    for key in ("init", "shared_grad", "warmup_steps"):
        del state["run_config"][key]
    del state["config"]["init"]
    save_checkpoint(out / "checkpoint.pt", state)
    assert main(["--resume", "--max-steps", "2", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["init"], config["shared_grad"], config["warmup_steps"]) == ("independent", "sum", 0)
    with pytest.raises(SystemExit, match="2"):  # a changed recipe is refused on resume (one line, exit 2)
        main(["--resume", "--max-steps", "3", "--out", str(out), "--init", "stable"])
