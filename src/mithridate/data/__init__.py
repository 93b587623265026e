"""Data: the shared :class:`Dataset` shape and the loaders that produce it.

>>> from mithridate.data import load_dataset
>>> splits = load_dataset("digits")
>>> splits.train.X.shape[1:]
(1, 8, 8)

See ``docs/data.md`` for every supported layout.
"""

from mithridate.data.dataset import Dataset, DatasetSplits, encode_labels
from mithridate.data.loaders import (
    FASHION_MNIST_CLASSES,
    available_datasets,
    find_fashion_mnist,
    load_dataset,
    load_fashion_mnist,
    load_ground_truth,
    load_image_folder,
    load_npz,
    load_sklearn,
    load_table,
    read_idx,
    save_ground_truth,
    save_npz,
    select_classes,
)

from mithridate.data.text import TextFeaturizer, load_jsonl

__all__ = [
    "TextFeaturizer",
    "load_jsonl",
    "Dataset",
    "DatasetSplits",
    "encode_labels",
    "FASHION_MNIST_CLASSES",
    "available_datasets",
    "find_fashion_mnist",
    "load_dataset",
    "load_fashion_mnist",
    "load_ground_truth",
    "load_image_folder",
    "load_npz",
    "load_sklearn",
    "load_table",
    "read_idx",
    "save_ground_truth",
    "save_npz",
    "select_classes",
]
