"""Student search (issue 27): candidates, measurement on the target, limits, frontier, successive
halving, Optuna trials, and `edgekd run` with [search] carrying the winner through and confirming it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgekd.errors import RecipeError, SearchError
from edgekd.recipe import SearchConfig
from edgekd.search.measure import Measurement
from edgekd.search.select import Limits, frontier, spread
from edgekd.search.space import Candidate, candidates
from edgekd.search.train import halving
from edgekd.targets import load_target

SEARCH_RECIPE = """
[teacher]
model = "cnn"
args = { channels = [16, 32], hidden = 128 }
epochs = 3

[student]
model = "mlp"
args = { hidden = [32] }

[distill]
epochs = 4

[search]
space = { hidden = [[8], [16], [32], [64]] }
first_epochs = 1
timing_runs = 20
"""


def _m(params: int, latency: float, size: int = 1000) -> Measurement:
    return Measurement(params=params, macs=params, fp32_bytes=size * 4, deployed_bytes=size, scheme="static-qdq", latency_ms=latency,
                       p50_ms=latency, p90_ms=latency, fp32_latency_ms=latency, int8_pays=False, batch=1, sequence_length=None, seconds=0.0)


def test_candidates_are_the_grid_over_the_student_args_once_each():
    cfg = SearchConfig(space={"hidden": [[8], [16]], "dropout": [0.0, 0.1]}, candidates=[{"hidden": [8], "dropout": 0.0}, {"hidden": [99]}])
    pool = candidates(cfg, "mlp", {"hidden": [32], "dropout": 0.0})
    assert len(pool) == 5  # 4 grid points, the first explicit one a duplicate, one new
    assert {c.family for c in pool} == {"mlp"}
    assert len({c.key for c in pool}) == 5
    assert Candidate("mlp", {"hidden": [8]}).key == Candidate("mlp", {"hidden": [8]}).key
    with pytest.raises(RecipeError, match="max_candidates"):
        candidates(SearchConfig(space={"hidden": [[i] for i in range(1, 10)]}, max_candidates=4), "mlp", {})


def test_a_search_section_must_name_candidates():
    with pytest.raises(ValueError, match="names no candidates"):
        SearchConfig()
    with pytest.raises(ValueError, match="is empty"):
        SearchConfig(space={"hidden": []})


def test_frontier_keeps_what_nothing_beats_on_capacity_and_latency_fastest_first():
    measured = {"a": _m(100, 1.0), "b": _m(200, 2.0), "c": _m(150, 2.5), "d": _m(300, 3.0)}
    assert frontier(measured) == ["a", "b", "d"]  # c: b has more parameters and is faster
    deep = replace(_m(120, 2.5), macs=10_000)  # fewer parameters than b, but more multiply-accumulates: not beaten
    assert frontier({**measured, "deep": deep}) == ["a", "b", "deep", "d"]
    assert spread(["a", "b", "c", "d", "e"], 3) == ["a", "c", "e"]
    assert spread(["a", "b"], 5) == ["a", "b"]
    assert spread(["a", "b", "c"], 1) == ["c"]


def test_limits_keep_the_margin_and_say_why():
    limit = Limits(max_bytes=900.0, max_latency_ms=1.8, percentile=90, margin=0.1, size_rule="90% of max_size_kb")
    assert limit.over(_m(10, 1.0, size=800)) is None
    reason = limit.over(_m(10, 2.0, size=1000))
    assert "KiB" in reason and "p90" in reason
    assert limit.excess(_m(10, 0.9, size=1800)) == pytest.approx(2.0)


def test_halving_keeps_the_best_and_a_resumed_search_trains_nothing_again(tmp_path):
    entrants = [Candidate("mlp", {"hidden": [h]}) for h in (8, 16, 32, 64)]
    score = {c.key: s for c, s in zip(entrants, (0.5, 0.9, 0.7, 0.9))}
    calls = []

    def train(candidate, epochs):
        calls.append((candidate.key, epochs))
        return score[candidate.key] + epochs / 100

    winner, rounds = halving(entrants, train, first_epochs=1, eta=2, max_epochs=8, higher_is_better=True, folder=tmp_path)
    assert winner == entrants[1].key  # tie at 0.9 + epochs: the earlier (faster) entrant
    assert [e for e, _ in rounds[entrants[1].key]] == [1, 2]
    assert len(calls) == 6  # 4 at 1 epoch, 2 at 2 epochs
    calls.clear()
    again, _ = halving(entrants, train, first_epochs=1, eta=2, max_epochs=8, higher_is_better=True, folder=tmp_path)
    assert again == winner and calls == []
    lower, _ = halving(entrants, train, 1, 2, 8, higher_is_better=False, folder=tmp_path / "low")
    assert lower == entrants[0].key


def test_search_measures_trains_and_picks_a_winner_within_budget(tmp_path):
    from edgekd.recipe import load_recipe
    from edgekd.search.stage import search, searched_recipe

    (tmp_path / "s.toml").write_text(SEARCH_RECIPE + "trials = 2\n")
    recipe = load_recipe(tmp_path / "s.toml")
    result = search(recipe, "x86-cpu", tmp_path / "out")
    assert (tmp_path / "out" / "search.json").exists()
    saved = json.loads((tmp_path / "out" / "search.json").read_text())
    assert saved["winner"] == result.winner
    assert len(result.candidates) == 4
    for record in result.candidates:
        assert record.measurement is not None and record.measurement.params > 0 and record.measurement.latency_ms > 0
        assert (record.key == result.winner) == (record.dropped is None)
    params = sorted(r.measurement.params for r in result.candidates)
    assert params == sorted(set(params))  # wider hidden layers: more parameters, as built
    assert len(result.trials) == 2 and set(result.hyper) >= {"kd_weight", "lr"}
    chosen = searched_recipe(recipe, result)
    assert chosen.search is None and chosen.student.args == result.winner_args
    assert chosen.distill.kd_weight + chosen.distill.ce_weight == pytest.approx(1.0)
    with pytest.raises(Exception, match="--resume"):
        search(recipe, "x86-cpu", tmp_path / "out")
    again = search(recipe, "x86-cpu", tmp_path / "out", resume=True)  # measurements cached, rounds and trials recorded
    assert again.winner == result.winner and len(again.trials) == 2


def test_search_says_which_candidate_came_closest_when_none_fits(tmp_path):
    from edgekd.recipe import load_recipe
    from edgekd.search.stage import search

    (tmp_path / "s.toml").write_text(SEARCH_RECIPE.replace("[[8], [16], [32], [64]]", "[[16], [64]]"))
    target = load_target("x86-cpu")
    tight = replace(target, budgets=replace(target.budgets, max_size_kb=0.5))
    with pytest.raises(SearchError, match=r"closest, hidden=\[16\]"):
        search(load_recipe(tmp_path / "s.toml"), tight, tmp_path / "out")


@pytest.mark.slow
def test_run_with_search_ships_the_winner_and_confirms_its_prediction(tmp_path):
    from edgekd.pipeline import run

    (tmp_path / "s.toml").write_text(SEARCH_RECIPE)
    result = run(tmp_path / "s.toml", "x86-cpu", tmp_path / "run")
    assert result.search is not None
    saved = json.loads((tmp_path / "run" / "search" / "search.json").read_text())
    assert saved["confirmed"]
    recorded = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recorded["student"]["args"] == saved["winner_args"]


def test_search_command_refuses_what_it_cannot_do_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from cli_checks import one_line_error, quick_target
    from edgekd.cli import app

    (tmp_path / "plain.toml").write_text(SEARCH_RECIPE.split("[search]")[0])
    result = CliRunner().invoke(app, ["-q", "search", str(tmp_path / "plain.toml"), "--out", str(tmp_path / "a")])
    one_line_error(result, "no [search] section")
    (tmp_path / "s.toml").write_text(SEARCH_RECIPE.replace("[[8], [16], [32], [64]]", "[[16], [64]]"))
    target = quick_target(tmp_path / "t.toml", "max_size_kb = 0.5")
    result = CliRunner().invoke(app, ["-q", "search", str(tmp_path / "s.toml"), "--target", str(target), "--out", str(tmp_path / "b")])
    one_line_error(result, "no candidate fits", "closest, hidden=[16]")
