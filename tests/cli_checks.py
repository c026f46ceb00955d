"""What every user error at the command line must look like, checked in one place."""

from __future__ import annotations


def one_line_error(result, *fragments: str) -> str:
    """Exit 2, one line on stderr starting "error: " that holds every fragment, no traceback and no
    "internal error" (exit 3): the contract of a bad input. Returns the line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def quick_target(path, budgets: str):
    """A target file for end-to-end tests: the CPU provider, a short bench, int8 deployed even where
    this CPU runs it slower than fp32 (the int8 path is what these tests check), and the given [budgets] lines."""
    path.write_text('name = "test"\ndescription = "test"\n[runtime]\nproviders = ["CPUExecutionProvider"]\n'
                    '[quantization]\nif_slower_than_fp32 = "warn"\n'
                    f'[bench]\nruns = 20\nwarmup_runs = 2\n[budgets]\n{budgets}\n')
    return path


def run_folder(folder, recipe: str, budgets: str, name: str = "recipe.toml"):
    """`edgekd run` of `recipe` (text of a TOML file in `folder`) on a quick_target with `budgets`;
    it must exit 0. Returns `folder` (the run is in folder/run)."""
    from typer.testing import CliRunner

    from edgekd.cli import app

    (folder / name).write_text(recipe)
    target = quick_target(folder / "target.toml", budgets)
    result = CliRunner().invoke(app, ["-q", "run", str(folder / name), "--target", str(target), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder
