"""Export: torch → ONNX (parity-checked) → onnxsim (verified) → ONNX Runtime quantization."""
