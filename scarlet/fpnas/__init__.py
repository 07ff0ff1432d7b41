"""FP-NAS (Yan et al., "FP-NAS: Fast Probabilistic Neural Architecture Search"): a learned distribution over the
decision spaces ``fbnetv2-f``, ``fbnetv2-f-fine`` and ``fbnetv2-f++``, sampled adaptively.

- :mod:`~scarlet.fpnas.distribution`: factorized and joint distributions, the exact coarse-to-fine switch;
- :mod:`~scarlet.fpnas.sampling`: K from the entropy (Eq. 4) or fixed;
- :mod:`~scarlet.fpnas.gradient`: the FLOPs hinge, Eq. 7's architecture gradient, Eq. 3's sample weights;
- :mod:`~scarlet.fpnas.trainer`: the search loop; :mod:`~scarlet.fpnas.cli`: ``python -m scarlet.fpnas``.
"""
