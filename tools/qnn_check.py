"""The qnn-htp target, checked as far as an x86-64 machine can: a student distilled and exported for
it by edgekd (QDQ, uint8 activations and weights, batch fixed at 1), then ONNX Runtime's QNN
execution provider — the `onnxruntime-qnn` plugin package — asked to take it with its HTP backend
and to write the EP-context model (the offline-prepared QNN context binary a device loads).

Each step is reported as done, or as not checked with ONNX Runtime's own words; nothing that did not
run is reported as passed. Needs `pip install onnxruntime-qnn` (about 300 MB; not an edgekd
dependency). Writes docs/results/qnn-htp.md and prints it.

    pip install onnxruntime-qnn && python tools/qnn_check.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import onnx
from _pages import RESULTS, provenance, write_page

from edgekd._progress import set_quiet
from edgekd.distill.stage import distill
from edgekd.export.stage import export
from edgekd.recipe import recipe_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, default=RESULTS / "qnn-htp.md")
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    try:
        import onnxruntime_qnn
    except ImportError:
        raise SystemExit("needs the QNN plugin package: pip install onnxruntime-qnn") from None
    import onnxruntime as ort

    steps: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        distill(recipe_from_dict({"teacher": {"epochs": 5}, "distill": {"epochs": 10, "baseline": "none"}, "target": {"name": "qnn-htp"}}), run)
        exported = export(run, "qnn-htp")
        model = run / exported.deployed
        graph = onnx.load(str(model)).graph
        ops = sorted({n.op_type for n in graph.node})
        shapes = [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input]
        steps.append(("edgekd export for qnn-htp", f"done: {exported.deployed}, {model.stat().st_size / 1024:.1f} KiB, "
                      f"{exported.quantized.scheme} {exported.quantized.settings.get('activation_type')}/"
                      f"{exported.quantized.settings.get('weight_type')}, input shape {shapes[0]}, ops {', '.join(ops)}"))
        try:
            ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
            devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
            steps.append(("register the onnxruntime-qnn plugin", f"done: onnxruntime-qnn {onnxruntime_qnn.__version__} "
                          f"(QNN SDK {getattr(onnxruntime_qnn.build_and_package_info, 'qnn_version', '?')}); "
                          f"{len(devices)} QNN device(s): {', '.join(str(d.device.type) for d in devices) or 'none'}"))
        except Exception as exc:  # the plugin API raises ORT's own exception types
            devices = []
            steps.append(("register the onnxruntime-qnn plugin", f"not checked: {_first_line(exc)}"))
        context = Path(folder) / "student_ctx.onnx"
        steps.append(("QNN HTP takes the model and writes the EP-context (offline-prepared) file",
                      _prepare(ort, onnxruntime_qnn, devices, model, context)))
        if context.is_file():
            nodes = onnx.load(str(context)).graph.node
            inside = sum(n.op_type == "EPContext" for n in nodes)
            steps.append(("partitions", f"{inside} EPContext node(s) (QNN partitions), {len(nodes) - inside} node(s) left to the CPU EP"))
    steps.append(("latency and accuracy on a Snapdragon NPU", "not checked: no Qualcomm device here; run `edgekd bench` on one with onnxruntime-qnn"))
    lines = ["# qnn-htp: what an x86-64 machine can check", "", provenance("qnn_check.py", time.perf_counter() - began, [0]), "",
             "| step | outcome |", "|---|---|", *(f"| {step} | {outcome.replace('|', '/')} |" for step, outcome in steps)]
    write_page(args.write, "\n".join(lines) + "\n")


def _prepare(ort, onnxruntime_qnn, devices, model: Path, context: Path) -> str:
    """A session with the QNN EP (HTP backend) that writes the EP-context model; ORT's error when it cannot."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "0")
    options.add_session_config_entry("ep.context_enable", "1")
    options.add_session_config_entry("ep.context_file_path", str(context))
    settings = {"backend_path": onnxruntime_qnn.get_qnn_htp_path()}
    try:
        if devices:
            options.add_provider_for_devices(devices, settings)
            ort.InferenceSession(str(model), options)
        else:
            ort.InferenceSession(str(model), options, providers=["QNNExecutionProvider"], provider_options=[settings])
    except Exception as exc:
        return f"not checked: ONNX Runtime said: {_first_line(exc)}"
    if not context.is_file():
        return "not checked: the session opened but wrote no EP-context file (the QNN EP took no node)"
    return f"done: {context.name} written ({context.stat().st_size / 1024:.1f} KiB)"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


if __name__ == "__main__":
    main()
