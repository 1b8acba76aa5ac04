"""A seeded generator of fleet telemetry: many machines, each a time-ordered sequence of readings,
with failures that announce themselves (or not) through precursors.

Each machine (product type L / M / H, 20 / 60 / 20 %) runs for a number of cycles drawn between
``min_cycles`` and ``max_cycles``. Per cycle it reports:

* ``air_temperature`` (K): 300 K + a random walk (SD 2 K);
* ``process_temperature`` (K): air + 10 K + a random walk (SD 1 K);
* ``rotational_speed`` (rpm) and ``torque`` (Nm): a machine's set point (speed ~ N(1,539, 100), torque
  from the power the machine draws, ~ 6.4 kW) plus Gaussian noise (SD 40 rpm, 3 Nm);
* ``tool_wear`` (min): +2 / 3 / 5 per cycle for L / M / H, the tool replaced at 200–240 min;
* ``vibration`` (mm/s): 2.0 + noise (SD 0.25).

**Failures.** In any healthy cycle a degradation episode starts with probability ``episode_rate``
and runs for 15–30 cycles; its mode is TWF, HDF, PWF or OSF (25 % each, OSF only on a worn tool,
TWF then). During the episode a precursor ramps up with the fraction ``f`` of the episode elapsed:

* ``HDF`` heat dissipation: the process − air temperature difference falls by up to 2.5 K and the
  speed by up to 150 rpm;
* ``PWF`` power: torque rises by up to 18 Nm and the vibration by up to 1 mm/s;
* ``OSF`` overstrain: torque rises by up to 12 Nm on a tool past 150 min;
* ``TWF`` tool wear: vibration rises by up to 2.5 mm/s while the tool wears 1.5× faster.

The last cycle of an episode is the failure (``failure`` = 1, ``failure_mode`` its mode); the machine
is repaired (new tool, precursors gone). Two things keep it honest: a *false* episode (probability
``episode_rate / 2`` per healthy cycle) ramps the same precursors and then recovers with no failure,
and a random failure (``RNF``, 0.1 % of cycles) comes with no precursor at all.

Everything depends only on the arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["FLEET_MODES", "FLEET_SENSORS", "generate_fleet"]

FLEET_SENSORS = ("air_temperature", "process_temperature", "rotational_speed", "torque", "tool_wear", "vibration")
FLEET_MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")
_STEP = {"L": 2.0, "M": 3.0, "H": 5.0}


def generate_fleet(machines: int = 800, seed: int = 0, *, min_cycles: int = 150, max_cycles: int = 400,
                   episode_rate: float = 0.005, rnf_rate: float = 0.001) -> pl.DataFrame:
    """Readings of ``machines`` machines (see the module docstring), sorted by machine and cycle."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng([seed, 4242])
    machine_ids: list[str] = []
    rows: list[tuple[float, ...]] = []
    modes: list[str | None] = []
    for m in range(machines):
        kind = str(rng.choice(["L", "M", "H"], p=[0.2, 0.6, 0.2]))
        n = int(rng.integers(min_cycles, max_cycles + 1))
        speed_set = rng.normal(1539.0, 100.0)
        torque_set = 6400.0 / (speed_set * 2 * np.pi / 60)
        air_walk = np.cumsum(rng.normal(0, 0.2, n))
        air_walk = 2.0 * (air_walk - air_walk.mean()) / max(air_walk.std(), 1e-9) * min(1.0, n / 400)
        proc_walk = np.cumsum(rng.normal(0, 0.1, n))
        proc_walk = (proc_walk - proc_walk.mean()) / max(proc_walk.std(), 1e-9)
        wear, limit = float(rng.uniform(0, 150)), rng.uniform(200, 240)
        episode: tuple[str, int, int, bool] | None = None  # (mode, start, length, real)
        u, rnf = rng.random(n), rng.random(n)
        air_noise, dt_noise = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
        speed_noise, torque_noise, vib_noise = rng.normal(0, 40.0, n), rng.normal(0, 3.0, n), rng.normal(0, 0.25, n)
        for t in range(n):
            f, mode_now = 0.0, ""
            if episode is None:
                if u[t] < episode_rate:
                    mode = str(rng.choice(["TWF", "HDF", "PWF", "OSF"]))
                    if mode == "OSF" and wear < 150:
                        mode = "TWF"
                    episode = (mode, t, int(rng.integers(15, 31)), True)
                elif u[t] < 1.5 * episode_rate:
                    episode = (str(rng.choice(["TWF", "HDF", "PWF", "OSF"])), t, int(rng.integers(15, 31)), False)
            if episode is not None:
                mode_now, start, length, _ = episode
                f = (t - start + 1) / length
            air = 300.0 + air_walk[t] + air_noise[t]
            dt = 10.0 + proc_walk[t] + dt_noise[t]
            speed = speed_set + speed_noise[t]
            torque = torque_set + torque_noise[t]
            vibration = 2.0 + vib_noise[t]
            step = _STEP[kind]
            if mode_now == "HDF":
                dt -= 2.5 * f
                speed -= 150.0 * f
            elif mode_now == "PWF":
                torque += 18.0 * f
                vibration += 1.0 * f
            elif mode_now == "OSF":
                torque += 12.0 * f
            elif mode_now == "TWF":
                vibration += 2.5 * f
                step *= 1.5
            failed, failed_mode = 0, ""
            if episode is not None and f >= 1.0:
                if episode[3]:
                    failed, failed_mode = 1, mode_now
                episode = None
            elif episode is None and rnf[t] < rnf_rate:
                failed, failed_mode = 1, "RNF"
            machine_ids.append(f"M{m:04d}")
            rows.append((t, air, air + dt, speed, max(torque, 1.0), wear, max(vibration, 0.0), failed))
            modes.append(failed_mode or None)
            wear += step
            if failed or wear >= limit:
                wear, limit = 0.0, rng.uniform(200, 240)
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    decimals = (0, 2, 2, 1, 2, 1, 3, 0)
    columns = {"machine_id": machine_ids}
    for j, name in enumerate(("cycle", *FLEET_SENSORS, "failure")):
        columns[name] = np.round(data[:, j], decimals[j])
    columns["failure_mode"] = modes
    return pl.DataFrame(columns, schema={
        "machine_id": pl.String, "cycle": pl.Int64, **{s: pl.Float64 for s in FLEET_SENSORS},
        "failure": pl.Int64, "failure_mode": pl.String})
