"""The medical plugin with a tiny generated dataset and network (seconds to train), for the tests."""

from __future__ import annotations

from pathlib import Path

import verticals_medical.plugin as plugin
from verticals.hookspecs import hookimpl
from verticals_medical.datasets import ct_dataset
from verticals_medical.pipeline import ImagingPipeline

KEY = "test-pseudonym-key-0123456789abcdef"


class SmallPlugin:
    """``medical.imaging`` over ``patients`` synthetic patients of ``slices`` 64-pixel slices, 32-pixel
    inputs, a width-8 network and ``epochs`` epochs; extra datasets/pipelines can be added."""

    def __init__(self, root: Path, patients: int = 24, slices: int = 2, epochs: int = 3,
                 extra: tuple = (), templates: bool = True) -> None:
        self.root, self.patients, self.slices, self.epochs = Path(root), patients, slices, epochs
        self.extra = extra
        self.templates = templates

    @hookimpl
    def register_datasets(self, register):
        register(ct_dataset(self.patients, slices=self.slices, pixels=64, seed=3, root=self.root))
        for dataset, _ in self.extra:
            register(dataset)

    @hookimpl
    def register_models(self, register):
        plugin.register_models(register)

    @hookimpl
    def register_pipelines(self, register):
        register(ImagingPipeline(size=32, epochs=self.epochs, width=8, root=self.root))
        for _, pipeline in self.extra:
            register(pipeline)

    @hookimpl
    def register_data_templates(self, register):
        if self.templates:
            plugin.register_data_templates(register)
