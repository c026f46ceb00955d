import pytest
import torch

from edgekd.errors import ModelError
from edgekd.models import FAMILIES, ModelSpec, build_model
from edgekd.models.checkpoint import load_model, save_checkpoint


IMAGE_FAMILIES = sorted(set(FAMILIES) - {"transformer"})  # the text family: tests/test_text.py
DENSE = {"unet": lambda n, classes: (n, classes, 8, 8),  # segmentation: logits per pixel
         "detector": lambda n, classes: (n, 2 * 2 + 1 + 1, 4 + classes)}  # detection: box + logits at positions of strides 4, 8, 16


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_families_build_and_run(family):
    model = build_model(ModelSpec(family, {}, (1, 8, 8), 10))
    assert model(torch.zeros(3, 1, 8, 8)).shape == DENSE.get(family, lambda n, classes: (n, classes))(3, 10)


def test_student_is_much_smaller_than_teacher():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    teacher = build_model(ModelSpec("cnn", {}, (1, 8, 8), 10))
    student = build_model(ModelSpec("mlp", {}, (1, 8, 8), 10))
    assert count(teacher) > 10 * count(student)


def test_unknown_family_suggests():
    with pytest.raises(ModelError, match="unknown model family 'cnm' — did you mean 'cnn'"):
        build_model(ModelSpec("cnm", {}, (1, 8, 8), 10))


def test_unknown_argument_lists_valid_ones():
    with pytest.raises(ModelError, match="no argument 'width'; valid arguments: hidden, dropout"):
        build_model(ModelSpec("mlp", {"width": 3}, (1, 8, 8), 10))


def test_cnn_needs_images():
    with pytest.raises(ModelError, match="cnn needs image inputs"):
        build_model(ModelSpec("cnn", {}, (64,), 10))


def test_user_factory(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def tiny(num_classes, width=4):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, width), torch.nn.Linear(width, num_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    model = build_model(ModelSpec("mymodels:tiny", {"width": 5}, (1, 8, 8), 3))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    spec = ModelSpec("mlp", {"hidden": [8]}, (1, 8, 8), 10)
    model = build_model(spec)
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded, loaded_spec = load_model(tmp_path / "m.pt")
    assert loaded_spec == spec
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_shape_mismatch_names_the_key(tmp_path):
    spec = ModelSpec("mlp", {"hidden": [8]}, (1, 8, 8), 10)
    torch.save(build_model(spec).state_dict(), tmp_path / "plain.pt")
    other = ModelSpec("mlp", {"hidden": [16]}, (1, 8, 8), 10)
    with pytest.raises(ModelError, match="'features.1.weight' has shape \\(8, 64\\) in the checkpoint but \\(16, 64\\)"):
        load_model(tmp_path / "plain.pt", other)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"evil": object()}, tmp_path / "pickle.pt")  # needs full unpickling to load
    with pytest.raises(ModelError, match="loads checkpoints with weights_only=True only"):
        load_model(tmp_path / "pickle.pt")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="bad.pt"):
        load_model(tmp_path / "bad.pt")
