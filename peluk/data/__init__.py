"""Datasets: Arrow tables with the Hugging Face `datasets` API, offline.

>>> from peluk.data import load_dataset
>>> splits = load_dataset("csv", data_files={"train": "train.csv", "test": "test.csv"})  # doctest: +SKIP
>>> tokenized = splits.map(lambda b: tokenizer(b["text"], truncation=True), batched=True)  # doctest: +SKIP

* :mod:`peluk.data.dataset`: ``Dataset``, ``DatasetDict`` and their transforms.
* :mod:`peluk.data.mapping`: how ``map``/``filter`` run (batches, shards, processes, the cache check).
* :mod:`peluk.data.io`: ``load_dataset``, ``load_from_disk``, streaming ``IterableDataset``.
* :mod:`peluk.data.features`: column types (``Value``, ``ClassLabel``, ``Sequence``, ``Features``).
* :mod:`peluk.data.formatting`: rows out as Python, numpy, torch or pandas; function results back in.
* :mod:`peluk.data.cache`: the cache directory, fingerprints, atomic Arrow files.
* :mod:`peluk.data.collate`, :mod:`peluk.data.conll`: batch collators, CoNLL files (for training).
"""

from peluk.data.dataset import Dataset, DatasetDict, concatenate_datasets
from peluk.data.features import ClassLabel, Features, Sequence, Value
from peluk.data.io import IterableDataset, IterableDatasetDict, load_dataset, load_from_disk

__all__ = [
    "Dataset",
    "DatasetDict",
    "IterableDataset",
    "IterableDatasetDict",
    "load_dataset",
    "load_from_disk",
    "concatenate_datasets",
    "Features",
    "Value",
    "ClassLabel",
    "Sequence",
]
