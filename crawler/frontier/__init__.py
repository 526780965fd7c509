"""Frontier backends behind one Protocol (see :mod:`crawler.frontier.base`)."""

from .base import Frontier, FrontierCounts, Lease, PolitenessPolicy
from .memory import MemoryFrontier

__all__ = ["Frontier", "FrontierCounts", "Lease", "MemoryFrontier", "PolitenessPolicy"]
