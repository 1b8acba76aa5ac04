"""Scorecard points (PDO scaling) and risk bands from a probability of default (numpy only).

Points follow the usual "points to double the odds" convention on the *good:bad* odds:

    points = offset + factor * ln(odds),  odds = (1 - PD) / PD,  factor = PDO / ln 2,
    offset = base_points - factor * ln(base_odds)

With the defaults (600 points at odds of 19:1, i.e. PD = 5 %, and 50 points to double the odds),
factor = 72.13 and offset = 387.6: PD 5 % → 600, PD 2.56 % (odds 38:1) → 650, PD 9.5 % (9.5:1) → 550.
Higher points mean lower risk. Since ``ln(odds) = -log-odds of default``, points are linear in the
model's calibrated logit, and each feature's contribution is worth an exact number of points.

Bands are a PD master scale: fixed PD boundaries, so a band means the same risk in every model
version (the bad rate per band is shown in the training report).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["DEFAULT_BANDS", "PD_CLIP", "Scaling", "assign_bands", "bands_from_json", "bands_to_json", "check_bands"]

#: PDs are kept in [PD_CLIP, 1 - PD_CLIP] before taking odds, so points stay finite.
PD_CLIP = 1e-6

#: (band, upper PD bound, exclusive): A < 5 % ≤ B < 10 % ≤ C < 20 % ≤ D < 35 % ≤ E < 50 % ≤ F.
DEFAULT_BANDS: tuple[tuple[str, float], ...] = (
    ("A", 0.05), ("B", 0.10), ("C", 0.20), ("D", 0.35), ("E", 0.50), ("F", 1.0),
)


@dataclass(frozen=True)
class Scaling:
    """PDO scaling: ``base_points`` at good:bad odds ``base_odds``, ``pdo`` points to double the odds."""

    base_points: float = 600.0
    base_odds: float = 19.0
    pdo: float = 50.0

    def __post_init__(self) -> None:
        if not (self.pdo > 0 and self.base_odds > 0):
            raise ValueError(f"PDO scaling needs pdo > 0 and base_odds > 0, got {self.pdo}, {self.base_odds}")

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Points at even odds (1:1, PD = 50 %)."""
        return self.base_points - self.factor * math.log(self.base_odds)

    def points_from_log_odds(self, log_odds_bad: np.ndarray) -> np.ndarray:
        """Points from the log-odds of *default* (the calibrated logit), as float64."""
        import numpy as np

        limit = math.log((1 - PD_CLIP) / PD_CLIP)
        z = np.clip(np.asarray(log_odds_bad, dtype=np.float64), -limit, limit)
        return self.offset - self.factor * z

    def points(self, pd: np.ndarray) -> np.ndarray:
        """Points from a probability of default, as float64."""
        import numpy as np

        p = np.clip(np.asarray(pd, dtype=np.float64), PD_CLIP, 1 - PD_CLIP)
        return self.offset + self.factor * np.log((1 - p) / p)

    def pd(self, points: np.ndarray) -> np.ndarray:
        """The probability of default a number of points stands for (inverse of :meth:`points`)."""
        import numpy as np

        odds = np.exp((np.asarray(points, dtype=np.float64) - self.offset) / self.factor)
        return 1.0 / (1.0 + odds)

    def to_json(self) -> dict[str, float]:
        return {"base_points": self.base_points, "base_odds": self.base_odds, "pdo": self.pdo}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Scaling:
        data = data or {}
        return cls(float(data.get("base_points", 600.0)), float(data.get("base_odds", 19.0)),
                   float(data.get("pdo", 50.0)))


def bands_to_json(bands: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"band": name, "max_pd": float(bound)} for name, bound in bands]


def bands_from_json(data: Sequence[Mapping[str, Any]] | None) -> tuple[tuple[str, float], ...]:
    if not data:
        return DEFAULT_BANDS
    return tuple((str(b["band"]), float(b["max_pd"])) for b in data)


def check_bands(bands: Sequence[tuple[str, float]]) -> None:
    """Raise ``ValueError`` unless bounds increase strictly and the last one is 1 (every PD has a band)."""
    bounds = [float(b) for _, b in bands]
    if not bounds or any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)) or bounds[-1] != 1.0 \
            or bounds[0] <= 0:
        raise ValueError(f"band bounds must increase strictly in (0, 1] and end at 1.0, got {bounds}")


def assign_bands(pd: np.ndarray, bands: Sequence[tuple[str, float]] = DEFAULT_BANDS) -> np.ndarray:
    """The band of each PD: the first whose (exclusive) upper bound exceeds it; PD = 1 is the last."""
    import numpy as np

    names = np.array([name for name, _ in bands], dtype=object)
    bounds = np.array([bound for _, bound in bands][:-1], dtype=np.float64)
    index = np.searchsorted(bounds, np.asarray(pd, dtype=np.float64).reshape(-1), side="right")
    return names[index]
