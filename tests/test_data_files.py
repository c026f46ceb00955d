"""idx:, csv:, imagefolder: and torch-dataset sources, on small files made here."""

import gzip
import struct

import numpy as np
import pytest

from edgekd.data import load_data
from edgekd.errors import DataError, ModelError
from edgekd.data.config import DataConfig


def _write_idx(path, array, gz):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[np.uint8], array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_mnist_layout(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (60, 28, 28)), gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(60) % 3, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (12, 28, 28)), gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.arange(12) % 3, gz)
    data = load_data(f"idx:{tmp_path}")
    assert data.input_shape == (1, 28, 28) and data.num_classes == 3 and len(data.x_test) == 12
    assert 0.0 <= np.asarray(data.x_train).min() and np.asarray(data.x_train).max() <= 1.0


def test_idx_truncated_file(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 4, 4)), False)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / name, np.zeros(5), False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 4, 4)), False)
    with pytest.raises(DataError, match="truncated"):
        load_data(f"idx:{tmp_path}")


def test_idx_missing_files(tmp_path):
    with pytest.raises(DataError, match="no IDX file for x_train"):
        load_data(f"idx:{tmp_path}")


def test_csv_with_named_label_column(tmp_path):
    rows = ["a,b,species"] + [f"{i},{i * 2},{['cat', 'dog'][i % 2]}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows))
    data = load_data(f"csv:{tmp_path / 't.csv'}", options=DataConfig(label_column="species"))
    assert data.input_shape == (2,) and data.num_classes == 2


@pytest.mark.parametrize(
    "text,label,expected",
    [("a,b\n1,2\n", None, "set [data] label_column"), ("a,b\n1,2\n", "c", "no column 'c'"), ("a,b\nx,1\n", "b", "column 'a' holds a value that is not a number")],
)
def test_csv_errors(tmp_path, text, label, expected):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError) as info:
        load_data(f"csv:{tmp_path / 't.csv'}", options=DataConfig(label_column=label))
    assert expected in str(info.value)


def _images(folder, classes, per_class, size=(10, 12), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(folder / c / f"{i}.png")


def test_imagefolder_resized_grey_normalised(tmp_path):
    _images(tmp_path / "imgs", ["a", "b", "c"], 10)
    cfg = DataConfig(image_size=[8, 8], grayscale=True, mean=[0.5], std=[0.25])
    data = load_data(f"imagefolder:{tmp_path / 'imgs'}", options=cfg)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 3
    assert np.asarray(data.x_train).min() >= -2.0 - 1e-6 and np.asarray(data.x_train).max() <= 2.0 + 1e-6


def test_imagefolder_with_train_and_test_folders(tmp_path):
    _images(tmp_path / "imgs" / "train", ["x", "y"], 8)
    _images(tmp_path / "imgs" / "test", ["x", "y"], 3)
    data = load_data(f"imagefolder:{tmp_path / 'imgs'}")
    assert len(data.x_test) == 6 and data.input_shape == (3, 10, 12)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    _images(tmp_path / "imgs", ["a"], 2, size=(10, 12))
    _images(tmp_path / "imgs", ["b"], 2, size=(6, 6))
    with pytest.raises(DataError, match="image_size"):
        load_data(f"imagefolder:{tmp_path / 'imgs'}")


def test_unlabeled_image_folder(tmp_path):
    _images(tmp_path / "imgs", ["a", "b"], 10, size=(8, 8))
    _images(tmp_path / "unlab" / "any", ["z"], 5, size=(8, 8))
    data = load_data(f"imagefolder:{tmp_path / 'imgs'}", options=DataConfig(unlabeled=f"imagefolder:{tmp_path / 'unlab'}"))
    assert np.asarray(data.x_unlabeled).shape == (5, 3, 8, 8)


def test_unlabeled_shape_must_match(tmp_path):
    np.savez(tmp_path / "u.npz", x_unlabeled=np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"unlabeled inputs have shape \(3,\)"):
        load_data("digits", options=DataConfig(unlabeled=f"npz:{tmp_path / 'u.npz'}"))


def test_factory_returning_torch_datasets(tmp_path, monkeypatch):
    (tmp_path / "mysets.py").write_text(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "def load():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.rand(60, 5, generator=g)\n"
        "    y = torch.arange(60) % 3\n"
        "    return {'train': TensorDataset(x[:48], y[:48]), 'test': TensorDataset(x[48:], y[48:]), 'unlabeled': TensorDataset(x[:7])}\n"
    )
    monkeypatch.chdir(tmp_path)
    data = load_data("mysets:load")
    assert data.input_shape == (5,) and data.num_classes == 3 and np.asarray(data.x_unlabeled).shape == (7, 5)


def test_shape_mismatch_fails_before_training_with_both_shapes(tmp_path, monkeypatch):
    from edgekd.distill.stage import distill
    from edgekd.recipe import load_recipe

    (tmp_path / "wide.py").write_text("import torch\ndef make(num_classes):\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, num_classes))\n")
    (tmp_path / "r.toml").write_text('[student]\nmodel = "wide:make"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as info:
        distill(load_recipe(tmp_path / "r.toml"), tmp_path / "run")
    assert "(1, 8, 8)" in str(info.value) and "100" in str(info.value)
    assert not (tmp_path / "run").exists()
