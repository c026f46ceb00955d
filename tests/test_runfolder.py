"""Run folders: typed results read back, schema-version checked, hash-checked."""

import json
from pathlib import Path
from dataclasses import dataclass

import pytest

from edgekd import runfolder
from edgekd._io import write_json
from edgekd.errors import RunFolderError


@dataclass(frozen=True)
class Result:
    figure: float
    schema_version: int = 2


def _folder(tmp_path, data):
    write_json(tmp_path / "stage.json", data)
    runfolder.record(tmp_path, "stage", ["stage.json"])
    return tmp_path


def test_a_result_reads_back_typed(tmp_path):
    assert runfolder.read_result(_folder(tmp_path, Result(0.5)), "stage.json", Result, "test") == Result(0.5)


@pytest.mark.parametrize("version, fragment", [(3, "schema_version 3, but this edgekd reads versions up to 2"),
                                               (None, "schema_version None"), ("2", "schema_version '2'")])
def test_a_result_from_a_newer_or_unknown_schema_is_refused(tmp_path, version, fragment):
    folder = _folder(tmp_path, {"figure": 0.5, "schema_version": version})
    with pytest.raises(RunFolderError, match=fragment.replace("(", r"\(")):
        runfolder.read_result(folder, "stage.json", Result, "test")


def test_an_older_schema_that_still_validates_is_read(tmp_path):
    assert runfolder.read_result(_folder(tmp_path, {"figure": 0.5, "schema_version": 1}), "stage.json", Result, "test").figure == 0.5


def test_a_result_with_a_wrong_field_or_changed_bytes_is_refused(tmp_path):
    folder = _folder(tmp_path, {"figure": "high", "schema_version": 2})
    with pytest.raises(RunFolderError, match="not a Result, the run folder is damaged"):
        runfolder.read_result(folder, "stage.json", Result, "test")
    (folder / "stage.json").write_text(json.dumps({"figure": 1.0, "schema_version": 2}))
    with pytest.raises(RunFolderError, match="changed since the stage stage wrote it"):
        runfolder.read_result(folder, "stage.json", Result, "test")


def test_an_older_qad_result_is_read_through_its_upgrade(tmp_path):
    """qad.json version 1 named a variant's phase `role`; read back, the role is the enum and the
    phase is kept, and the shipped file's role becomes the result's deployed_role."""
    from edgekd.qad.result import QadResult
    from edgekd.roles import Role

    drop = {"drop": 0.0, "interval": [0.0, 0.0], "p_value": 1.0, "only_first": 0, "only_second": 0, "images": 10}
    variants = [{"role": phase, "name": phase, "file": file, "val_accuracy": 0.9, "test_accuracy": 0.9, "drop_vs_fp32": drop, "bytes": 1}
                for phase, file in (("post-training", ""), ("qat", "student.int8-qat.onnx"), ("qad", "student.int8-qad.onnx"))]
    old = {"run_dir": "r", "target": "x86-cpu", "settings": {}, "fp32_val_accuracy": 0.9, "fp32_test_accuracy": 0.9,
           "variants": variants, "seconds": 1.0, "deployed": "student.int8-qad.onnx", "schema_version": 1}
    result = runfolder.read_result(_folder(tmp_path, old), "stage.json", QadResult, "test")
    assert [(v.role, v.phase) for v in result.variants] == [(Role.ptq, "post-training"), (Role.qat, "qat"), (Role.qad, "qad")]
    assert result.deployed_role is Role.qad


def test_an_older_distill_result_is_read_through_its_upgrade(tmp_path):
    """distill.json version 2 kept val_accuracy per epoch and McNemar's counts alone for kd_gain."""
    from edgekd.distill.result import DistillResult

    scores = {"val": 0.9, "test": 0.9}
    phase = {"best_epoch": 1, "best": scores, "last": scores}
    summary = {"spec": None, "parameters": 1, "checkpoint": None, "source": "trained"}
    old = {"run_dir": "r", "data": "digits", "split_sizes": {"test": 360}, "teachers": [summary], "student": summary,
           "teacher_scores": scores, "scratch": phase, "distilled": phase, "kd_gain": 0.01, "gap_closed": None,
           "objective": {}, "teacher_cache": "", "settings": {}, "schema_version": 2,
           "kd_gain_test": {"only_first": 5, "only_second": 1, "p_value": 0.2},
           "history": {"distilled": [{"epoch": 1, "loss": 1.0, "terms": {}, "val_accuracy": 0.9, "lr": 0.1, "seconds": 1.0}]}}
    result = runfolder.read_result(_folder(tmp_path, old), "stage.json", DistillResult, "test")
    assert result.history["distilled"][0].val_metric == 0.9 and result.task == "classification"
    assert (result.kd_gain_test.only_first, result.kd_gain_test.drop, result.kd_gain_test.images) == (5, 0.01, 360)


def test_a_run_folder_moved_elsewhere_still_finds_every_file_its_json_names(exported_run, tmp_path, monkeypatch):
    """Stages given a path relative to the working folder write paths relative to the run folder
    (bench.json, export.json, qad.json, distill.json): a build script that reads them from anywhere
    after the folder moved finds every file."""
    import shutil

    from edgekd.export.stage import export
    from edgekd.folders.bench import bench
    from edgekd.qad.stage import quantization_aware
    from edgekd._io import PATH_FIELDS

    shutil.copytree(exported_run, tmp_path / "work" / "run")
    monkeypatch.chdir(tmp_path / "work")
    export(Path("run"), "x86-cpu")
    quantization_aware(Path("run"), "x86-cpu", epochs=1, baseline=False)
    bench(Path("run"), memory=False)
    moved = shutil.move(tmp_path / "work" / "run", tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)

    def paths(value, field=""):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from paths(item, key)
        elif isinstance(value, list):
            for item in value:
                yield from paths(item, field)
        elif field in PATH_FIELDS and isinstance(value, str) and value:
            yield value

    found = {}
    for name in ("distill.json", "export.json", "qad.json", "bench.json"):
        found[name] = list(paths(json.loads((Path(moved) / name).read_text())))
        for value in found[name]:
            assert not Path(value).is_absolute(), f"{name}: {value} (the run's own files are named relative to it)"
            assert (Path(moved) / value).exists(), f"{name}: {value} is not in the moved folder"
    assert {"teacher.onnx", "student.sim.onnx", "student.int8.onnx", "."} <= set(found["export.json"]) | set(found["bench.json"])
