"""Export: torch → ONNX (parity-checked) → onnxsim (verified) → ONNX Runtime quantization."""

from edgekd.export.stage import ExportResult, export

__all__ = ["ExportResult", "export"]
