"""A detector's ONNX file with its post-processing inside: ONNX NonMaxSuppression after the raw outputs.

For apps that would rather not write the decoding: `with_nms` appends score and NMS nodes to a
(N, A, 4 + C) detector — sigmoid scores, NonMaxSuppression per class (score threshold, IoU
threshold, at most `max_detections` boxes per class and image) — and answers one tensor
`detections` (S, 7): rows [image index, x1, y1, x2, y2, score, class] over the batch. The same
thresholds as `boxes.decode` (whose one difference: it also caps each image's total).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.detection.boxes import MAX_DETECTIONS, NMS_IOU, SCORE_THRESHOLD
from edgekd.errors import ModelError

OUTPUT = "detections"


def with_nms(model_path: Path, out_path: Path, score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = NMS_IOU,
             max_detections: int = MAX_DETECTIONS) -> Path:
    """Write `model_path` with NMS appended to `out_path` (written whole or not at all)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekd._io import atomic_path

    model = onnx.load(str(model_path))
    graph = model.graph
    if len(graph.output) != 1:
        raise ModelError(f"{model_path}: include_nms needs a detector with one output (positions, 4 + classes); it has {len(graph.output)}")
    raw = graph.output[0].name
    prefix = "edgekd_nms_"
    constants = {
        "box_start": np.array([0], np.int64), "box_end": np.array([4], np.int64), "class_end": np.array([2**62], np.int64),
        "axis2": np.array([2], np.int64), "keep": np.array([max_detections], np.int64),
        "iou": np.array([iou_threshold], np.float32), "score": np.array([score_threshold], np.float32),
        "col0": np.array([0], np.int64), "col1": np.array([1], np.int64), "col2": np.array([2], np.int64),
        "col3": np.array([3], np.int64), "axis1": np.array([1], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(value, prefix + name) for name, value in constants.items())
    c = lambda name: prefix + name  # noqa: E731
    node = helper.make_node
    graph.node.extend([
        node("Slice", [raw, c("box_start"), c("box_end"), c("axis2")], [c("boxes")]),
        node("Slice", [raw, c("box_end"), c("class_end"), c("axis2")], [c("logits")]),
        node("Sigmoid", [c("logits")], [c("scores")]),
        node("Transpose", [c("scores")], [c("class_scores")], perm=[0, 2, 1]),  # (N, C, A), as NonMaxSuppression reads them
        node("NonMaxSuppression", [c("boxes"), c("class_scores"), c("keep"), c("iou"), c("score")], [c("selected")]),  # (S, 3)
        node("Slice", [c("selected"), c("col0"), c("col1"), c("axis1")], [c("image")]),
        node("Slice", [c("selected"), c("col1"), c("col2"), c("axis1")], [c("class")]),
        node("Slice", [c("selected"), c("col2"), c("col3"), c("axis1")], [c("position")]),
        node("Concat", [c("image"), c("position")], [c("where")], axis=1),
        node("GatherND", [c("boxes"), c("where")], [c("picked")]),  # (S, 4)
        node("GatherND", [c("class_scores"), c("selected")], [c("picked_score")]),  # (S,)
        node("Unsqueeze", [c("picked_score"), c("axis1")], [c("score_column")]),
        node("Cast", [c("image")], [c("image_float")], to=TensorProto.FLOAT),
        node("Cast", [c("class")], [c("class_float")], to=TensorProto.FLOAT),
        node("Concat", [c("image_float"), c("picked"), c("score_column"), c("class_float")], [OUTPUT], axis=1),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["detections", 7]))
    with atomic_path(Path(out_path)) as tmp:
        onnx.save(model, str(tmp))
    return Path(out_path)


def detections_per_image(rows: np.ndarray, images: int) -> list[np.ndarray]:
    """The (S, 7) output split by image: each (k, 6) [x1, y1, x2, y2, score, class], best first."""
    rows = np.asarray(rows)
    split = []
    for i in range(images):
        mine = rows[rows[:, 0] == i][:, 1:]
        split.append(mine[np.argsort(-mine[:, 4], kind="stable")])
    return split
