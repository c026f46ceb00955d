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


@pytest.mark.parametrize(
    "text,expected",
    [
        ('description = "x"\n[budgets]\nmax_sise_kb = 1\n', "[budgets] unknown key 'max_sise_kb' — did you mean 'max_size_kb'?"),
        ('description = "x"\n[budgets]\nmax_size_kb = -5\n', "[budgets] max_size_kb"),
        ('description = "x"\n[quantization]\nscheme = "int3"\n', "[quantization] scheme"),
        ("[budgets]\n", "missing required key 'description'"),
        ('description = "x"\n[runtime]\nexecution_mode = "parallel"\n', "needs inter_op_threads other than 1"),
    ],
)
def test_bad_target_files_name_the_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        load_target(str(path))
    assert expected in str(info.value) and str(path) in str(info.value)
