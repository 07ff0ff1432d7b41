"""TuNAS (Bender, Liu et al., CVPR 2020): one-stage search with a REINFORCE controller over a decision space.

- :mod:`~scarlet.tunas.policy`: independent categoricals, hierarchical log-probabilities, baseline, RL schedule;
- :mod:`~scarlet.tunas.rewards`: absolute-value and MnasNet rewards;
- :mod:`~scarlet.tunas.warmup`: filter and op warmup (schedules, per-decision coin flips, branch averaging);
- :mod:`~scarlet.tunas.trainer`: the step in the official code's order, checkpoints and resume;
- :mod:`~scarlet.tunas.latency`: a per-layer latency table measured on this machine, and user tables;
- :mod:`~scarlet.tunas.cli`: ``python -m scarlet.tunas``.

Every number and code reference is in ``../shared/TUNAS_FPNAS.md`` part A (the "sheet").
"""
