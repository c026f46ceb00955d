"""The distillation methods: one entry each, read by the recipe validator, the objective and the docs.

An entry says what the method needs (the teachers' logits, named layers of both models, each
input's one true class), which tasks it applies to, and where its term of the objective lives: a
function `(TermInputs, LossTerm) -> Tensor | None` (None: the term does not apply to this batch,
e.g. a label-based term on unlabelled data). Adding a method is one entry here plus its function.
No torch here: the recipe is validated without it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # the recipe's `method = "..."`
    title: str  # what people call it
    reference: str  # the paper it implements
    uses_logits: bool  # learns from the teachers' soft targets (any teacher: PyTorch, ONNX, cached, ensemble)
    uses_layers: bool  # matches named intermediate layers (teacher_layer / student_layer): a PyTorch teacher only
    needs_one_class: bool  # uses each input's one true class: skipped on unlabelled data, refused with mixup
    adapter: bool  # a learned adapter maps the student's layer to the teacher's shape (trained, never exported)
    tasks: tuple[str, ...]  # the tasks it applies to
    term: str  # "module:function" computing its term of the objective (imported when training)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("kd", "knowledge distillation", "Hinton, Vinyals & Dean 2015", uses_logits=True, uses_layers=False,
               needs_one_class=False, adapter=False, tasks=("classification", "segmentation", "token-classification"), term="edgekd.distill.objective:kd_term"),
        Method("dkd", "decoupled knowledge distillation", "Zhao et al. 2022", uses_logits=True, uses_layers=False,
               needs_one_class=True, adapter=False, tasks=("classification", "segmentation", "token-classification"), term="edgekd.distill.objective:dkd_term"),
        Method("hint", "hint / feature distillation (FitNets)", "Romero et al. 2015", uses_logits=False, uses_layers=True,
               needs_one_class=False, adapter=True, tasks=("classification", "segmentation", "token-classification", "regression", "detection"), term="edgekd.distill.objective:hint_term"),
        Method("at", "attention transfer", "Zagoruyko & Komodakis 2017", uses_logits=False, uses_layers=True,
               needs_one_class=False, adapter=False, tasks=("classification", "segmentation", "token-classification", "regression", "detection"), term="edgekd.distill.objective:at_term"),
        Method("pkd", "Pearson-correlation feature distillation", "Cao et al. 2022", uses_logits=False, uses_layers=True,
               needs_one_class=False, adapter=True, tasks=("classification", "segmentation", "detection"), term="edgekd.distill.objective:pkd_term"),
        Method("cwd", "channel-wise distillation", "Shu et al. 2021", uses_logits=True, uses_layers=False,
               needs_one_class=False, adapter=False, tasks=("segmentation",), term="edgekd.distill.objective:cwd_term"),
        Method("mse", "output regression to the teachers (MSE)", "Ba & Caruana 2014", uses_logits=True, uses_layers=False,
               needs_one_class=False, adapter=False, tasks=("regression",), term="edgekd.distill.objective:mse_term"),
        Method("det-kd", "dense detection distillation (class scores at T, boxes where the teacher is confident)",
               "Chen et al. 2017", uses_logits=True, uses_layers=False, needs_one_class=False, adapter=False,
               tasks=("detection",), term="edgekd.distill.objective:detection_kd_term"),
    )
}


def method(name: str) -> Method:
    """The entry of `name`; an unknown name raises with the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown distillation method '{name}'; valid methods: {', '.join(METHODS)}") from None


def describe() -> str:
    """One line for help texts and the recipe reference: each method's name and title."""
    return ", ".join(f"{m.name} ({m.title})" for m in METHODS.values())


def markdown_table() -> str:
    """The methods as docs/reference/recipe.md's table shows them (a test keeps the two the same)."""
    yes = {True: "yes", False: "—"}
    rows = ["| method | what | paper | learns from | tasks | needs labels | learned adapter |", "|---|---|---|---|---|---|---|"]
    rows += [f"| `{m.name}` | {m.title} | {m.reference} | {'outputs' if m.uses_logits else 'named layers'} | {', '.join(m.tasks)} | "
             f"{yes[m.needs_one_class]} | {yes[m.adapter]} |" for m in METHODS.values()]
    return "\n".join(rows)
