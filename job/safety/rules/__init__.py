"""The rule catalogue (shared/safety-rules.md), one small class per rule, grouped by category.
Importing this package registers every rule in `base.RULES`."""

from . import analysis, compat, data_dependent, data_loss, hygiene, locking, rewrite, transaction, verify
from .base import RULES, Hit, Rule, by_id

__all__ = [
    "RULES",
    "Hit",
    "Rule",
    "by_id",
    "analysis",
    "compat",
    "data_dependent",
    "data_loss",
    "hygiene",
    "locking",
    "rewrite",
    "transaction",
    "verify",
]
