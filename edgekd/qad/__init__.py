"""Quantization-aware distillation: fine-tune the student against the fp32 teacher through the int8 model ONNX Runtime will run."""
