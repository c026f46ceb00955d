"""The runtime layer under export and bench: ONNX Runtime sessions and feeds, batched runs,
timing, graph figures and the metrics of a model on data.

Export and bench both stand on it and never import each other. No torch here: a build machine
that only benches an ONNX file needs onnxruntime alone.
"""
