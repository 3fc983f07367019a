"""Uncertainty of measured rates: how far a share measured on n questions may be from the model's true rate.

Used wherever a lesson reports a rate beside its baseline (lessons 04–07).
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% for z = 1.96) of a share ``successes / n``: (low, high).

    Unlike ``p +- z sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not zero
    wide when every answer went the same way (0 of 20 is not "exactly 0%").
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}.")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
