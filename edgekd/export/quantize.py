"""Quantization with ONNX Runtime's own tooling: static QDQ int8, calibrated on training images.

ONNX Runtime's `quant_pre_process` (shape inference + graph optimisation) runs first, as its
documentation recommends; then `quantize_static` inserts QuantizeLinear/DequantizeLinear pairs
with ranges measured on calibration data. Nothing here quantizes by hand.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._io import atomic_path
from edgekd.targets import CalibrationMethod, QuantizationConfig, QuantType, Scheme

_CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class QuantizeResult:
    path: str
    scheme: str  # "static-qdq" or "none"
    per_channel: bool
    activation_type: str
    weight_type: str
    calibration_method: str
    calibration_samples: int  # training images the ranges were measured on
    nodes: int
    bytes: int


def quantize(source: Path, dest: Path, cfg: QuantizationConfig, calibration: np.ndarray) -> QuantizeResult:
    """Quantize `source` into `dest` following the target's scheme (`none` copies the model)."""
    import onnx

    with atomic_path(Path(dest)) as tmp:
        if cfg.scheme is Scheme.none:
            shutil.copyfile(source, tmp)
        else:
            _static_qdq(Path(source), tmp, cfg, calibration)
    return QuantizeResult(
        path=str(dest),
        scheme=cfg.scheme.value,
        per_channel=cfg.per_channel,
        activation_type=cfg.activation_type.value,
        weight_type=cfg.weight_type.value,
        calibration_method=cfg.calibration_method.value,
        calibration_samples=len(calibration) if cfg.scheme is not Scheme.none else 0,
        nodes=len(onnx.load(str(dest)).graph.node),
        bytes=Path(dest).stat().st_size,
    )


def _static_qdq(source: Path, dest: Path, cfg: QuantizationConfig, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantType as OrtQuantType
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekd._ort import input_name, open_session

    name = input_name(open_session(source))

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{name: calibration[i : i + _CALIBRATION_BATCH]} for i in range(0, len(calibration), _CALIBRATION_BATCH)]
            )

        def get_next(self):
            return next(self._batches, None)

    types = {QuantType.int8: OrtQuantType.QInt8, QuantType.uint8: OrtQuantType.QUInt8}
    methods = {
        CalibrationMethod.minmax: OrtCalibration.MinMax,
        CalibrationMethod.entropy: OrtCalibration.Entropy,
        CalibrationMethod.percentile: OrtCalibration.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="edgekd-quant-", dir=dest.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared), str(dest), _Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            activation_type=types[cfg.activation_type],
            weight_type=types[cfg.weight_type],
            calibrate_method=methods[cfg.calibration_method],
        )
