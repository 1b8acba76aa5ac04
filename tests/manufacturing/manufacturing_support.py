"""The manufacturing plugin with small generated datasets (seconds to train), for the tests."""

from __future__ import annotations

import verticals_manufacturing.plugin as plugin
from verticals.hookspecs import hookimpl
from verticals_manufacturing import datasets


class SmallPlugin:
    """The manufacturing plugin with a 3,000-row AI4I table and a 36-machine fleet."""

    def __init__(self, ai4i_rows: int = 3000, machines: int = 36, seed: int = 0) -> None:
        self.ai4i_rows, self.machines, self.seed = ai4i_rows, machines, seed

    @hookimpl
    def register_datasets(self, register):
        register(datasets.ai4i_dataset(self.ai4i_rows, seed=self.seed))
        register(datasets.fleet_dataset(self.machines, seed=self.seed))

    @hookimpl
    def register_models(self, register):
        plugin.register_models(register)

    @hookimpl
    def register_pipelines(self, register):
        plugin.register_pipelines(register)

    @hookimpl
    def register_commands(self, app):
        plugin.register_commands(app)
