"""The runtime layer shared by export and bench: metrics of outputs, batched runs, feeds."""

import numpy as np
import pytest

from edgekd.runtime.metrics import compare_outputs, top1_hits


def test_top1_hits_is_right_per_sample():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_hits(logits, np.array([1, 1, 1])).tolist() == [True, False, True]


def test_compare_outputs_measures_the_difference_it_is_given():
    reference = np.array([[4.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    shifted = reference + np.array([[1e-3, 0.0], [0.0, 0.0]], dtype=np.float32)
    agree = compare_outputs(reference, shifted)
    assert agree.max_abs == pytest.approx(1e-3, rel=1e-3) and agree.mean_abs == pytest.approx(2.5e-4, rel=1e-3)
    assert agree.scale == 4.0 and agree.agreement == 1.0
    flipped = compare_outputs(reference, reference[:, ::-1])
    assert flipped.agreement == 0.0 and flipped.max_abs == 4.0


def test_a_fixed_batch_model_runs_every_row_once(tmp_path):
    """A model exported with a fixed batch gets padded batches; the padding's outputs are dropped."""
    import onnx
    from onnx import TensorProto, helper

    from edgekd.runtime.session import fixed_batch, open_session, run_batches

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, 3])])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    session = open_session(path)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    assert fixed_batch(session) == 4
    np.testing.assert_array_equal(run_batches(session, x), x)
