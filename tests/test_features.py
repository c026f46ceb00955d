"""Feature capture by module path, adapters, and the objective's terms on real training."""

import pytest
import torch

from edgekd.distill.features import FeatureTap, check_paths, make_adapter
from edgekd.errors import ModelError
from edgekd.models import ModelSpec, build_model

CNN = ModelSpec("cnn", {"channels": [8, 16], "hidden": 32}, (1, 8, 8), 10)


def test_wrong_path_suggests_the_closest():
    model = build_model(CNN)
    with pytest.raises(ModelError) as info:
        check_paths(model, ["feature.3"], "teacher")
    message = str(info.value)
    assert "teacher has no layer 'feature.3'" in message and "'features.3'" in message and "valid paths:" in message


def test_tap_records_named_outputs_and_detaches():
    model = build_model(CNN)
    tap = FeatureTap(model, ["features.2", "classifier.1"], "student")
    model(torch.zeros(3, 1, 8, 8))
    assert tap.outputs["features.2"].shape == (3, 8, 8, 8) and tap.outputs["classifier.1"].shape == (3, 32)
    tap.close()
    tap.outputs.clear()
    model(torch.zeros(1, 1, 8, 8))
    assert tap.outputs == {}, "closed taps leave the model untouched"


@pytest.mark.parametrize(
    "student,teacher",
    [((2, 4, 8, 8), (2, 16, 8, 8)), ((2, 4, 8, 8), (2, 16, 4, 4)), ((2, 4, 4, 4), (2, 16, 8, 8)), ((2, 64), (2, 32)), ((2, 4, 2, 2), (2, 32))],
)
def test_adapter_maps_student_shape_to_teacher_shape(student, teacher):
    adapter = make_adapter(torch.Size(student), torch.Size(teacher))
    assert adapter(torch.zeros(student)).shape == teacher


def test_adapter_refuses_impossible_pairs():
    with pytest.raises(ModelError, match="no adapter"):
        make_adapter(torch.Size((2, 64)), torch.Size((2, 4, 8, 8)))
