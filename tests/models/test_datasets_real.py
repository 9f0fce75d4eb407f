"""The real image datasets: file formats, lookup order, official splits, broken files.

Small files in the exact formats (IDX plain and gzip, CIFAR-10 python pickles) are written
to ``tmp_path``; one test reads the real Fashion-MNIST that Debian's ``dataset-fashion-mnist``
installs (``make test`` and CI install it, so that test asserts and never skips).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lowbit.models import data
from lowbit.models.data import DatasetError, load_split, split_indices, split_sizes

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 4  # val: a tenth of each class (3), below 500


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch):
    """No ``$LOWBIT_DATA`` from the environment; restored after the test."""
    monkeypatch.delenv("LOWBIT_DATA", raising=False)


@pytest.fixture()
def no_debian(monkeypatch, tmp_path):
    """Pretend Debian's dataset-fashion-mnist is not installed."""
    entry = data._FILE_DATASETS["fashion-mnist"]
    layout = replace(entry.layout, debian_dir=tmp_path / "not-installed")
    monkeypatch.setitem(data._FILE_DATASETS, "fashion-mnist", replace(entry, layout=layout))


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x00000800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def make_idx(directory: Path, *, gz: bool, seed: int = 0, per_class: int = TRAIN_PER_CLASS):
    """Write the four IDX files (classes shuffled; pixels random 0-255); return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", per_class), ("t10k", TEST_PER_CLASS)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n))
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[0, 0, :2] = (0, 255)
        suffix = ".gz" if gz else ""
        write_file(directory / f"{part}-images-idx3-ubyte{suffix}", idx_bytes(images))
        write_file(directory / f"{part}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
        arrays[part] = (images, labels)
    return arrays


def cifar_pickle(batch: dict, *, protocol: int) -> bytes:
    raw = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:  # the real files name numpy.core (pickled by numpy 1.x, Python 2)
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return raw


def make_cifar(directory: Path, *, protocol: int = 2, per_class: int = 2, seed: int = 0):
    """Write the six batches; every image's red/green/blue planes are constant (its index
    in the batch, +100, +200 mod 256) so the channel layout is checkable."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).tolist()
        planes = np.arange(len(labels))[:, None] + np.array([0, 100, 200])[None, :]
        rows = np.repeat((planes % 256).astype(np.uint8), 1024, axis=1)
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows}
        write_file(directory / name, cifar_pickle(batch, protocol=protocol))
        out[name] = (rows, labels)
    return out


def use_data_dir(monkeypatch, directory: Path) -> None:
    monkeypatch.setenv("LOWBIT_DATA", str(directory))


# --- IDX datasets ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist"])
def test_idx_dataset_values_and_official_splits(tmp_path, monkeypatch, dataset, gz):
    arrays = make_idx(tmp_path / dataset, gz=gz)
    use_data_dir(monkeypatch, tmp_path)
    n_train, n_test = 10 * TRAIN_PER_CLASS, 10 * TEST_PER_CLASS
    n_val = 10 * (TRAIN_PER_CLASS // 10)
    assert split_sizes(dataset) == {"train": n_train - n_val, "val": n_val, "test": n_test}

    index = split_indices(dataset)
    all_images = np.concatenate([arrays["train"][0], arrays["t10k"][0]])
    all_labels = np.concatenate([arrays["train"][1], arrays["t10k"][1]])
    for split in data.SPLITS:
        x, y = load_split(dataset, split)
        assert x.shape == (len(index[split]), 1, 28, 28) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        expected = all_images[index[split]].astype(np.float32)[:, None] / np.float32(255)
        assert np.array_equal(x.numpy(), expected)  # pixel / 255, exactly
        assert np.array_equal(y.numpy(), all_labels[index[split]])
    assert float(load_split(dataset, "train")[0].max()) <= 1.0
    # test is the official test set, in file order; val and train partition the official train
    assert index["test"].tolist() == list(range(n_train, n_train + n_test))
    assert not set(index["val"]) & set(index["train"])
    assert sorted([*index["val"], *index["train"]]) == list(range(n_train))
    # stratified: the same number of every class in val
    assert np.bincount(load_split(dataset, "val")[1].numpy()).tolist() == [n_val // 10] * 10


def test_val_takes_500_per_class_from_a_full_size_class(tmp_path, monkeypatch):
    make_idx(tmp_path, gz=False, per_class=5200)  # above 10 x 500: val is capped at 500
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes("mnist") == {"train": 47000, "val": 5000, "test": 40}


def test_splits_are_deterministic_and_follow_the_content(tmp_path, monkeypatch):
    make_idx(tmp_path / "a" / "mnist", gz=True)
    make_idx(tmp_path / "b" / "mnist", gz=False)  # same content, another copy
    use_data_dir(monkeypatch, tmp_path / "a")
    first = split_indices("mnist")
    x_first, _ = load_split("mnist", "val")
    x_first += 1  # callers may modify what they get
    data._all_arrays.cache_clear()
    data._split_index.cache_clear()
    use_data_dir(monkeypatch, tmp_path / "b")
    second = split_indices("mnist")
    for split in data.SPLITS:
        assert np.array_equal(first[split], second[split])
    assert float(load_split("mnist", "val")[0].max()) <= 1.0


def test_replaced_files_are_read_again(tmp_path, monkeypatch):
    make_idx(tmp_path, gz=False)
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes("mnist")["test"] == 40
    labels = np.zeros(5, dtype=np.uint8)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labels))
    assert split_sizes("mnist")["test"] == 5  # the cache key holds sizes and mtimes


@pytest.mark.parametrize(
    ("dataset", "subdir"),
    [
        ("fashion-mnist", ""),
        ("fashion-mnist", "fashion-mnist"),
        ("fashion-mnist", "fashion_mnist"),
        ("fashion-mnist", "FashionMNIST/raw"),  # torchvision's layout
        ("mnist", ""),
        ("mnist", "mnist"),
        ("mnist", "MNIST/raw"),
    ],
)
def test_idx_layouts_are_found(tmp_path, monkeypatch, dataset, subdir):
    make_idx(tmp_path / subdir, gz=True)
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes(dataset)["test"] == 10 * TEST_PER_CLASS
    assert data.dataset_info(dataset).source == f"{tmp_path / subdir} ($LOWBIT_DATA)"


def test_a_dataset_subdirectory_beats_files_at_the_top(tmp_path, monkeypatch):
    make_idx(tmp_path, gz=True, per_class=20)
    make_idx(tmp_path / "MNIST" / "raw", gz=False)
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes("mnist")["train"] + split_sizes("mnist")["val"] == 10 * TRAIN_PER_CLASS
    assert split_sizes("fashion-mnist")["val"] == 20  # the top-level copy (20 per class)


def test_lowbit_data_beats_debian_and_debian_is_found_without_it(tmp_path, monkeypatch):
    make_idx(tmp_path / "fashion-mnist", gz=True)
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes("fashion-mnist")["test"] == 10 * TEST_PER_CLASS
    assert data.dataset_info("fashion-mnist").source.endswith("($LOWBIT_DATA)")
    monkeypatch.delenv("LOWBIT_DATA")
    source = data.dataset_info("fashion-mnist").source
    assert source == "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)"


def test_real_fashion_mnist_from_debian():
    # Makefile (`make test`) and .ci/run install dataset-fashion-mnist: this must not skip.
    assert split_sizes("fashion-mnist") == {"train": 55000, "val": 5000, "test": 10000}
    key = data._key("fashion-mnist")
    assert [Path(path).parent for path, *_ in key] == [data.DEBIAN_FASHION_MNIST] * 4
    x, y, n_test = data._all_arrays("fashion-mnist", key)
    assert x.shape == (70000, 1, 28, 28) and x.dtype == np.uint8 and n_test == 10000
    assert np.bincount(y[:60000]).tolist() == [6000] * 10
    assert np.bincount(y[60000:]).tolist() == [1000] * 10
    x_val, y_val = load_split("fashion-mnist", "val")
    assert x_val.shape == (5000, 1, 28, 28) and x_val.dtype == torch.float32
    assert float(x_val.min()) == 0.0 and float(x_val.max()) == 1.0
    assert torch.bincount(y_val).tolist() == [500] * 10
    index = split_indices("fashion-mnist")
    assert index["test"].tolist() == list(range(60000, 70000))
    assert sorted([*index["train"].tolist(), *index["val"].tolist()]) == list(range(60000))


# --- CIFAR-10 ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_values_and_official_splits(tmp_path, monkeypatch, protocol):
    batches = make_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol, per_class=2)
    use_data_dir(monkeypatch, tmp_path)
    # train 5 batches x 20 = 100 (10 per class): val takes a tenth of each class
    assert split_sizes("cifar10") == {"train": 90, "val": 10, "test": 20}
    assert data.dataset_info("cifar10").input_shape == (3, 32, 32)
    x, y = load_split("cifar10", "test")
    rows, labels = batches["test_batch"]
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == labels
    for i in (0, 7):  # row-major CHW: each channel plane is constant
        for channel in range(3):
            plane = x[i, channel]
            assert torch.all(plane == float(rows[i, channel * 1024] / np.float32(255)))
    assert torch.equal(x.flatten(1), torch.from_numpy(rows.astype(np.float32) / 255))
    index = split_indices("cifar10")
    assert sorted([*index["train"], *index["val"]]) == list(range(100))
    train_labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert np.array_equal(load_split("cifar10", "val")[1].numpy(), train_labels[index["val"]])
    assert np.bincount(train_labels[index["val"]]).tolist() == [1] * 10


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py", "cifar10/cifar-10-batches-py"])
def test_cifar10_layouts_are_found(tmp_path, monkeypatch, subdir):
    make_cifar(tmp_path / subdir)
    use_data_dir(monkeypatch, tmp_path)
    assert split_sizes("cifar10")["test"] == 20


# --- broken files ------------------------------------------------------------------------


def _labels(n: int = 40) -> bytes:
    return idx_bytes(np.repeat(np.arange(10, dtype=np.uint8), n // 10))


def _images(n: int = 40, rows: int = 28) -> bytes:
    return idx_bytes(np.zeros((n, rows, 28), dtype=np.uint8))


IDX_DEFECTS = {
    # name: (file, content, words the message must hold)
    "wrong magic": ("t10k-images-idx3-ubyte", _labels(), "wrong magic number 0x00000801"),
    "wrong dimensions": ("t10k-images-idx3-ubyte", _images(rows=32), "32x28, expected 28x28"),
    "truncated": ("t10k-images-idx3-ubyte", _images()[:-100], "truncated"),
    "truncated header": ("t10k-labels-idx1-ubyte", b"\x00\x00\x08", "truncated"),
    "extra bytes": ("t10k-labels-idx1-ubyte", _labels() + b"\x00", "1 byte after"),
    "count mismatch": ("t10k-labels-idx1-ubyte", _labels(30), "30 labels but"),
    "label out of range": (
        "t10k-labels-idx1-ubyte",
        idx_bytes(np.full(40, 10, np.uint8)),
        "label 10 at index 0 is outside 0-9",
    ),
}


@pytest.mark.parametrize("defect", IDX_DEFECTS)
def test_broken_idx_files_name_the_file(tmp_path, monkeypatch, defect):
    make_idx(tmp_path, gz=False)
    name, content, words = IDX_DEFECTS[defect]
    write_file(tmp_path / name, content)
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError) as caught:
        load_split("mnist", "test")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path.resolve() / name}: ") and words in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not gzip"])
def test_corrupt_gzip_names_the_file(tmp_path, monkeypatch, damage):
    make_idx(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    packed = path.read_bytes()
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    elif damage == "flipped":
        packed = packed[:-8] + bytes(b ^ 0xFF for b in packed[-8:])  # CRC and size
    else:
        packed = _images()
    path.write_bytes(packed)
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError, match="not a valid gzip file") as caught:
        load_split("fashion-mnist", "train")
    assert str(caught.value).startswith(f"{path.resolve()}: ")


def _refused_payload(function, *args) -> bytes:
    class Payload:
        def __reduce__(self):
            return (function, args)  # harmless if it ever ran; it must not even be resolved

    return pickle.dumps({b"data": Payload(), b"labels": []}, protocol=2)


CIFAR_DEFECTS = {
    "code in the pickle": (_refused_payload(os.getcwd), "refused to unpickle posix.getcwd"),
    "a builtin function": (_refused_payload(eval, "1"), "refused to unpickle __builtin__.eval"),
    "truncated": (
        cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)[:-40],
        "not a readable CIFAR-10 batch",
    ),
    "garbage": (b"\x00garbage", "not a readable CIFAR-10 batch"),
    "not a dict": (pickle.dumps([1, 2], protocol=2), "holds a list"),
    "no labels": (pickle.dumps({b"data": b""}, protocol=2), "no 'data' and 'labels'"),
    "wrong shape": (
        cifar_pickle({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, protocol=2),
        "expected uint8 of shape (N, 3072)",
    ),
    "wrong dtype": (
        cifar_pickle({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, protocol=2),
        "'data' is float32 (2, 3072)",
    ),
    "count mismatch": (
        cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
        "1 labels for 2 images",
    ),
    "label out of range": (
        cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2),
        "label 10 at index 1 is outside 0-9",
    ),
    "labels not ints": (
        cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, protocol=2),
        "'labels' is not a list of ints",
    ),
}


@pytest.mark.parametrize("defect", CIFAR_DEFECTS)
def test_broken_cifar_batches_name_the_file(tmp_path, monkeypatch, defect):
    make_cifar(tmp_path)
    content, words = CIFAR_DEFECTS[defect]
    (tmp_path / "data_batch_3").write_bytes(content)
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError) as caught:
        load_split("cifar10", "val")
    message = str(caught.value)
    assert message.startswith(f"{(tmp_path / 'data_batch_3').resolve()}: ") and words in message
    assert "\n" not in message


# --- missing files -----------------------------------------------------------------------


def test_missing_fashion_mnist_names_files_places_and_the_apt_get_fix(
    tmp_path, monkeypatch, no_debian
):
    with pytest.raises(DatasetError) as caught:
        load_split("fashion-mnist", "train")
    message = str(caught.value)
    assert "\n" not in message and "$LOWBIT_DATA (not set)" in message
    assert all(name in message for name in IDX_NAMES)
    assert str(tmp_path / "not-installed") in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "--data-dir" in message
    assert data.dataset_info("fashion-mnist").source is None
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError, match="FashionMNIST/raw"):  # the places tried are listed
        split_sizes("fashion-mnist")


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_missing_user_only_datasets_say_how_to_provide_them(tmp_path, monkeypatch, dataset):
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError) as caught:
        split_indices(dataset)
    message = str(caught.value)
    assert message.startswith(f"{dataset}: dataset files not found: ") and "\n" not in message
    assert str(tmp_path) in message and "LOWBIT_DATA=DIR" in message
    assert "apt-get" not in message


def test_a_partial_copy_is_an_error(tmp_path, monkeypatch):
    make_idx(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    use_data_dir(monkeypatch, tmp_path)
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_split("mnist", "test")


def test_lowbit_data_must_be_a_directory(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="LOWBIT_DATA=.*nowhere: not a directory"):
        load_split("fashion-mnist", "val")
    assert data.dataset_info("fashion-mnist").source is None


def test_registry_loader_returns_every_sample_as_float(tmp_path, monkeypatch):
    arrays = make_idx(tmp_path, gz=False)
    use_data_dir(monkeypatch, tmp_path)
    x, y = data.DATASETS["mnist"][1]()
    assert x.dtype == np.float32 and x.shape == (340, 1, 28, 28)
    assert np.array_equal(y, np.concatenate([arrays["train"][1], arrays["t10k"][1]]))
    info = data.dataset_info("mnist")
    assert info.official_test and info.num_classes == 10 and info.input_shape == (1, 28, 28)
