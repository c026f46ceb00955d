"""The public Python API: what `import edgekd` offers, and the API guide's example run as it stands."""

import re
import subprocess
import sys
from pathlib import Path


import edgekd

API_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "python-api.md"


def test_every_public_name_resolves_and_is_listed():
    assert set(edgekd.__all__) <= set(dir(edgekd))
    for name in edgekd.__all__:
        assert getattr(edgekd, name) is not None, name


def test_stage_functions_stay_functions_after_their_packages_are_imported():
    """`edgekd.export` would be the subpackage once imported: the API's names must not collide."""
    import edgekd.bench.stage  # noqa: F401
    import edgekd.distill.stage  # noqa: F401
    import edgekd.export.stage  # noqa: F401

    for name in ("distill_run", "export_run", "bench_run", "distill_model", "export_model", "quantize_model", "bench_models"):
        assert callable(getattr(edgekd, name)) and not isinstance(getattr(edgekd, name), type(sys)), name


def test_import_edgekd_and_its_bench_path_do_not_import_torch():
    code = "import sys, edgekd; edgekd.bench_models; edgekd.bench_run; edgekd.BenchReport; edgekd.Role; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _readme_example() -> str:
    section = API_GUIDE.read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_from_a_model_defined_inline_to_a_verdict(tmp_path):
    """A model defined in the script itself → distilled → exported → int8 → benched against x86-cpu."""
    script = tmp_path / "example.py"
    script.write_text(_readme_example(), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"distilled \d+\.\d% \(teacher \d+\.\d%\); student (int8|fp32|quantized): (PASS|FAIL)", out.stdout), out.stdout
    assert "max_size_kb" in out.stdout
    for name in ("student.onnx", "student.sim.onnx", "teacher.onnx"):
        assert (tmp_path / "out" / name).is_file(), name
