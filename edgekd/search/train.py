"""Training inside a search: successive halving over the frontier, then Optuna over the winner's
hyper-parameters. Every trial distils with the recipe's teachers, seed and batches; what differs
is the student (halving) or its temperature, weights and learning rate (trials).

Successive halving (Jamieson & Talwalkar 2016; Li et al.'s Hyperband 2018): every entrant trains
`first_epochs`, the best 1/eta on validation train again with eta times the epochs, until one is
left. Rounds restart from the initial weights so each round's schedule runs to its end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgekd._io import write_json
from edgekd._progress import say
from edgekd.data.splits import DataSplits
from edgekd.distill.trainer import TrainSettings
from edgekd.errors import RecipeError
from edgekd.search.space import Candidate
from edgekd.task import task

ROUNDS = "search.rounds.json"  # finished trainings of the halving, so an interrupted search resumes after the last


@dataclass(frozen=True)
class Trial:
    """One Optuna trial on the winner."""

    number: int
    params: dict[str, float]  # temperature, kd_weight, lr (those searched)
    value: float | None  # best validation metric (None: pruned before it finished, or failed)
    state: str  # "COMPLETE", "PRUNED", "FAIL"


def train_once(candidate: Candidate, data: DataSplits, teachers, settings: TrainSettings, seed: int, standardize_targets: bool,
               label: str, on_epoch: Callable[[int, float], None] | None = None) -> float:
    """Distil the candidate from its seeded initial weights; its best validation metric."""
    import torch

    from edgekd.distill.trainer import fit
    from edgekd.models.build import build_model, spec_for, start_pretrained

    torch.manual_seed(seed)
    model = build_model(spec_for(candidate.family, candidate.args, data, standardize_targets))
    start_pretrained(model)
    outcome = fit(model, data.x_train, data.y_train, data.x_val, data.y_val, settings, label=label, teachers=teachers,
                  x_unlabeled=data.x_unlabeled, on_epoch=on_epoch)
    return outcome.history[outcome.best_epoch - 1].val_metric


def halving(entrants: list[Candidate], train: Callable[[Candidate, int], float], first_epochs: int, eta: int, max_epochs: int,
            higher_is_better: bool, folder: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """The winner's key and each candidate's (epochs, best val) per round it trained in (a single
    entrant wins untrained). `train(candidate, epochs)` trains one; rounds
    already in `folder`'s record are not trained again. Ties keep the faster (earlier) entrant."""
    done = _read_rounds(folder)
    rounds: dict[str, list[tuple[int, float]]] = {c.key: [] for c in entrants}
    alive, epochs = list(entrants), min(first_epochs, max_epochs)
    while len(alive) > 1:
        for candidate in alive:
            record = f"{candidate.key}@{epochs}"
            if record not in done:
                done[record] = train(candidate, epochs)
                write_json(folder / ROUNDS, done)
            rounds[candidate.key].append((epochs, done[record]))
        keep = max(1, len(alive) // eta)
        ranked = sorted(range(len(alive)), key=lambda i: (-done[f"{alive[i].key}@{epochs}"] if higher_is_better else done[f"{alive[i].key}@{epochs}"], i))
        alive = [alive[i] for i in sorted(ranked[:keep])]
        say(f"search: round of {epochs} epochs: kept {', '.join(c.key for c in alive)}")
        epochs = min(epochs * eta, max_epochs)
    return alive[0].key, rounds


def _read_rounds(folder: Path) -> dict[str, float]:
    path = folder / ROUNDS
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    except (ValueError, AttributeError):
        return {}  # a damaged record: the rounds are trained again (same seeds, same figures)


def tune(winner: Candidate, data: DataSplits, teachers, base: TrainSettings, trials: int, epochs: int, seed: int,
         storage: str, study_name: str, standardize_targets: bool) -> tuple[dict[str, float], list[Trial]]:
    """Optuna's TPE sampler over the winner's temperature, kd/ce weights and learning rate, a median
    pruner stopping trials that trail at the same epoch. The recipe's own settings (as kd_weight and
    1 − kd_weight) are the first trial, so the result is never worse on validation than not tuning. Trials already in `storage`
    count (a resumed search, or other machines on the same study)."""
    optuna = _optuna()
    kind = task(data.task)
    if len(base.terms) != 1 or base.terms[0].method != kind.soft_method:
        raise RecipeError("[search] trials tune the single soft-target term; remove the [[distill.loss]] tables or set trials = 0")
    study = optuna.create_study(study_name=study_name, storage=_storage(optuna, storage), load_if_exists=True,
                                direction="maximize" if kind.primary.higher_is_better else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner(n_warmup_steps=1))
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if not study.trials:
        study.enqueue_trial(_recipe_point(base, kind.soft_probabilities))
    remaining = trials - len(study.get_trials(states=counted))
    if remaining > 0:
        objective = _objective(optuna, winner, data, teachers, base, epochs, seed, standardize_targets, kind)
        study.optimize(objective, n_trials=remaining, callbacks=[optuna.study.MaxTrialsCallback(trials, states=counted)])
    records = [Trial(t.number, dict(t.params), t.value, t.state.name) for t in study.trials]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return (dict(study.best_trial.params) if finished else {}), records


def _objective(optuna, winner: Candidate, data: DataSplits, teachers, base: TrainSettings, epochs: int, seed: int,
               standardize_targets: bool, kind):
    from edgekd.recipe import LossTerm

    def objective(trial) -> float:
        temperature = trial.suggest_float("temperature", 1.0, 8.0, log=True) if kind.soft_probabilities else None
        kd_weight = trial.suggest_float("kd_weight", 0.1, 0.95)
        lr = trial.suggest_float("lr", base.lr / 4, base.lr * 4, log=True)
        settings = replace(base, epochs=epochs, lr=lr, ce_weight=round(1 - kd_weight, 6), temperature=temperature or base.temperature,
                           terms=(LossTerm(method=kind.soft_method, weight=kd_weight, temperature=temperature),))

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return train_once(winner, data, teachers, settings, seed, standardize_targets, f"search trial {trial.number}", report)

    return objective


def _recipe_point(base: TrainSettings, with_temperature: bool) -> dict[str, float]:
    """The recipe's own hyper-parameters as a trial's parameters."""
    term = base.terms[0]
    point = {"kd_weight": min(max(term.weight, 0.1), 0.95), "lr": base.lr}
    if with_temperature:
        point["temperature"] = min(max(term.temperature or base.temperature, 1.0), 8.0)
    return point


def _storage(optuna, storage: str):
    """A database URL as it is; anything else is a journal file (shared filesystems work)."""
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(storage)))


def _optuna():
    try:
        import optuna
    except ImportError:
        raise RecipeError("[search] trials need Optuna: pip install optuna (or edgekd[search]); or set trials = 0") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
