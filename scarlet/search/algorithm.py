"""What every search strategy shares: configuration, the generation loop, history, results, checkpointable state.

A strategy subclasses :class:`SearchAlgorithm` and implements ``initialize``, ``step``, ``done``,
``front_genomes`` and its own part of the state. The loop is

    algo = NSGA2(problem, config)
    algo.load_state_dict(saved)            # optional: resume
    result = algo.run(callback=save)       # callback(algo, record) after the initial population and each step

The state (:meth:`SearchAlgorithm.state_dict`) is plain Python (dicts, lists, ints, floats, strings) and
JSON-serialisable: the generator's state, the populations, the archive of evaluated genomes, the policy and
the history. Restoring it into a fresh object built with the same problem and configuration continues the run
exactly as if it had never stopped (given a deterministic evaluator).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import numpy as np

from scarlet.errors import ScarletError
from scarlet.search.archive import Archive
from scarlet.search.operators import HierarchicalMutation
from scarlet.search.problem import Genome, Problem

STATE_FORMAT = "scarlet-search-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search. Defaults are SCARLET's (Table 7, section 5); see :mod:`scarlet.search.operators`."""

    population: int = 70
    generations: int = 120
    seed: int = 0
    k: int = 5  # equispaced picks from the final front
    pick_by: str | None = None  # objective the front is sorted by for the picks (default: the first objective)
    max_draws: int | None = None  # draws allowed to fill one population (default: 100 x population)
    # NSGA-II variation
    mutation_ratio: float = 0.8
    p_random: float = HierarchicalMutation.p_random
    p_roulette: float = HierarchicalMutation.p_roulette
    p_policy: float = HierarchicalMutation.p_policy
    p_single: float = HierarchicalMutation.p_single
    p_multi: float = HierarchicalMutation.p_multi
    multi_max: int = HierarchicalMutation.multi_max
    policy_lr: float = 0.1
    # random search: evaluations allowed (default: (generations + 1) x population, what NSGA-II evaluates)
    budget: int | None = None

    def __post_init__(self):
        if self.population < 1:
            raise ValueError("population must be at least 1")
        if self.generations < 0:
            raise ValueError("generations must be non-negative")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not 0 <= self.mutation_ratio <= 1:
            raise ValueError("mutation_ratio must lie in [0, 1]")
        if self.max_draws is not None and self.max_draws < 1:
            raise ValueError("max_draws must be positive")
        if self.budget is not None and self.budget < 1:
            raise ValueError("budget must be positive")

    @property
    def draws_per_fill(self) -> int:
        return self.max_draws if self.max_draws is not None else 100 * self.population

    @property
    def evaluation_budget(self) -> int:
        return self.budget if self.budget is not None else (self.generations + 1) * self.population

    # settings that may change when a run is resumed (they do not alter what has been computed so far)
    RESUMABLE_CHANGES = ("generations", "k", "pick_by", "max_draws", "budget")

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown search settings: {', '.join(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class Individual:
    genome: Genome
    values: dict[str, float]
    generation: int  # when it was evaluated (0 = initial population)


@dataclass
class SearchResult:
    front: list[Individual]  # non-dominated set, sorted by the pick objective
    picks: list[Individual]  # k equispaced members of the front
    history: list[dict]
    evaluated: int


def equispaced(items: list, k: int) -> list:
    """``k`` items at equally spaced positions of ``items`` (both ends included); all of them if ``k >= len``."""
    if k >= len(items):
        return list(items)
    if k == 1:
        return [items[(len(items) - 1) // 2]]
    idx = np.round(np.linspace(0, len(items) - 1, k)).astype(int)
    return [items[i] for i in idx]


class SearchAlgorithm:
    name = "base"

    def __init__(self, problem: Problem, config: SearchConfig | None = None):
        self.problem = problem
        self.config = config or SearchConfig()
        if self.config.pick_by is not None and self.config.pick_by not in [o.name for o in problem.objectives]:
            raise ValueError(f"pick_by {self.config.pick_by!r} is not an objective")
        self.rng = np.random.default_rng(self.config.seed)
        self.archive = Archive(problem)
        self.generation = 0
        self.initialized = False
        self.history: list[dict] = []

    # --- to implement -------------------------------------------------------------------------------------
    def initialize(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError

    def front_genomes(self) -> list[Genome]:
        """The current non-dominated set."""
        raise NotImplementedError

    def population_genomes(self) -> list[Genome]:
        """The genomes the history's ``best`` values are taken over."""
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self, callback: Callable[["SearchAlgorithm", dict], None] | None = None,
            until: int | None = None) -> SearchResult:
        """Run (or continue) until done, or until generation ``until``; ``callback(self, record)`` after each."""
        if not self.initialized:
            self.initialize()
            self.initialized = True
            self._record(callback)
        while not self.done and (until is None or self.generation < until):
            self.step()
            self._record(callback)
        return self.result()

    def _record(self, callback) -> None:
        pop = self.population_genomes()
        best = {}
        if pop:
            F = self.problem.objective_matrix([self.archive.records[g].values for g in pop])
            for j, o in enumerate(self.problem.objectives):
                best[o.name] = float(o.sign * F[:, j].min())
        record = {
            "generation": self.generation,
            "front_size": len(self.front_genomes()),
            "evaluated": self.archive.evaluated,
            "evaluator_calls": self.archive.evaluator_calls,
            "rejected_cost": self.archive.rejected_cost,
            "rejected_eval": self.archive.rejected_eval,
            "duplicates": self.archive.duplicates,
            "best": best,
        }
        self.history.append(record)
        if callback is not None:
            callback(self, record)

    def individual(self, genome: Genome) -> Individual:
        r = self.archive.records[genome]
        return Individual(genome=genome, values=dict(r.values), generation=r.generation)

    def result(self) -> SearchResult:
        front = self.sorted_front()
        return SearchResult(front=front, picks=equispaced(front, self.config.k), history=list(self.history),
                            evaluated=self.archive.evaluated)

    def sorted_front(self) -> list[Individual]:
        """The non-dominated set sorted along the pick objective (ties: the other objectives in order)."""
        genomes = self.front_genomes()
        if not genomes:
            return []
        F = self.problem.objective_matrix([self.archive.records[g].values for g in genomes])
        names = [o.name for o in self.problem.objectives]
        first = names.index(self.config.pick_by) if self.config.pick_by else 0
        keys = [first] + [j for j in range(len(names)) if j != first]
        values = [self.problem.objectives[j].sign * F[:, j] for j in keys]  # natural units, ascending
        order = np.lexsort(values[::-1])
        return [self.individual(genomes[i]) for i in order]

    # --- state ----------------------------------------------------------------------------------------------
    def _problem_signature(self) -> dict:
        p = self.problem
        return {
            "num_choices": list(p.num_choices),
            "objectives": [[o.name, o.sense, o.weight] for o in p.objectives],
            "constraints": [[c.name, c.minimum, c.maximum] for c in p.constraints],
            "eval_name": p.eval_name,
        }

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "algorithm": self.name,
            "problem": self._problem_signature(),
            "config": asdict(self.config),
            "generation": self.generation,
            "initialized": self.initialized,
            "rng": self.rng.bit_generator.state,
            "archive": self.archive.state_dict(),
            "history": self.history,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict`; ScarletError when it belongs to a different search."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ScarletError("not a search state")
        if state.get("version") != STATE_VERSION:
            raise ScarletError(f"search state version {state.get('version')}, this code reads {STATE_VERSION}")
        if state["algorithm"] != self.name:
            raise ScarletError(f"the saved search used strategy {state['algorithm']!r}, not {self.name!r}")
        mine = self._problem_signature()
        for key, value in mine.items():
            saved = state["problem"][key]
            if saved != value:
                raise ScarletError(f"the saved search has {key} {saved}, this one {value}")
        saved_cfg = SearchConfig.from_dict(state["config"])
        for f in fields(SearchConfig):
            if f.name in SearchConfig.RESUMABLE_CHANGES or f.name == "seed":
                continue
            if getattr(saved_cfg, f.name) != getattr(self.config, f.name):
                raise ScarletError(f"the saved search has {f.name} = {getattr(saved_cfg, f.name)}, "
                                   f"this one {getattr(self.config, f.name)}")
        self.config = replace(self.config, seed=saved_cfg.seed)
        self.generation = int(state["generation"])
        self.initialized = bool(state["initialized"])
        self.rng.bit_generator.state = state["rng"]
        self.archive.load_state_dict(state["archive"])
        self.history = [dict(r) for r in state["history"]]
        self._load_extra_state(state)
