"""A seeded generator of process data following the published rules of the AI4I 2020 data set.

No package ships the real AI4I 2020 predictive-maintenance data set (Matzka, "Explainable Artificial
Intelligence for Predictive Maintenance Applications", AI4I 2020; UCI Machine Learning Repository,
data set 601), so :func:`generate_ai4i` writes rows in its layout from the rules its description
publishes. One row is one process of a milling machine, in time order:

* ``Type``: product quality L, M or H, and ``Product ID`` = the letter and a serial number.
* ``Air temperature [K]``: a random walk around 300 K with a standard deviation of 2 K (a mean-reverting
  AR(1), ``phi = 0.995``), rounded to 0.1 K.
* ``Process temperature [K]``: air temperature + 10 K + a second such walk with SD 1 K, rounded to 0.1 K.
* ``Rotational speed [rpm]`` and ``Torque [Nm]``: jointly Gaussian with the moments of the released
  file (torque mean 40 Nm, SD 10, never below 3.8 Nm; speed mean 1,539 rpm, SD 179; correlation
  −0.875), speed rounded to 1 rpm, torque to 0.1 Nm.
* ``Tool wear [min]``: one tool; each process adds 5 / 3 / 2 minutes for H / M / L (the wear recorded
  on a row is the wear before that process). The tool is replaced when it reaches a wear drawn
  uniformly from 200–240 min; at that replacement point it fails instead with probability
  ``twf_rate``; the next process starts with a new tool (wear 0).

Failure modes, decided on the rounded values written to the file (so the rules hold exactly on it):

* ``TWF`` tool wear failure: at the replacement point, as above;
* ``HDF`` heat dissipation failure: process − air temperature < 8.6 K and speed < 1,380 rpm;
* ``PWF`` power failure: torque × speed (in rad/s) below 3,500 W or above 9,000 W;
* ``OSF`` overstrain failure: tool wear × torque above 11,000 / 12,000 / 13,000 min·Nm for L / M / H;
* ``RNF`` random failure: 0.1 % of the processes, whatever the process parameters;
* ``Machine failure`` = 1 when any mode fires.

Where the released file differs from its own description, and what this generator does
(``released=True``, the default, reproduces the file; ``released=False`` follows the description):

* type mix: the description says 50 / 30 / 20 % L / M / H; the file holds 60 / 30 / 10 %;
* tool wear failures: the description counts 120 replacement points of which 51 failed; the file has
  46 ``TWF`` rows (this generator: probability 46/120 at each replacement point, 51/120 with
  ``released=False``);
* random failures: of the file's 19 ``RNF`` rows only one has ``Machine failure`` = 1, so an RNF flag
  mostly comes *without* a failure (here: 1 in 19 RNF rows is a failure);
* failures without a mode: 9 of the file's 339 failures have no mode flag (here: 0.09 % of processes);
* power: the description derives speed and torque from "a power of 2,860 W"; the file's mean power is
  about 6.4 kW, so the moments above are the file's, not the description's.

The speed here is Gaussian; the released file's speed is right-skewed (up to 2,886 rpm). Everything
depends only on ``seed`` and ``rows``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["AI4I_COLUMNS", "MODES", "OSF_LIMITS", "TYPES", "failure_modes", "generate_ai4i"]

TYPES = ("L", "M", "H")
MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")
AIR, PROCESS, SPEED, TORQUE, WEAR = ("Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]",
                                     "Torque [Nm]", "Tool wear [min]")
SENSORS = (AIR, PROCESS, SPEED, TORQUE, WEAR)
AI4I_COLUMNS = ("UDI", "Product ID", "Type", *SENSORS, "Machine failure", *MODES)

#: Overstrain limit (tool wear × torque, min·Nm) per product type.
OSF_LIMITS = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}
#: Tool wear minutes each process adds, per product type.
WEAR_STEP = {"L": 2, "M": 3, "H": 5}
HDF_DT, HDF_SPEED = 8.6, 1380.0
PWF_LOW, PWF_HIGH = 3500.0, 9000.0
RNF_RATE = 0.001


def _walk(rng, n: int, sd: float, phi: float = 0.995):
    """A stationary AR(1) random walk around 0 with standard deviation ``sd``."""
    import numpy as np

    noise = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    level = rng.normal(0.0, sd)
    for i in range(n):
        level = phi * level + noise[i]
        out[i] = level
    return out


def failure_modes(types, air, process, speed, torque, wear):
    """The deterministic modes (HDF, PWF, OSF) of the published rules for arrays of process values.

    Returns three boolean arrays. Used by the generator and by tests that check the rules hold.
    """
    import numpy as np

    power = torque * speed * (2 * np.pi / 60)
    hdf = ((process - air) < HDF_DT) & (speed < HDF_SPEED)
    pwf = (power < PWF_LOW) | (power > PWF_HIGH)
    limit = np.select([types == "L", types == "M", types == "H"],
                      [OSF_LIMITS["L"], OSF_LIMITS["M"], OSF_LIMITS["H"]], np.inf)
    osf = wear * torque > limit
    return hdf, pwf, osf


def generate_ai4i(rows: int = 10_000, seed: int = 0, *, released: bool = True) -> pl.DataFrame:
    """``rows`` processes in the AI4I 2020 layout (see the module docstring for the rules)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng([seed, 2020])
    mix = (0.6, 0.3, 0.1) if released else (0.5, 0.3, 0.2)
    types = np.asarray(TYPES)[rng.choice(3, size=rows, p=mix)]
    serial_start = {"L": 47181, "M": 14860, "H": 29000}
    counters = dict(serial_start)
    product = []
    for t in types:
        product.append(f"{t}{counters[t]}")
        counters[t] += 1

    air = np.round(300.0 + _walk(rng, rows, 2.0), 1)
    process = np.round(air + 10.0 + _walk(rng, rows, 1.0), 1)
    z1, z2 = rng.standard_normal(rows), rng.standard_normal(rows)
    rho = -0.875
    torque = np.round(np.maximum(40.0 + 10.0 * z1, 3.8), 1)
    speed = np.round(1539.0 + 179.0 * (rho * z1 + np.sqrt(1 - rho**2) * z2))

    twf_rate = 46 / 120 if released else 51 / 120
    wear = np.zeros(rows)
    twf = np.zeros(rows, dtype=bool)
    current, limit = 0, rng.uniform(200, 240)
    for i in range(rows):
        wear[i] = current
        if current >= limit:  # the replacement point: the tool fails or is replaced
            twf[i] = rng.random() < twf_rate
            current, limit = 0, rng.uniform(200, 240)
        else:
            current += WEAR_STEP[types[i]]

    hdf, pwf, osf = failure_modes(types, air, process, speed, torque, wear)
    rnf = rng.random(rows) < RNF_RATE
    failure = twf | hdf | pwf | osf
    if released:
        failure |= rnf & (rng.random(rows) < 1 / 19)
        failure |= rng.random(rows) < 0.0009  # failures the file records with no mode
    else:
        failure |= rnf
    return pl.DataFrame({
        "UDI": np.arange(1, rows + 1, dtype=np.int64),
        "Product ID": product,
        "Type": types.tolist(),
        AIR: air, PROCESS: process,
        SPEED: speed.astype(np.int64), TORQUE: torque, WEAR: wear.astype(np.int64),
        "Machine failure": failure.astype(np.int64),
        "TWF": twf.astype(np.int64), "HDF": hdf.astype(np.int64), "PWF": pwf.astype(np.int64),
        "OSF": osf.astype(np.int64), "RNF": rnf.astype(np.int64),
    })
