"""A Ray Tune stopper that ends a whole search after a total number of trained trial-epochs.

Comparing searchers fairly means giving them the same compute: with early stopping (ASHA) a
searcher tries more configurations in the epochs that another spends on full-length trials.
"""

from __future__ import annotations

from typing import Any

from ray import tune

__all__ = ["TrialEpochBudget"]


class TrialEpochBudget(tune.Stopper):
    """Stop every trial once ``budget`` epochs have been reported over all trials together.

    Each ``tune.report`` of a trial is one epoch (``train_trial`` reports once per epoch).
    Trials already running when the budget is reached stop at their next report, so a search
    with ``C`` concurrent trials may train up to ``C - 1`` epochs more than ``budget``.
    """

    def __init__(self, budget: int):
        if budget < 1:
            raise ValueError(f"the trial-epoch budget must be >= 1, got {budget}")
        self.budget = budget
        self.used = 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.used += 1
        return self.used >= self.budget

    def stop_all(self) -> bool:
        return self.used >= self.budget
