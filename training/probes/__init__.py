"""Training probes of the scene world: short trainings that compare one design choice side by side, each run with
``python -m training.probes.<name>``.

- ``position_table``: the same first-visit training with and without a learned absolute position table.
- ``first_visit_sampler``: the same first-visit training with the stochastic few-step sampler, a deterministic one,
  a reading term, or quantile-coupled targets.

Both score with the evaluation's first-visit scorer (``context_forcing_core.eval.toy.first_visits``).
"""
