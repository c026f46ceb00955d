import numpy as np
import pytest

from edgekd.data import load_data, load_test_split
from edgekd.errors import DataError


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_data("digits"), load_data("digits")
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert 0.0 <= np.asarray(a.x_train).min() and np.asarray(a.x_train).max() <= 1.0
    shares = np.bincount(a.y_test) / len(a.y_test)
    assert np.all(np.abs(shares - 0.1) < 0.02), "every class about 10% of the test split"
    assert len(a.x_train) == 1221 and len(a.x_val) == 216 and len(a.x_test) == 360


def test_calibration_comes_from_training_images():
    data = load_data("digits")
    calib = data.calibration(64)
    train_rows = {r.tobytes() for r in np.asarray(data.x_train)}
    assert len(calib) == 64 and all(r.tobytes() in train_rows for r in np.asarray(calib))


def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_source_fills_val_from_train(tmp_path):
    rng = np.random.default_rng(0)
    source = _npz(tmp_path, x_train=rng.random((100, 5)), y_train=np.arange(100) % 3, x_test=rng.random((20, 5)), y_test=np.arange(20) % 3)
    data = load_data(source, val_fraction=0.2)
    assert len(data.x_val) == 20 and len(data.x_train) == 80 and data.num_classes == 3 and data.x_train["input"].dtype == np.float32


def test_npz_without_x_train_names_the_array(tmp_path):
    source = _npz(tmp_path, x_test=np.zeros((4, 2)), y_test=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="no array 'x_train'"):
        load_data(source)


def test_bench_needs_only_the_test_arrays(tmp_path):
    source = _npz(tmp_path, x_test=np.ones((4, 2)), y_test=np.array([0, 1, 0, 1]))
    x, y = load_test_split(source)
    assert np.asarray(x).shape == (4, 2) and y.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "arrays,expected",
    [
        ({"y_train": np.array([0, 1, 1]), "x_test": np.zeros((2, 2)), "y_test": np.array([0, 5])}, "test labels go up to 5"),
        ({"y_train": np.array([0, 1, 1]), "x_test": np.zeros((2, 2)), "y_test": np.array([0])}, "y_test has shape"),
        ({"y_train": np.array([0, -1, 1]), "x_test": np.zeros((2, 2)), "y_test": np.array([0, 1])}, "negative labels"),
        ({"y_train": np.array([3, 3, 3]), "x_test": np.zeros((2, 2)), "y_test": np.array([3, 3])}, "every training label is 3; a classifier needs at least two"),
        ({"y_train": np.array([20, 21, 22]), "x_test": np.zeros((2, 2)), "y_test": np.array([20, 21])},
         r"use 3 of the 23 classes 0\.\.22 they imply; remap them to 0\.\.2"),
        ({"y_train": np.array([0, 1, 10**9]), "x_test": np.zeros((2, 2)), "y_test": np.array([0, 1])}, "use 3 of the 1000000001 classes"),
        ({"x_train": np.zeros((3, 2), np.complex64), "y_train": np.array([0, 1, 1]), "x_test": np.zeros((2, 2)), "y_test": np.array([0, 1])},
         "x_train holds complex numbers"),
        ({"x_train": np.array([["a", "b"]] * 3), "y_train": np.array([0, 1, 1]), "x_test": np.zeros((2, 2)), "y_test": np.array([0, 1])},
         "x_train has dtype <U1; expected numbers"),
    ],
)
def test_bad_labels(tmp_path, arrays, expected):
    arrays = {"x_train": np.zeros((3, 2)), **arrays}
    source = _npz(tmp_path, x_val=np.zeros((3, 2)), y_val=arrays["y_train"], **arrays)
    with pytest.raises(DataError, match=expected):
        load_data(source)


def test_nan_inputs_are_rejected(tmp_path):
    x = np.zeros((3, 2))
    x[1, 1] = np.nan
    source = _npz(tmp_path, x_train=x, y_train=np.array([0, 1, 1]), x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(DataError, match="NaN"):
        load_data(source)


@pytest.mark.parametrize("source,expected", [("npz:/no/such.npz", "not found"), ("mnist", "unknown data source"), ("nomodule_xyz:fn", "cannot import")])
def test_bad_sources(source, expected):
    with pytest.raises(DataError, match=expected):
        load_data(source)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(f"npz:{path}")


def test_user_function_source(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    return {'x_train': np.eye(6)[[0,1,2,3,4,5]*5], 'y_train': np.array([0,1,2]*10),\n"
        "            'x_test': np.eye(6), 'y_test': np.array([0,1,2]*2)}\n"
    )
    monkeypatch.chdir(tmp_path)
    data = load_data("mydata:load")
    assert data.num_classes == 3 and data.input_shape == (6,)


def test_fractional_labels_make_a_regression_task_unless_classification_is_asked_for(tmp_path, monkeypatch):
    import edgekd.data.splits

    said = []
    monkeypatch.setattr(edgekd.data.splits, "say", said.append)
    arrays = {"x_train": np.zeros((4, 2)), "y_train": np.array([0.5, 1, 1, 2]), "x_test": np.zeros((2, 2)), "y_test": np.array([0.0, 1.5])}
    source = _npz(tmp_path, **arrays)
    with pytest.raises(DataError, match='integer class indices .* set task = "regression"'):
        load_data(source, task_name="classification")
    splits = load_data(source)
    assert splits.task == "regression" and splits.num_classes == 1 and splits.y_test.shape == (2, 1)
    assert any("the task is regression" in line for line in said)
