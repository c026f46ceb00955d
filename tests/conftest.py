"""Shared fixtures: a private teacher cache, a tiny fast recipe, trained run folders (image and text).

Slow end-to-end tests are marked `slow` and run with `--slow` (CI passes it); they are reported
as skipped otherwise, never silently dropped.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
pytest.register_assert_rewrite("cli_checks")  # its asserts report the values, as a test module's do
from text_data import TEXT_RECIPE, make_corpus  # noqa: E402

# Hypothesis keeps its example database (and failure patches) out of the working folder, in one
# folder that later runs reuse (it replays the examples that failed before).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "edgekd-hypothesis"))

TINY_RECIPE = """
[teacher]
model = "cnn"
args = { channels = [8, 16], hidden = 32 }
epochs = 4

[student]
model = "mlp"
args = { hidden = [32] }

[distill]
epochs = 4
temperature = 4.0
kd_weight = 0.7
ce_weight = 0.3
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's ~/.cache/edgekd."""
    os.environ["EDGEKD_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    from edgekd._progress import set_quiet

    set_quiet(True)


def _litter(folder: Path, before: set[str]) -> list[str]:
    return sorted(set(os.listdir(folder)) - before - {".pytest_cache"})


@pytest.fixture(autouse=True, scope="session")
def _working_folder_left_alone_by_the_session():
    """Shared fixtures (the trained runs) included: the suite leaves nothing in the working folder."""
    folder = Path.cwd()
    before = set(os.listdir(folder))
    yield
    new = _litter(folder, before)
    assert not new, f"the test session left files in the working folder {folder}: {new[:5]}"


@pytest.fixture(autouse=True)
def _working_folder_left_alone():
    """No test, and so no stage it drives, leaves files in the working folder: a user's current folder
    is not edgekd's (ONNX Runtime's failing symbolic shape inference, for one, dumps files there)."""
    folder = Path.cwd()
    before = set(os.listdir(folder))
    yield
    if Path.cwd() == folder:  # tests that chdir (monkeypatch) are checked in their own folder
        new = _litter(folder, before)
        assert not new, f"left in the working folder {folder}: {new[:5]}"


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory: pytest.TempPathFactory, tiny_recipe: Path) -> Path:
    """A run folder after distill + export of the tiny recipe (shared: read, never modify)."""
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export

    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    distill(tiny_recipe, run_dir)
    export(run_dir, "x86-cpu")
    return run_dir


@pytest.fixture(scope="session")
def android_run(tmp_path_factory: pytest.TempPathFactory, exported_run: Path) -> Path:
    """A copy of the tiny run exported for the android-arm64 target (ORT format, fixed batch)."""
    import shutil

    from edgekd.export.stage import export

    run_dir = tmp_path_factory.mktemp("android") / "tiny"
    shutil.copytree(exported_run, run_dir)
    export(run_dir, "android-arm64-nnapi")
    return run_dir


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return make_corpus(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, corpus) -> Path:
    """distill + export of the tiny text recipe for the x86-cpu-text target (shared: read, never modify)."""
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export

    csv_path, tokenizer = corpus
    folder = tmp_path_factory.mktemp("textrun")
    recipe = folder / "text.toml"
    recipe.write_text(TEXT_RECIPE.format(csv=csv_path, tokenizer=tokenizer))
    distill(recipe, folder / "run")
    export(folder / "run", "x86-cpu-text")
    return folder / "run"


@pytest.fixture
def export_off_by(monkeypatch: pytest.MonkeyPatch):
    """`export_off_by(delta)`: the export stage's parity checks see each PyTorch model with every
    logit moved by `delta` from the file it exported. A parity failure made by a known amount: fp32
    kernels may reproduce PyTorch exactly on one CPU and differ by 1e-6 on another, so a test must
    not wait for them to cross a tiny limit."""
    import torch

    import edgekd.export.stage as stage

    class Shifted(torch.nn.Module):
        def __init__(self, model: torch.nn.Module, delta: float) -> None:
            super().__init__()
            self.model, self.delta = model, delta

        def forward(self, *args, **kwargs):
            return self.model(*args, **kwargs) + self.delta

    def arm(delta: float) -> None:
        real = stage.check_parity
        monkeypatch.setattr(stage, "check_parity", lambda model, *args, **kwargs: real(Shifted(model, delta), *args, **kwargs))

    return arm


@pytest.fixture
def interrupt_at_validation(monkeypatch: pytest.MonkeyPatch):
    """`interrupt_at_validation(n)`: Ctrl-C arrives during the trainer's n-th validation pass (the
    end of epoch n); `monkeypatch.undo()` gives the trainer back its own."""
    from edgekd.distill import trainer

    def arm(call: int) -> None:
        real, calls = trainer.validate, {"n": 0}

        def stop(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == call:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(trainer, "validate", stop)

    return arm
