"""Frontier backends behind one Protocol (see :mod:`crawler.frontier.base`)."""

from .base import (
    CheckpointMarks,
    DelayRefunds,
    Frontier,
    FrontierCounts,
    Lease,
    PolitenessPolicy,
    Resettable,
    StatsPublisher,
)
from .memory import MemoryFrontier

__all__ = [
    "CheckpointMarks",
    "DelayRefunds",
    "Frontier",
    "FrontierCounts",
    "Lease",
    "MemoryFrontier",
    "PolitenessPolicy",
    "Resettable",
    "StatsPublisher",
]
