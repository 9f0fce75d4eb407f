"""Datasets and splits: sizes, stratification, partition, determinism, value ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowbit.models import data
from lowbit.models.data import DatasetError, load_split, split_indices, split_sizes

DATASETS = ("digits", "mnist1d")


def test_split_sizes_golden():
    # digits: scikit-learn ships 1,797 images; per class round(0.6 n) / round(0.2 n) / rest.
    assert split_sizes("digits") == {"train": 1078, "val": 359, "test": 360}
    # mnist1d: make_dataset's defaults give 5,000 signals, 500 per class -> 300/100/100.
    assert split_sizes("mnist1d") == {"train": 3000, "val": 1000, "test": 1000}


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_partition_the_dataset(dataset):
    index = split_indices(dataset)
    everything = np.concatenate([index[s] for s in data.SPLITS])
    total = sum(split_sizes(dataset).values())
    assert sorted(everything.tolist()) == list(range(total))  # disjoint and complete


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_stratified(dataset):
    counts = {s: np.bincount(load_split(dataset, s)[1].numpy(), minlength=10) for s in data.SPLITS}
    per_class = sum(counts.values())
    for split, fraction in zip(data.SPLITS, data.SPLIT_FRACTIONS, strict=True):
        # each class is split on its own: at most one sample off the exact share (rounding)
        assert np.all(np.abs(counts[split] - fraction * per_class) <= 1), split


@pytest.mark.parametrize("dataset", DATASETS)
def test_shapes_and_dtypes(dataset):
    info = data.dataset_info(dataset)
    for split, size in split_sizes(dataset).items():
        x, y = load_split(dataset, split)
        assert x.shape == (size, *info.input_shape) and x.dtype == torch.float32
        assert y.shape == (size,) and y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == info.num_classes - 1


def test_value_ranges():
    x, _ = load_split("digits", "train")
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # 0..16 scaled by 1/16
    signals = torch.cat([load_split("mnist1d", s)[0] for s in data.SPLITS])
    # make_dataset centres the whole set and scales it to unit standard deviation
    assert abs(float(signals.mean())) < 1e-4 and float(signals.std()) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("dataset", DATASETS)
def test_loads_are_deterministic_and_independent(dataset):
    x1, y1 = load_split(dataset, "val")
    original = x1.clone()
    x1 += 1.0  # a caller modifying its tensors must not change the cache
    x2, y2 = load_split(dataset, "val")
    assert torch.equal(original, x2) and torch.equal(y1, y2)


def test_regeneration_is_identical_and_keeps_global_rng():
    before = {s: load_split("mnist1d", s) for s in data.SPLITS}
    data._all_arrays.cache_clear()
    data._split_index.cache_clear()
    np.random.seed(123)
    after = {s: load_split("mnist1d", s) for s in data.SPLITS}  # regenerates the dataset
    # mnist1d's generator reseeds numpy's global RNG; load_split restores the caller's state
    assert np.random.random() == np.random.RandomState(123).random()
    for split in data.SPLITS:
        assert torch.equal(before[split][0], after[split][0])
        assert torch.equal(before[split][1], after[split][1])


def test_unknown_names_list_valid_ones():
    with pytest.raises(
        DatasetError, match="valid names: cifar10, digits, fashion-mnist, mnist, mnist1d"
    ):
        load_split("cifar", "train")
    with pytest.raises(DatasetError, match="valid names: train, val, test"):
        load_split("digits", "validation")
