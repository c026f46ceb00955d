"""Each quantization scheme on the built-in models: size, accuracy and latency as ratios to fp32.

Every variant of a model is timed interleaved with its fp32 original in one process (one thread,
CPU execution provider), so the ratios hold even on a noisy shared machine; absolute figures are
printed beside them for reference only.

    python tools/quant_table.py                 # mlp, cnn, a wider cnn, MobileNetV2, ResNet on digits
    python tools/quant_table.py --runs 2000     # tighter percentiles
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgekd.runtime.session import open_session, run_batches
from edgekd._platform import cpu_info
from edgekd._progress import set_quiet
from edgekd.runtime.timing import session_call, time_interleaved
from edgekd.data import load_data
from edgekd.distill.trainer import TrainSettings, fit
from edgekd.export.onnx import export_onnx
from edgekd.export.quantize import quantize_model
from edgekd.export.simplify import simplify
from edgekd.models import ModelSpec, build_model
from edgekd.targets import QuantizationConfig, RuntimeConfig, Scheme

MODELS = {
    "mlp": ("mlp", {}),
    "cnn": ("cnn", {}),
    "cnn-wide": ("cnn", {"channels": [64, 128], "hidden": 256}),
    "mobilenetv2": ("mobilenetv2", {}),
    "resnet": ("resnet", {}),
}
SCHEMES = {
    "static per-channel": QuantizationConfig(scheme=Scheme.static_qdq, per_channel=True),
    "static per-tensor": QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False),
    "static per-channel reduce-range": QuantizationConfig(scheme=Scheme.static_qdq, per_channel=True, reduce_range=True),
    "dynamic": QuantizationConfig(scheme=Scheme.dynamic, per_channel=False),
    "fp16": QuantizationConfig(scheme=Scheme.fp16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    set_quiet(True)
    data = load_data("digits")
    info = cpu_info()
    print(f"CPU: {info['cpu']} ({info['int8_features']}; int8 dot product: {info['int8_dot_product']}), 1 thread, CPU EP, batch 1")
    print(f"{'model':<10} {'scheme':<32} {'params':>8} {'KiB':>7} {'size×':>6} {'top-1':>7} {'Δtop-1':>7} {'p50 µs':>8} {'latency×':>9}")
    with tempfile.TemporaryDirectory() as work_dir:
        for model_name, (family, model_args) in MODELS.items():
            work = Path(work_dir) / model_name
            work.mkdir()
            torch.manual_seed(0)
            spec = ModelSpec(family, model_args, data.input_shape, data.num_classes)
            model = build_model(spec)
            fit(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainSettings(args.epochs, 64, 2e-3, 0), model_name)
            export_onnx(model, data.input_shape, work / "fp32.raw.onnx", 18)
            simplify(work / "fp32.raw.onnx", work / "fp32.onnx", data.x_test, 1e-4)
            files = {"fp32": work / "fp32.onnx"}
            for scheme_name, cfg in SCHEMES.items():
                folder = work / scheme_name.replace(" ", "_")
                folder.mkdir()
                cfg = dataclasses.replace(cfg, max_excluded_nodes=0)  # the raw scheme, no exclusions
                result = quantize_model(files["fp32"], folder, cfg, data.calibration(256), data.x_val, data.y_val)
                files[scheme_name] = Path(result.path)
            sessions = {name: open_session(path, ["CPUExecutionProvider"], RuntimeConfig(intra_op_threads=1)) for name, path in files.items()}
            times = time_interleaved({n: session_call(s, data.x_test, 1) for n, s in sessions.items()}, 50, args.runs)
            p50 = {n: float(np.median(t)) / 1e3 for n, t in times.items()}
            accuracy = {n: float((run_batches(s, data.x_test).argmax(1) == data.y_test).mean()) for n, s in sessions.items()}
            size = {n: p.stat().st_size for n, p in files.items()}
            params = sum(p.numel() for p in model.parameters())
            for name in files:
                print(f"{model_name:<10} {name:<32} {params:>8,} {size[name] / 1024:>7.1f} {size[name] / size['fp32']:>6.2f} "
                      f"{accuracy[name]:>7.2%} {(accuracy[name] - accuracy['fp32']) * 100:>+7.2f} {p50[name]:>8.1f} {p50[name] / p50['fp32']:>9.2f}")


if __name__ == "__main__":
    main()
