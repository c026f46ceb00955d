"""The candidate students of a search: the grid of [search] space and the explicit list, each once."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from edgekd.errors import RecipeError
from edgekd.recipe import SearchConfig


@dataclass(frozen=True)
class Candidate:
    family: str  # built-in family or "module:factory"
    args: dict[str, Any]  # every keyword argument: the [student] args with the candidate's over them

    @property
    def key(self) -> str:
        """Stable name of the candidate (what its measurements are cached and reported by)."""
        text = json.dumps([self.family, self.args], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self, base: dict[str, Any]) -> str:
        """The args that differ from `base` (the [student] args), for people."""
        changed = {k: v for k, v in self.args.items() if base.get(k) != v} or self.args
        return " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))


def candidates(cfg: SearchConfig, family: str, base_args: dict[str, Any]) -> list[Candidate]:
    """Every combination of `cfg.space` over `base_args`, then the explicit candidates; duplicates once."""
    names = sorted(cfg.space)
    grid = [dict(zip(names, values)) for values in itertools.product(*(cfg.space[n] for n in names))] if names else []
    found: dict[str, Candidate] = {}
    for args in [*grid, *cfg.candidates]:
        candidate = Candidate(cfg.family or family, {**base_args, **args})
        found.setdefault(candidate.key, candidate)
    if len(found) > cfg.max_candidates:
        raise RecipeError(f"[search] gives {len(found)} candidates, more than max_candidates = {cfg.max_candidates}: "
                          "narrow the space, or raise max_candidates (each candidate is exported, quantized and timed)")
    return list(found.values())
