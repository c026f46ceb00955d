"""The tasks edgekd distils, one entry each: every stage asks the task instead of assuming
"one integer label per sample, logits (N, C)".

An entry says what a label is and how it is checked, how many outputs the labels ask of a model,
how a validation split is drawn, the hard-label loss (and its name in the logs), the soft-target
method `kd_weight` means, the metrics (the first is the primary one, which picks the best epoch
and judges the budgets) and how two models' outputs are compared sample by sample (export parity,
the quantized file against the fp32 one). Adding a task is one entry here plus its pieces.

No torch here: `edgekd bench` and the recipe validator read the table without it; the hard-label
loss is named as "module:function" and imported only when training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgekd.detection import evaluate as _detection
from edgekd.detection import labels as _boxes
from edgekd.errors import DataError
from edgekd.inputs import take_rows
from edgekd.paired import PairedDrop, paired_drop, paired_error_rise, paired_pooled_drop

TaskName = Literal["classification", "segmentation", "token-classification", "regression", "detection"]
MAX_LABEL = 2**31 - 1  # a class index beyond this is a mistake (ids, hashes), never a class count
IGNORED = -1  # a label neither trained on nor scored: what a dense task's [data] ignore_index becomes when loaded


@dataclass(frozen=True)
class Metric:
    name: str  # the key in results' `metrics` objects and in budgets
    higher_is_better: bool
    percent: bool  # shown as a percentage (accuracy) or in the data's own units (rmse)
    label: str = ""  # its name in tables, when not `name` ("top-1" for accuracy)

    @property
    def heading(self) -> str:
        return self.label or self.name

    def show(self, value: float) -> str:
        return f"{value:.2%}" if self.percent else f"{value:.4g}"

    def gain(self, before: float, after: float) -> float:
        """How much better `after` is than `before` (positive: better), in the metric's units."""
        return after - before if self.higher_is_better else before - after


@dataclass(frozen=True)
class Task:
    name: str
    labels: str  # what one label is, for messages
    metrics: tuple[Metric, ...]  # the first is the primary one
    hard_loss: str  # "module:function": loss(student outputs, labels) -> scalar tensor
    hard_loss_name: str  # its name in the logs and the history ("ce", "mse")
    soft_method: str  # the method of the single soft-target term kd_weight weighs (the methods table's name)
    check_labels: Callable[[str, str, np.ndarray, tuple, int | None], np.ndarray]  # (source, split, y, x's shape, ignore_index) -> y, typed
    outputs_of: Callable[[str, np.ndarray], int]  # (source, training labels) -> model outputs they ask for
    check_split: Callable[[str, str, np.ndarray, int], None]  # (source, split, y, outputs): a val/test split fits
    split: Callable[[object, np.ndarray, float, int], tuple]  # (x, y, fraction, seed) -> (x_a, y_a, x_b, y_b)
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (outputs, labels) -> every metric
    check_outputs: Callable[[str, np.ndarray, np.ndarray], None]  # (model, outputs, labels): the outputs fit the labels, else DataError
    agreement: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (reference, other outputs) -> per sample, do they agree
    combine: Callable[[list[np.ndarray], list[float]], np.ndarray]  # several teachers' outputs -> the prediction they make together
    per_sample: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (outputs, labels) -> each sample's outcome (hit; squared error)
    summarise: Callable[[np.ndarray], float]  # outcomes -> the primary metric (mean hits; root of the mean squared error)
    paired: Callable[[np.ndarray, np.ndarray], PairedDrop]  # (first's outcomes, second's) -> how much worse the second is
    drop_unit: str  # what a PairedDrop's drop is: "points" (accuracy lost) or "relative" (RMSE rise)
    drop_budget: str  # the target's [budgets] key that limits the teacher → deployed drop
    paired_method: str  # how `paired` compares two models, for reports
    soft_probabilities: bool  # outputs are logits of class probabilities: a temperature and --sweep apply
    class_axis: int | None = None  # the class axis of dense outputs ((N, C, H, W): 1); None: one prediction per sample
    ignore_default: int | None = None  # [data] ignore_index when the recipe gives none: labels equal to it are not scored
    mixup: bool = True  # [data] mixup blends this task's labels (one class per input)
    models: tuple[tuple[str, dict], tuple[str, dict]] = (("cnn", {}), ("mlp", {}))  # the teacher and student a recipe gets when it names none
    output_rank: int = 2  # axes of a batch of outputs: (N, C) 2, (N, C, H, W) 4
    outputs_text: str = "{n} classes (labels 0..{last})"  # what the data asks of a model's outputs, for messages
    # a paired comparison's counts and test in words: (only_first, only_second, the test)
    paired_words: tuple[str, str, str] = ("right only with the teacher", "only without", "exact McNemar")
    # the primary metric per class from per-sample outcomes, and what the mean leaves out (segmentation: IoU; None: not per class)
    per_class: tuple[str, Callable[[np.ndarray], list[float | None]], str] | None = None
    outputs_axis: int = 1  # the axis of a batch of outputs that holds the classes (or targets), after `box_values`
    box_values: int = 0  # values before the classes on that axis (detection: a box, x1 y1 x2 y2)
    hard_loss_reads_model: bool = False  # the hard-label loss takes the student as `model` (detection: its positions)
    label_geometry: str = "none"  # how labels move when [data] augment shifts an image: "none", "mask" (per pixel), "boxes"
    # what an app runs on a batch of outputs before it can act ("module:function", numpy), and its name:
    # the bench times it with the model, and the latency budget holds the two together
    postprocess: tuple[str, str] | None = None

    def outputs_fit(self, shape: tuple[int, ...], outputs: int) -> bool:
        """Whether a batch of model outputs of `shape` has this task's layout with `outputs` classes (or targets)."""
        return len(shape) == self.output_rank and shape[self.class_axis if self.dense else self.outputs_axis] == outputs + self.box_values

    def wanted_outputs(self, outputs: int) -> str:
        return self.outputs_text.format(n=outputs, last=outputs - 1)

    @property
    def dense(self) -> bool:
        """One prediction per position (pixel, token), not per sample: losses and metrics run over positions."""
        return self.class_axis is not None

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    def primary_of(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return self.score(outputs, labels)[self.primary.name]

    def drop_between(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`, as a PairedDrop measures it (unpaired)."""
        return reference - value if self.drop_unit == "points" else value / max(reference, 1e-300) - 1

    def limit(self, reference: float, allowed: float) -> float:
        """The worst primary-metric value a drop budget of `allowed` lets through against `reference`."""
        return reference - allowed if self.drop_unit == "points" else reference * (1 + allowed)

    def drop_words(self) -> str:
        """The unit of a drop, for verdicts: points of the primary metric ("top-1", "mIoU"), or RMSE relative."""
        return self.primary.heading if self.drop_unit == "points" else f"{self.primary.name} rise, relative"

    def show_drop(self, drop: float) -> str:
        """A PairedDrop's drop for people: "1.20%" of accuracy (or of mIoU), or "+1.20% RMSE"."""
        return f"{drop:.2%}" if self.drop_unit == "points" else f"{drop:+.2%} RMSE"


# --- classification: one integer class index per sample, logits (N, C) -------------------------

def _label_text(value) -> str:
    """A label as a user would write it: 1099511627776, not 1.099511627776e+12."""
    return str(int(value)) if np.isfinite(value) and abs(value) < 1e15 else f"{float(value):.3g}"


def _class_labels(name: str, split: str, y: np.ndarray, x_shape: tuple, ignore_index: int | None = None) -> np.ndarray:
    samples = x_shape[0]
    if y.ndim != 1 or len(y) != samples:
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {samples} samples; expected ({samples},)")
    if not _whole_numbers(y):
        raise DataError(f"{name}: y_{split} must hold integer class indices (got dtype {y.dtype}); "
                        "for real-valued targets set task = \"regression\"")
    if len(y) and y.min() < 0:
        raise DataError(f"{name}: y_{split} has negative labels; labels must be class indices 0..C-1")
    if len(y) and y.max() > MAX_LABEL:  # before anything is sized by it (or a float label overflows int64)
        raise DataError(f"{name}: y_{split} holds the label {_label_text(y.max())}, but labels are class indices 0..C-1 "
                        "(at most 2^31 - 1); remap them to 0..C-1 (numpy: np.unique(y, return_inverse=True)[1])")
    return y.astype(np.int64)


def _whole_numbers(y: np.ndarray) -> bool:
    return not np.iscomplexobj(y) and (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and bool(np.all(y == np.round(y)))))


def _classes(name: str, y_train: np.ndarray) -> int:
    """The number of classes the labels make: 1 + the largest. One class, or labels that leave
    most of 0..max empty (20, 21, 22 would make a 23-class model), are refused with the remap."""
    present = np.unique(y_train[y_train != IGNORED])
    if len(present) == 0:
        raise DataError(f"{name}: every training label is the ignore_index; nothing is labelled")
    if len(present) < 2:
        raise DataError(f"{name}: every training label is {int(present[0])}; a classifier needs at least two classes")
    num_classes = int(present[-1]) + 1
    if len(present) < num_classes / 2:
        shown = ", ".join(str(int(c)) for c in present[:5]) + (", ..." if len(present) > 5 else "")
        raise DataError(f"{name}: the training labels ({shown}) use {len(present)} of the {num_classes} classes 0..{num_classes - 1} "
                        f"they imply; remap them to 0..{len(present) - 1} (numpy: np.unique(y, return_inverse=True)[1])")
    return num_classes


def _classes_fit(name: str, split: str, y: np.ndarray, num_classes: int) -> None:
    if len(y) and y.max() >= num_classes:
        raise DataError(f"{name}: {split} labels go up to {int(y.max())} but training labels only span "
                        f"0..{num_classes - 1}; every class must appear in the training split")


def _sklearn_split():
    """scikit-learn's splitter (the splits must be the ones training used): an extra of the device install."""
    try:
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("splitting this data needs scikit-learn: pip install 'edgekd[train]' (or scikit-learn alone); "
                        "or give data that holds its own test split (npz with x_test, y_test)") from None
    return train_test_split


def stratified_split(x, y: np.ndarray, fraction: float, seed: int) -> tuple:
    """Split off `fraction` of (x, y) with class proportions kept; returns (x_a, y_a, x_b, y_b)."""
    train_test_split = _sklearn_split()

    _, counts = np.unique(y, return_counts=True)  # not bincount: its array is as long as the largest label
    stratify = y if counts.min() >= 2 else None  # tiny classes cannot be stratified
    a, b = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed, stratify=stratify)
    return take_rows(x, a), take_rows(y, a), take_rows(x, b), take_rows(y, b)


def top1_hits(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample, whether the top-1 class is right: the one definition every stage scores with."""
    return np.asarray(logits).argmax(axis=-1) == np.asarray(y)


def top_k_share(logits: np.ndarray, y: np.ndarray, k: int = 5) -> float | None:
    """Share of samples whose true class is among the k largest logits (None: no more than k classes)."""
    logits = np.asarray(logits)
    if logits.shape[1] <= k:
        return None
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((best == np.asarray(y)[:, None]).any(axis=1).mean())


def _classification_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    top5 = top_k_share(logits, y)
    return {"accuracy": float(top1_hits(logits, y).mean()), **({"top5": top5} if top5 is not None else {})}


def _logits_fit(label: str, logits: np.ndarray, y: np.ndarray) -> None:
    if logits.ndim != 2:
        raise DataError(f"{label} outputs shape {logits.shape[1:]} per sample; accuracy needs (classes,) logits")
    if len(y) and np.asarray(y).max() >= logits.shape[1]:
        raise DataError(f"{label} has {logits.shape[1]} outputs but the labels go up to {int(np.asarray(y).max())}; use data with the model's classes")


def _mixture(logits: list[np.ndarray], weights: list[float], axis: int = -1) -> np.ndarray:
    """Σ_i w_i · softmax(z_i), Σ w_i = 1, over the class axis: the teachers' averaged probabilities (one teacher's own)."""
    total = float(sum(weights))
    mixed = 0.0
    for z, w in zip(logits, weights, strict=True):
        z = np.asarray(z, dtype=np.float64)
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        mixed = mixed + (w / total) * e / e.sum(axis=axis, keepdims=True)
    return np.asarray(mixed)


def _same_class(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.asarray(reference).argmax(-1) == np.asarray(other).argmax(-1)


# --- segmentation: one class index per pixel (N, H, W), logits (N, C, H, W) ---------------------

def _pixel_labels(name: str, split: str, y: np.ndarray, x_shape: tuple, ignore_index: int | None = 255) -> np.ndarray:
    """Class ids per pixel; pixels equal to `ignore_index` become IGNORED (neither trained on nor scored)."""
    samples = x_shape[0]
    if y.ndim != 3 or len(y) != samples:
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {samples} samples; "
                        f"expected ({samples}, height, width): one class id per pixel")
    if len(x_shape) != 4 or tuple(x_shape[-2:]) != y.shape[1:]:
        raise DataError(f"{name}: y_{split} masks are {y.shape[1]}×{y.shape[2]} but x_{split} images are "
                        f"{'×'.join(str(d) for d in x_shape[2:]) or 'not images'} ({x_shape[1:]} per sample); "
                        "give (N, channels, height, width) images with masks of the same height and width")
    return _dense_ids(name, split, y, ignore_index, "class ids per pixel", "unlabelled pixels")


def _dense_ids(name: str, split: str, y: np.ndarray, ignore_index: int | None, what: str, unscored: str) -> np.ndarray:
    """Integer ids per position (pixel, token) as int64, positions equal to `ignore_index` as IGNORED."""
    if not _whole_numbers(y):
        raise DataError(f"{name}: y_{split} must hold integer {what} (got dtype {y.dtype})")
    ignored = (y == ignore_index) if ignore_index is not None else np.zeros(y.shape, dtype=bool)
    scored = y[~ignored]
    if scored.size and scored.min() < 0:
        raise DataError(f"{name}: y_{split} has negative ids ({_label_text(scored.min())}); {what} are 0..C-1 and "
                        f"{unscored} take [data] ignore_index (now {ignore_index})")
    if scored.size and scored.max() > MAX_LABEL:
        raise DataError(f"{name}: y_{split} holds the id {_label_text(scored.max())}; {what} are 0..C-1 — remap them "
                        f"(numpy: np.unique(y, return_inverse=True)[1]) or set [data] ignore_index to the value of {unscored}")
    labels = y.astype(np.int64)
    labels[ignored] = IGNORED
    return labels


def resize_bilinear(outputs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) -> (N, C, H, W) as torch's F.interpolate(mode="bilinear", align_corners=False) does it,
    so that outputs coarser than the masks are scored as training compared them."""
    outputs = np.asarray(outputs)
    if tuple(outputs.shape[-2:]) == tuple(size):
        return outputs

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        low = np.minimum(source.astype(np.int64), n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), (source - low).astype(outputs.dtype)

    r0, r1, rw = axis(outputs.shape[-2], size[0])
    c0, c1, cw = axis(outputs.shape[-1], size[1])
    rows = outputs[..., r0, :] * (1 - rw)[:, None] + outputs[..., r1, :] * rw[:, None]
    return rows[..., c0] * (1 - cw) + rows[..., c1] * cw


def confusion_counts(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image and class: (intersection, predicted pixels, true pixels), shape (N, 3, C), over the
    scored pixels only. What a segmentation metric and a paired bootstrap over images are built from."""
    y = np.asarray(y)
    outputs = np.asarray(outputs)
    classes = outputs.shape[1]
    predicted = resize_bilinear(outputs, y.shape[1:]).argmax(axis=1)
    scored = y != IGNORED
    image = np.broadcast_to(np.arange(len(y))[:, None, None], y.shape)
    cells = np.bincount((image[scored] * classes + y[scored]) * classes + predicted[scored], minlength=len(y) * classes * classes)
    confusion = cells.reshape(len(y), classes, classes)  # [image, true, predicted]
    return np.stack([np.diagonal(confusion, axis1=1, axis2=2), confusion.sum(axis=1), confusion.sum(axis=2)], axis=1)


def iou_per_class(counts: np.ndarray) -> np.ndarray:
    """IoU of each class over all images of `counts` (N, 3, C); NaN for a class absent from both
    the predictions and the truth (no union: it says nothing, so mIoU leaves it out)."""
    intersection, predicted, true = np.asarray(counts).sum(axis=0)
    union = predicted + true - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def mean_iou(counts: np.ndarray) -> float:
    """The mean IoU over the classes present in the predictions or the truth (1.0 if none is)."""
    iou = iou_per_class(counts)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 1.0


def paired_iou_drop(first_counts: np.ndarray, second_counts: np.ndarray, resamples: int = 2000, seed: int = 0) -> PairedDrop:
    """mIoU points the second model loses against the first on the same images (paired bootstrap, permutation p)."""
    return paired_pooled_drop(first_counts, second_counts, mean_iou, resamples, seed)


def _segmentation_scores(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    counts = confusion_counts(outputs, y)
    intersection, _, true = counts.sum(axis=0)
    return {"miou": mean_iou(counts), "pixel_accuracy": float(intersection.sum() / max(int(true.sum()), 1))}


def _maps_fit(label: str, outputs: np.ndarray, y: np.ndarray) -> None:
    if outputs.ndim != 4:
        raise DataError(f"{label} outputs shape {outputs.shape[1:]} per sample; segmentation needs (classes, height, width) logits")
    scored = np.asarray(y)[np.asarray(y) != IGNORED]
    if scored.size and scored.max() >= outputs.shape[1]:
        raise DataError(f"{label} has {outputs.shape[1]} output channels but the masks hold class ids up to {int(scored.max())}; "
                        "use data with the model's classes (or set [data] ignore_index to the value of unlabelled pixels)")


def _same_pixel_class(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.asarray(reference).argmax(1) == np.asarray(other).argmax(1)



# --- token classification: one IOB2 tag id per token (N, S), logits (N, S, C) --------------------
#
# Tag ids follow one fixed order, so that entities can be read from ids alone (no tag names needed
# in the scorer, the bench or a device): 0 = O, 2k + 1 = B-<type k>, 2k + 2 = I-<type k>. The text
# and CoNLL sources build that order from the tag names (types sorted); an npz must use it too.

def tag_order(types: list[str]) -> tuple[str, ...]:
    """The tag names in edgekd's id order: O, then B- and I- of each type."""
    return ("O", *(f"{prefix}-{t}" for t in types for prefix in ("B", "I")))


def _token_labels(name: str, split: str, y: np.ndarray, x_shape: tuple, ignore_index: int | None = -100) -> np.ndarray:
    """Tag ids per token, aligned with the input tokens; tokens equal to `ignore_index` (special
    tokens, padding, a word's later sub-tokens) become IGNORED."""
    samples = x_shape[0]
    if y.ndim != 2 or len(y) != samples:
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {samples} samples; "
                        f"expected ({samples}, sequence): one tag id per token")
    if len(x_shape) != 2 or x_shape[1] != y.shape[1]:
        raise DataError(f"{name}: y_{split} has {y.shape[1]} tags per sample but the inputs have {x_shape[1:]} per sample; "
                        "give one tag id per input token (ignored tokens: [data] ignore_index)")
    return _dense_ids(name, split, y, ignore_index, "tag ids per token", "ignored tokens")


def _tag_count(name: str, y_train: np.ndarray) -> int:
    """1 + 2 · entity types: the tags the labels imply in edgekd's order (an I- tag's B- too)."""
    scored = y_train[y_train != IGNORED]
    if scored.size == 0:
        raise DataError(f"{name}: every training token is ignored; nothing is labelled")
    if scored.max() == 0:
        raise DataError(f"{name}: every training token is tagged O; a tagger needs entities to learn")
    return 2 * ((int(scored.max()) + 1) // 2) + 1


def entity_spans(tags: np.ndarray) -> set[tuple[int, int, int]]:
    """(start, end, type) of each entity in one sentence's tag ids, as conlleval and seqeval's
    default mode read IOB2: B starts an entity, I continues one of its type, and an I after O or
    after another type starts a new entity (a tagger's slip, counted as it is read)."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate([*np.asarray(tags).tolist(), 0]):
        inside = tag > 0 and tag % 2 == 0  # I-
        tag_kind = (tag - 1) // 2 if tag > 0 else None
        if start is not None and not (inside and tag_kind == kind):
            spans.add((start, position, kind))
            start, kind = None, None
        if tag > 0 and start is None:
            start, kind = position, tag_kind
    return spans


def entity_counts(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sentence: (entities found exactly, entities predicted, true entities, tokens right,
    tokens scored), shape (N, 5), over the scored tokens (a word's first sub-token) in order."""
    y = np.asarray(y)
    predicted = np.asarray(outputs).argmax(axis=-1)
    if predicted.shape[1] < y.shape[1]:
        predicted = np.pad(predicted, ((0, 0), (0, y.shape[1] - predicted.shape[1])))
    predicted = predicted[:, : y.shape[1]]
    counts = np.zeros((len(y), 5), dtype=np.int64)
    for i in range(len(y)):
        scored = y[i] != IGNORED
        truth_tags, guess_tags = y[i][scored], predicted[i][scored]
        truth, guess = entity_spans(truth_tags), entity_spans(guess_tags)
        counts[i] = (len(truth & guess), len(guess), len(truth), int((truth_tags == guess_tags).sum()), int(scored.sum()))
    return counts


def entity_f1(counts: np.ndarray) -> float:
    """Micro-averaged entity F1 (CoNLL, seqeval): 2·found / (predicted + true), pooled over sentences
    (1.0 when neither has an entity)."""
    found, predicted, true = np.asarray(counts)[:, :3].sum(axis=0)
    return float(2 * found / (predicted + true)) if predicted + true else 1.0


def _token_scores(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    counts = entity_counts(outputs, y)
    found, predicted, true, right, scored = counts.sum(axis=0)
    return {"f1": entity_f1(counts), "precision": float(found / predicted) if predicted else 1.0,
            "recall": float(found / true) if true else 1.0, "token_accuracy": float(right / max(int(scored), 1))}


def _token_logits_fit(label: str, outputs: np.ndarray, y: np.ndarray) -> None:
    if outputs.ndim != 3:
        raise DataError(f"{label} outputs shape {outputs.shape[1:]} per sample; token classification needs (sequence, tags) logits")
    if outputs.shape[1] < np.asarray(y).shape[1] and (np.asarray(y)[:, outputs.shape[1]:] != IGNORED).any():  # beyond: padding
        raise DataError(f"{label} outputs {outputs.shape[1]} positions per sample but the labels have {np.asarray(y).shape[1]} tokens; "
                        "the model must answer every input token")
    scored = np.asarray(y)[np.asarray(y) != IGNORED]
    if scored.size and scored.max() >= outputs.shape[2]:
        raise DataError(f"{label} has {outputs.shape[2]} outputs per token but the labels hold tag ids up to {int(scored.max())}; "
                        "use data with the model's tags")


def _same_tag(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.asarray(reference).argmax(-1) == np.asarray(other).argmax(-1)


# --- regression: one or more real-valued targets per sample, outputs (N, k) --------------------

def _targets(name: str, split: str, y: np.ndarray, x_shape: tuple, ignore_index: int | None = None) -> np.ndarray:
    samples = x_shape[0]
    if y.ndim not in (1, 2) or len(y) != samples:
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {samples} samples; "
                        f"expected ({samples},) or ({samples}, targets)")
    if np.iscomplexobj(y) or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise DataError(f"{name}: y_{split} has dtype {y.dtype}; regression targets must be real numbers")
    if not np.isfinite(y).all():
        raise DataError(f"{name}: y_{split} holds NaN or inf targets; drop or impute those samples first")
    return y.reshape(len(y), -1).astype(np.float32)


def _target_count(name: str, y_train: np.ndarray) -> int:
    if len(y_train) > 1 and np.all(y_train.std(axis=0) == 0):
        raise DataError(f"{name}: every training target has one value; a regressor needs targets that vary")
    return int(y_train.shape[1])


def _targets_fit(name: str, split: str, y: np.ndarray, targets: int) -> None:
    if y.shape[1] != targets:
        raise DataError(f"{name}: y_{split} has {y.shape[1]} targets per sample but y_train has {targets}; they must match")


def _values_fit(label: str, outputs: np.ndarray, y: np.ndarray) -> None:
    if outputs.reshape(len(outputs), -1).shape[1] != np.asarray(y).reshape(len(y), -1).shape[1]:
        raise DataError(f"{label} outputs shape {outputs.shape[1:]} per sample but the targets have {np.asarray(y).shape[1:]}; "
                        "use data with the model's targets")


def random_split(x, y: np.ndarray, fraction: float, seed: int) -> tuple:
    """Split off `fraction` of (x, y) at random; returns (x_a, y_a, x_b, y_b)."""
    train_test_split = _sklearn_split()

    a, b = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed)
    return take_rows(x, a), take_rows(y, a), take_rows(x, b), take_rows(y, b)


def squared_errors(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample, the mean squared error over its targets: what a paired comparison pairs."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(y), -1)
    return ((outputs - np.asarray(y, dtype=np.float64).reshape(len(y), -1)) ** 2).mean(axis=1)


def _regression_scores(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over every target of every sample; R² per target, then averaged (scikit-learn's
    'uniform_average'); a target constant on these samples scores R² 0 (no variance to explain)."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(y), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    error = outputs - y
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(total > 0, 1 - (error**2).sum(axis=0) / np.where(total > 0, total, 1), 0.0)
    return {"rmse": float(np.sqrt((error**2).mean())), "mae": float(np.abs(error).mean()), "r2": float(r2.mean())}


def _weighted_mean(outputs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Σ_i w_i · outputs_i, Σ w_i = 1: what several regressors predict together."""
    total = float(sum(weights))
    return np.asarray(sum((w / total) * np.asarray(o, dtype=np.float64) for o, w in zip(outputs, weights, strict=True)))


def _close_values(reference: np.ndarray, other: np.ndarray, share: float = 0.01) -> np.ndarray:
    """Per sample, whether every output is within 1% of the reference outputs' range of the reference."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    other = np.asarray(other, dtype=np.float64).reshape(len(reference), -1)
    scale = max(float(np.abs(reference).max(initial=0.0)), 1e-12)
    return (np.abs(reference - other) <= share * scale).all(axis=1)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("classification", "one integer class index per sample", (Metric("accuracy", True, True, "top-1"), Metric("top5", True, True, "top-5")),
             hard_loss="edgekd.distill.losses:hard_label_loss", hard_loss_name="ce", soft_method="kd",
             check_labels=_class_labels, outputs_of=_classes, check_split=_classes_fit, split=stratified_split,
             score=_classification_scores, check_outputs=_logits_fit, agreement=_same_class, combine=_mixture,
             per_sample=top1_hits, summarise=lambda hits: float(np.mean(hits)), paired=paired_drop, drop_unit="points",
             drop_budget="max_accuracy_drop", soft_probabilities=True,
             paired_method="Drops are top-1 points lost; 95% intervals are Agresti–Min intervals for paired proportions, "
                           "p-values exact McNemar tests on the samples only one model gets right."),
        Task("segmentation", "one integer class id per pixel", (Metric("miou", True, True, "mIoU"), Metric("pixel_accuracy", True, True, "pixel acc.")),
             hard_loss="edgekd.distill.losses:hard_label_loss", hard_loss_name="ce", soft_method="kd",
             check_labels=_pixel_labels, outputs_of=_classes, check_split=_classes_fit, split=random_split,
             score=_segmentation_scores, check_outputs=_maps_fit, agreement=_same_pixel_class,
             combine=lambda logits, weights: _mixture(logits, weights, axis=1),
             per_sample=confusion_counts, summarise=mean_iou, paired=paired_iou_drop, drop_unit="points",
             drop_budget="max_miou_drop", soft_probabilities=True, class_axis=1, ignore_default=255, mixup=False, label_geometry="mask",
             models=(("unet", {"widths": [32, 64, 128]}), ("unet", {"widths": [8, 16, 32]})),
             output_rank=4, outputs_text="(classes, height, width) logits of {n} classes (class ids 0..{last})",
             paired_words=("segmented better with the teacher", "without", "permutation test"),
             per_class=("IoU", lambda counts: [None if np.isnan(v) else float(v) for v in iou_per_class(counts)],
                        "the mean over the classes present in the predictions or the truth; — marks a class absent from both"),
             paired_method="Drops are mIoU points lost; 95% intervals are paired bootstraps over the images (both models' "
                           "pixel counts of an image drawn together, mIoU recomputed per resample), p-values paired permutation "
                           "tests (each image's two results swapped at random)."),
        Task("token-classification", "one IOB2 tag id per token",
             (Metric("f1", True, True, "entity F1"), Metric("token_accuracy", True, True, "token acc."), Metric("precision", True, True),
              Metric("recall", True, True)),
             hard_loss="edgekd.distill.losses:hard_label_loss", hard_loss_name="ce", soft_method="kd",
             check_labels=_token_labels, outputs_of=_tag_count, check_split=_classes_fit, split=random_split,
             score=_token_scores, check_outputs=_token_logits_fit, agreement=_same_tag, combine=_mixture,
             per_sample=entity_counts, summarise=entity_f1, paired=lambda a, b: paired_pooled_drop(a, b, entity_f1), drop_unit="points",
             drop_budget="max_f1_drop", soft_probabilities=True, class_axis=-1, ignore_default=-100, mixup=False,
             models=(("transformer", {"layers": 4, "hidden": 256, "heads": 4, "intermediate": 1024, "pooling": "none"}),
                     ("transformer", {"layers": 2, "hidden": 64, "heads": 2, "intermediate": 256, "pooling": "none"})),
             output_rank=3, outputs_text="(sequence, tags) logits of {n} tags (ids 0..{last}: O, then B-/I- per entity type)",
             paired_words=("tagged better with the teacher", "without", "permutation test"),
             paired_method="Drops are entity-F1 points lost (micro F1 over exact IOB2 spans, as CoNLL and seqeval score them); "
                           "95% intervals are paired bootstraps over the sentences (both models' entity counts of a sentence drawn "
                           "together, F1 recomputed per resample), p-values paired permutation tests."),
        Task("regression", "one or more real-valued targets per sample",
             (Metric("rmse", False, False), Metric("mae", False, False), Metric("r2", True, False)),
             hard_loss="edgekd.distill.losses:mse_loss", hard_loss_name="mse", soft_method="mse",
             check_labels=_targets, outputs_of=_target_count, check_split=_targets_fit, split=random_split,
             score=_regression_scores, check_outputs=_values_fit, agreement=_close_values, combine=_weighted_mean,
             per_sample=squared_errors, summarise=lambda errors: float(np.sqrt(np.mean(errors))), paired=paired_error_rise,
             drop_unit="relative", drop_budget="max_rmse_rise", soft_probabilities=False, mixup=False,
             outputs_text="{n} regression target(s) per sample",
             paired_words=("predicted more closely with the teacher", "without", "sign-flip test"),
             paired_method="Drops are relative RMSE rises (0.01 = 1% higher); 95% intervals are paired bootstraps over the "
                           "samples, p-values paired sign-flip tests of the squared errors."),
        Task("detection", "boxes per image: rows [class, x1, y1, x2, y2] in pixels, padded with class -1",
             (Metric("map", True, True, "mAP"), Metric("map50", True, True, "mAP50")),
             hard_loss="edgekd.detection.loss:detection_loss", hard_loss_name="det", soft_method="det-kd",
             check_labels=_boxes.check_box_labels, outputs_of=_boxes.box_classes, check_split=_boxes.classes_fit, split=random_split,
             score=_detection.scores, check_outputs=_boxes.outputs_fit, agreement=_boxes.same_detections, combine=_boxes.combine,
             per_sample=_detection.image_records, summarise=_detection.mean_ap,
             paired=lambda a, b: paired_pooled_drop(a, b, _detection.mean_ap), drop_unit="points", drop_budget="max_map_drop",
             soft_probabilities=True, mixup=False, outputs_axis=-1, box_values=4, hard_loss_reads_model=True, label_geometry="boxes",
             postprocess=("edgekd.detection.boxes:decode_batch", "decode + NMS"),
             models=(("detector", {"widths": [32, 64, 128], "neck": 64}), ("detector", {"widths": [8, 16, 32], "neck": 16})),
             output_rank=3, outputs_text="(positions, 4 + {n}) outputs: a box x1 y1 x2 y2 in pixels, then {n} class logits",
             paired_words=("detected better with the teacher", "without", "permutation test"),
             per_class=("AP", _detection.per_class_ap, "COCO's mean over the classes with true boxes; — marks a class without any"),
             paired_method="Drops are COCO mAP@[.5:.95] points lost; 95% intervals are paired bootstraps over the images (each "
                           "image's matched detections under both models drawn together, mAP recomputed per resample), p-values "
                           "paired permutation tests."),
    )
}


def task(name: str) -> Task:
    """The entry of `name`; an unknown name raises with the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}") from None


def metric_named(name: str) -> Metric:
    """The metric of that name in any task (how results written by any task are shown)."""
    return next(m for t in TASKS.values() for m in t.metrics if m.name == name)


def task_for(name: str | None, y) -> Task:
    """The entry of `name`, else of the task the labels `y` make unambiguous (no labels: classification)."""
    return task(name or (infer_task(y) if y is not None else "classification"))


def infer_task(y_train) -> str:
    """The task labels make unambiguous: whole numbers in one column are class indices, whole
    numbers per pixel (N, H, W) class ids of a segmentation, whole numbers per token with -100 for
    ignored tokens (N, S) tags, rows of five per image with fractions or class -1 padding (N, M, 5)
    boxes; anything else numeric (fractions, several columns) is regression."""
    y = np.asarray(y_train)
    if y.ndim == 1 and _whole_numbers(y):
        return "classification"
    if y.ndim == 3 and y.shape[2] == 5 and (not _whole_numbers(y) or (y[..., 0] == -1).any()):  # boxes, padded with class -1
        return "detection"
    if y.ndim == 3 and _whole_numbers(y):
        return "segmentation"
    if y.ndim == 2 and _whole_numbers(y) and len(y) and ((y == -100) | (y == IGNORED)).any():  # ignored tokens: a tagger's labels
        return "token-classification"
    if y.ndim in (1, 2) and np.issubdtype(y.dtype, np.floating):
        return "regression"
    return "classification"  # its label check names what is wrong
