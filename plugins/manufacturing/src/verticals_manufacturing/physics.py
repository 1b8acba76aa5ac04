"""Physics features of a milling process, computed the same way in numpy (baselines, fitting the
scales) and in torch (inside the exported graph, :mod:`verticals_manufacturing.graph`).

From the five process values (air and process temperature in K, speed in rpm, torque in Nm, tool wear
in min) and the product type, the features are:

* the five values themselves;
* ``temperature_difference`` = process − air temperature (K): heat dissipation;
* ``power_kw`` = torque × speed × 2π / 60 / 1000: mechanical power;
* ``wear_torque`` = tool wear × torque / 1000 (kmin·Nm): strain on the tool;
* ``overstrain_ratio`` = tool wear × torque / the type's overstrain limit (11 / 12 / 13 kmin·Nm for
  L / M / H): where a product's tool is relative to its own limit.

This module imports numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["FEATURES", "OSF_LIMIT_BY_INDEX", "physics_features"]

FEATURES = ("air_temperature", "process_temperature", "rotational_speed", "torque", "tool_wear",
            "temperature_difference", "power_kw", "wear_torque", "overstrain_ratio")
#: Overstrain limits (min·Nm) by product type index (0 = L, 1 = M, 2 = H).
OSF_LIMIT_BY_INDEX = (11_000.0, 12_000.0, 13_000.0)
RPM_TO_RAD_S = 2 * 3.141592653589793 / 60


def physics_features(x: np.ndarray, product_type: np.ndarray) -> np.ndarray:
    """``[N, 9]`` features (see the module docstring) from ``x`` = ``[N, 5]`` imputed process values and
    ``product_type`` = ``[N]`` type indices."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    air, process, speed, torque, wear = (x[:, i] for i in range(5))
    limits = np.asarray(OSF_LIMIT_BY_INDEX)[np.clip(np.asarray(product_type, dtype=np.int64), 0, 2)]
    return np.stack([air, process, speed, torque, wear, process - air, torque * speed * RPM_TO_RAD_S / 1000.0,
                     wear * torque / 1000.0, wear * torque / limits], axis=1)
