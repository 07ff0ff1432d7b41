"""Architecture search on a trained supernet: constrained, weighted NSGA-II (SCARLET Algorithm 1) and random search.

The algorithms are problem-agnostic (integer genomes, named objectives and constraints, a cheap cost function and
a batched expensive evaluator); ``python -m scarlet.search`` binds them to a supernet.
"""

from scarlet.search.algorithm import Individual, SearchAlgorithm, SearchConfig, SearchResult, equispaced
from scarlet.search.archive import Archive, ConstraintsImpossible
from scarlet.search.nsga2 import NSGA2
from scarlet.search.problem import Constraint, Objective, Problem, parse_objectives
from scarlet.search.random_search import RandomSearch

STRATEGIES = {"nsga2": NSGA2, "random": RandomSearch}

__all__ = ["Archive", "Constraint", "ConstraintsImpossible", "Individual", "NSGA2", "Objective", "Problem",
           "RandomSearch", "STRATEGIES", "SearchAlgorithm", "SearchConfig", "SearchResult", "equispaced",
           "parse_objectives"]
