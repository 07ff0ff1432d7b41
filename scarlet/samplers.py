"""Path samplers: which single-path models a training step trains.

- :class:`FairSampler` (FairNAS Algorithm 1, strict fairness): a fresh uniform permutation of the m choices per
  layer per step; path k takes choice ``perm[l][k]`` at layer l, so the m paths of a step use every choice of
  every layer exactly once.
- :class:`UniformSampler` (SPOS): one uniformly random path per step.
- :class:`EFSampler` (FairNAS's expectation-fairness baseline "EF"): one uniformly random path, trained k = m
  times on the step's batch (k backward passes accumulated, one update), which meets expectation fairness only.

Every sampler draws from its own ``torch.Generator`` whose state is saved in checkpoints, so a resumed run samples
exactly the paths an uninterrupted one would.
"""

from __future__ import annotations

import torch

from scarlet.space import SearchSpace, get_space


class Sampler:
    name = "base"

    def __init__(self, space: SearchSpace | str, seed: int = 0):
        self.space = get_space(space)
        self.generator = torch.Generator().manual_seed(seed)

    def permutations(self) -> torch.Tensor:
        """(num_layers, paths) int64 tensor: column k is path k's architecture."""
        raise NotImplementedError

    def sample(self) -> list[tuple[int, ...]]:
        """The architectures of this step's paths, in training order."""
        perms = self.permutations()
        return [tuple(perms[:, k].tolist()) for k in range(perms.shape[1])]

    def state_dict(self) -> dict:
        return {"name": self.name, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["name"] != self.name:
            raise ValueError(f"sampler state is for {state['name']!r}, not {self.name!r}")
        self.generator.set_state(state["generator"])


class FairSampler(Sampler):
    name = "fair"

    def permutations(self) -> torch.Tensor:
        m, L = self.space.num_choices, self.space.num_layers
        return torch.stack([torch.randperm(m, generator=self.generator) for _ in range(L)])


class UniformSampler(Sampler):
    name = "uniform"

    def permutations(self) -> torch.Tensor:
        m, L = self.space.num_choices, self.space.num_layers
        return torch.randint(m, (L, 1), generator=self.generator)


class EFSampler(Sampler):
    name = "ef"

    def permutations(self) -> torch.Tensor:
        m, L = self.space.num_choices, self.space.num_layers
        return torch.randint(m, (L, 1), generator=self.generator).expand(L, m).clone()


SAMPLERS = {cls.name: cls for cls in (FairSampler, UniformSampler, EFSampler)}


def make_sampler(name: str, space: SearchSpace | str, seed: int = 0) -> Sampler:
    return SAMPLERS[name](space, seed)
