import pytest

from edgekd.errors import TargetError
from edgekd.targets import Target, builtin_targets, load_target


@pytest.mark.parametrize("name", sorted(builtin_targets()))
def test_every_builtin_target_loads_and_says_why(name):
    target = load_target(name)
    assert isinstance(target, Target) and target.name == name and target.description
    assert target.runtime.providers
    assert target.quantization.why, "a preset says why it picks its scheme"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(TargetError) as info:
        load_target("x86cpu")
    message = str(info.value)
    assert "did you mean 'x86-cpu'" in message
    assert all(name in message for name in builtin_targets())


def test_user_target_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\n[budgets]\nmax_size_kb = 1\n')
    target = load_target(str(path))
    assert target.name == "mine" and target.budgets.max_size_kb == 1
    # A target that does not say otherwise ships the faster of int8 and fp32 within its size budgets;
    # one that must run int8 (an NPU) says if_slower_than_fp32 = "warn".
    assert target.quantization.if_slower_than_fp32 == "fastest"


@pytest.mark.parametrize(
    "text,expected",
    [
        ('description = "x"\n[budgets]\nmax_sise_kb = 1\n', "[budgets] unknown key 'max_sise_kb' — did you mean 'max_size_kb'?"),
        ('description = "x"\n[budgets]\nmax_size_kb = -5\n', "[budgets] max_size_kb"),
        ('description = "x"\n[quantization]\nscheme = "int3"\n', "[quantization] scheme"),
        ("[budgets]\n", "missing required key 'description'"),
        ('description = "x"\n[runtime]\nexecution_mode = "parallel"\n', "[runtime] execution_mode \"parallel\" needs inter_op_threads other than 1"),
        # Every field is range-checked at the door, with sanity caps that catch a slip of the keyboard.
        ('description = "x"\n[runtime]\nproviders = []\n', "[runtime] providers"),
        ('description = "x"\n[runtime]\nproviders = [""]\n', "[runtime] providers[0]"),
        ('description = "x"\n[runtime]\nproviders = ["CPUExecutonProvider"]\n', "did you mean 'CPUExecutionProvider'?"),
        ('description = "x"\n[runtime]\nproviders = ["CPUExecutionProvider", "CPUExecutionProvider"]\n', "listed twice"),
        ('description = "x"\n[runtime]\nort_platform = "arm"\n', 'ort_platform applies only to format = "ort"'),
        ('description = "x"\n[runtime]\nintra_op_threads = 100000\n', "[runtime] intra_op_threads"),
        ('description = "x"\n[export]\nparity_max_rel = 5.0\n', "[export] parity_max_rel"),
        ('description = "x"\n[export]\nfixed_batch = 0\n', "[export] fixed_batch"),
        ('description = "x"\n[bench]\nruns = 3000000000\n', "[bench] runs"),
        ('description = "x"\n[bench]\nmin_seconds = 1e9\n', "[bench] min_seconds"),
        ('description = "x"\n[bench]\nsweep_batches = [1, 8, 8]\n', "[bench] sweep_batches lists a value twice"),
        ('description = "x"\n[bench]\nsweep_lengths = [16, 2000000]\n', "[bench] sweep_lengths[1]"),
        ('description = "x"\n[bench]\nthroughput_batch = 1000000\n', "[bench] throughput_batch"),
        ('description = "x"\n[quantization]\ncalibration_samples = 0\n', "[quantization] calibration_samples"),
        ('description = "x"\n[quantization]\nweight_type = "uint8"\n', 'ONNX Runtime cannot quantize; use weight_type = "int8"'),
        ('name = ""\ndescription = "x"\n', "name"),
    ],
)
def test_bad_target_files_name_the_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        load_target(str(path))
    assert expected in str(info.value) and str(path) in str(info.value)
