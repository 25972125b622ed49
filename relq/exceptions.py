"""Named errors the pages and the CLI catch and show as one clear sentence."""

from __future__ import annotations

__all__ = [
    "RelqError",
    "InstrumentError",
    "ImportRejected",
    "StoreUnavailable",
    "SettingError",
    "WeightingError",
    "CaseConflict",
    "DeliveryFailed",
]


class RelqError(Exception):
    """Base of every error RelQ shows to a user instead of a traceback."""


class InstrumentError(RelqError):
    """The instrument file cannot be used as it is."""


class ImportRejected(RelqError):
    """A whole file cannot be imported (the database is unchanged)."""


class StoreUnavailable(RelqError):
    """The database cannot be reached or is locked by another process."""


class SettingError(RelqError):
    """A setting has a value RelQ cannot use."""


class WeightingError(RelqError):
    """The chosen weighting cannot be applied to the responses in view (e.g. a raking dimension
    value with no responding customer, or value weights without annual values)."""


class CaseConflict(RelqError):
    """Someone else changed a case between reading and saving it; nothing was saved."""


class DeliveryFailed(RelqError):
    """A mail or webhook delivery did not go through; it stays queued for the next run."""
