"""verticals-medical plugin entry point: medical images a radiology team can review.

Registered (all qualified ``medical.<name>``):

* dataset ``ct_slices``: synthetic CT series written as real DICOM (:mod:`verticals_medical.synthetic`);
* model ``resnet``: a small ResNet with a class-activation map as a second output;
* pipeline ``imaging``: per image and per study class probabilities, an operating point chosen on
  validation, saliency overlays for flagged images;
* data template ``images``: a user's folder of class subfolders, or a CSV/Parquet of
  ``path,label[,patient][,study]`` (``verticals data register``).

Patient, study, series and image identifiers are keyed pseudonyms: set ``VERTICALS_PSEUDONYM_KEY`` (or
``VERTICALS_PSEUDONYM_KEY_FILE``). Importing this module is cheap: pydicom, torch, Pillow and polars are
imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from verticals import ModelSpec, hookimpl

__all__ = ["VERTICALS_REQUIRES", "register_data_templates", "register_datasets", "register_models",
           "register_pipelines"]

#: The core versions this plugin supports (kept in step with the ``verticals`` dependency in
#: pyproject.toml); verticals refuses the plugin at discovery under any other core.
VERTICALS_REQUIRES = ">=0.1,<0.2"


def _resnet(info: Any, **options: Any) -> Any:
    from verticals_medical.model import resnet_factory

    return resnet_factory(info, **options)


@hookimpl
def register_data_templates(register: Callable[..., None]) -> None:
    """``medical.images``: a user's labelled images as an imaging pipeline."""
    from verticals_medical.owndata import images_template

    register(images_template())


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    from verticals_medical.datasets import ct_dataset

    register(ct_dataset())


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(ModelSpec(name="resnet", factory=_resnet, outputs=("logits", "cam"),
                       description="small ResNet (torchvision BasicBlock) with an in-graph class-activation map"))


@hookimpl
def register_pipelines(register: Callable[..., None]) -> None:
    from verticals_medical.pipeline import ImagingPipeline

    register(ImagingPipeline())
