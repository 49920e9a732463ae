"""Training data: samples, augmentations, datasets (synthetic and public panoramic depth sets).

Interfaces used by the training loop::

    build_dataset(spec) -> torch.utils.data.Dataset      # spec: dict from YAML (or a list of them)
    collate(samples) -> batch dict                       # tensors stacked, strings in lists
    ConcatDatasets([...])                                # forwards set_epoch, sums skipped

See training/DATA_AND_LOSSES.md for the sample format, dataset formats and the generator.
"""
from training.data.augment import AugmentConfig
from training.data.datasets import (
    ConcatDatasets,
    ListDataset,
    PanoramaDataset,
    PublicDataset,
    SampleError,
    SyntheticDataset,
    build_dataset,
    read_list_file,
)
from training.data.sample import MIN_DEPTH, collate, make_sample

__all__ = [
    "AugmentConfig",
    "ConcatDatasets",
    "ListDataset",
    "PanoramaDataset",
    "PublicDataset",
    "SampleError",
    "SyntheticDataset",
    "build_dataset",
    "collate",
    "make_sample",
    "read_list_file",
    "MIN_DEPTH",
]
