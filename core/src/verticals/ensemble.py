"""The average of several models of one architecture as one module (imports torch).

Used by cross-fitting's ``crossfit_final = "bag"`` (:mod:`verticals.crossfit`): the K fold models,
which share one preprocessor and so one input encoding, become a single ``nn.Module`` whose every
output is the mean of the members' outputs. It exports to ONE ONNX graph, so scoring, the parity check,
the int8/fp16 variants and everything a pipeline's ``postprocess`` reads work unchanged.

Averaging is only meaningful for outputs that are on a common scale and combine linearly: logits,
and for an additive model its per-feature contributions (the mean of exact additive decompositions is
an exact additive decomposition of the mean logit). Integer outputs (indices) cannot be averaged and
raise at the first forward pass.

Kept in its own module, defined at module level, so ``verticals.crossfit`` and the engine import torch
only when they need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from verticals.errors import PluginError

__all__ = ["AveragedModel"]


class AveragedModel(nn.Module):
    """Runs every member on the same inputs and returns the element-wise mean of each output.

    The output has the members' structure: a tensor, a tuple of tensors or a mapping of tensors.
    Members are kept in ``members`` (a :class:`torch.nn.ModuleList`), so the state dict's keys are
    ``members.<k>.<name>`` and :meth:`load_state_dict` restores all of them at once.

    Args:
        members: two or more models built by the same factory with the same arguments.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("AveragedModel needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        outs = [member(*args, **kwargs) for member in self.members]
        first = outs[0]
        if isinstance(first, torch.Tensor):
            return self._mean(outs, "output 0")
        if isinstance(first, Mapping):
            return {name: self._mean([o[name] for o in outs], f"output '{name}'") for name in first}
        return tuple(self._mean([o[i] for o in outs], f"output {i}") for i in range(len(first)))

    @staticmethod
    def _mean(values: list[torch.Tensor], what: str) -> torch.Tensor:
        if not values[0].is_floating_point():
            raise PluginError(
                f"cannot average {what} of the fold models: it is {values[0].dtype}, not a floating-point tensor",
                hint="use TrainingConfig(crossfit_final='refit') for models with integer outputs",
            )
        total = values[0]
        for value in values[1:]:
            total = total + value
        return total / float(len(values))
