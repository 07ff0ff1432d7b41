"""Decision spaces: several named decisions per layer, masked weight sharing, the TuNAS and FP-NAS spaces.

- :mod:`~scarlet.decisions.space`: the six spaces as data and their cardinalities;
- :mod:`~scarlet.decisions.arch`: architectures as JSON objects of decision values, named references;
- :mod:`~scarlet.decisions.concrete`: the concrete layers (widths, kernels, sizes) of an architecture;
- :mod:`~scarlet.decisions.ops`: the one definition of each layer's computation;
- :mod:`~scarlet.decisions.standalone`, :mod:`~scarlet.decisions.supernet`: deployed network, masked supernet;
- :mod:`~scarlet.decisions.cost`: MAdds and parameters; :mod:`~scarlet.decisions.step`: the K-path step;
- :mod:`~scarlet.decisions.evaluate`: subnets with inherited weights, BN recalibrated.
"""

from scarlet.decisions.arch import NAMED, DecisionArch, arch_from_indices, parse_decision_arch, random_decision_arch
from scarlet.decisions.concrete import active_decisions, canonical
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.evaluate import evaluate_archs
from scarlet.decisions.space import SPACES, Space, get_space
from scarlet.decisions.standalone import DecisionStandaloneNet
from scarlet.decisions.step import sequential_k_path_step
from scarlet.decisions.supernet import DecisionSupernet

__all__ = ["NAMED", "SPACES", "DecisionArch", "DecisionCostModel", "DecisionStandaloneNet", "DecisionSupernet",
           "Space", "active_decisions", "arch_from_indices", "canonical", "evaluate_archs", "get_space",
           "parse_decision_arch", "random_decision_arch", "sequential_k_path_step"]
