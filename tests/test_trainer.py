"""The training loop: resume gives identical weights; a NaN loss stops with the checkpoint kept."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data import load_data
from edgekd.distill import trainer
from edgekd.distill.trainer import TrainSettings, fit
from edgekd.errors import TrainingError
from edgekd.models import ModelSpec, build_model

SPEC = ModelSpec("mlp", {"hidden": [16], "dropout": 0.2}, (1, 8, 8), 10)


def _model():
    torch.manual_seed(0)
    return build_model(SPEC)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, interrupt_at_validation):
    data = load_data("digits")
    settings = TrainSettings(epochs=5, batch_size=64, lr=3e-3, seed=1)
    args = (data.x_train, data.y_train, data.x_val, data.y_val, settings)

    straight = _model()
    fit(straight, *args, label="straight")

    interrupted = _model()
    interrupt_at_validation(4)  # three epochs checkpointed, Ctrl-C in the fourth's validation
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, *args, label="interrupted", checkpoint=tmp_path / "ck.pt")
    monkeypatch.undo()

    resumed = _model()  # a fresh process would start from new weights; resume must restore them
    history = fit(resumed, *args, label="resumed", checkpoint=tmp_path / "ck.pt", resume=True).history
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_with_other_settings_is_refused(tmp_path):
    data = load_data("digits")
    fit(_model(), data.x_train, data.y_train, data.x_val, data.y_val, TrainSettings(1, 64, 1e-3, 0), "a", checkpoint=tmp_path / "ck.pt")
    with pytest.raises(TrainingError, match="different settings"):
        fit(_model(), data.x_train, data.y_train, data.x_val, data.y_val, TrainSettings(2, 64, 1e-3, 0), "b", checkpoint=tmp_path / "ck.pt", resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = load_data("digits")
    x = np.asarray(data.x_train).copy()
    x[::2] = 3e38  # overflows to inf inside the network
    settings = TrainSettings(1, 64, 1e-3, 0)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 1"):
        fit(_model(), x, data.y_train, data.x_val, data.y_val, settings, "diverging", checkpoint=tmp_path / "ck.pt")
    assert not (tmp_path / "ck.pt").exists()


def test_training_learns_digits():
    data = load_data("digits")
    model = _model()
    history = fit(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainSettings(8, 64, 3e-3, 0), "learn").history
    assert history[-1].val_metric > 0.75  # chance is 0.10
    assert history[-1].loss < history[0].loss
    assert np.isfinite([r.loss for r in history]).all()


def test_augment_shifts_each_image_on_its_own_within_an_eighth():
    torch.manual_seed(0)
    images = torch.arange(1, 1 + 16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16).repeat(64, 2, 1, 1)
    shifted = trainer._augment(images, True)
    assert shifted.shape == images.shape
    found = set()
    for out in shifted:
        # Each output is the input moved by (dy, dx) with |dy|, |dx| ≤ 2 and zeros where it came in.
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(out, _shift(images[0], dy, dx))]
        assert len(matches) == 1
        assert torch.equal(out[0], out[1])  # channels move together
        found.add(matches[0])
    assert len(found) > 5  # drawn per image, not once per batch
    assert trainer._augment(images, False) is images


def test_max_shift_sets_the_largest_shift_in_pixels():
    torch.manual_seed(0)
    images = torch.arange(1, 1 + 16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16).repeat(256, 1, 1, 1)
    for max_shift in (1, 4):
        found = set()
        for out in trainer._augment(images, True, max_shift):
            matches = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
                       if torch.equal(out, _shift(images[0], dy, dx))]
            assert len(matches) == 1
            found.add(matches[0])
        assert {abs(dy) for dy, _ in found} == set(range(max_shift + 1))  # every size up to max_shift, no larger
        assert {abs(dx) for _, dx in found} == set(range(max_shift + 1))


def _shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    moved = torch.zeros_like(image)
    h, w = image.shape[-2:]
    moved[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return moved


def test_mixup_blends_each_image_with_a_partner_and_keeps_both_labels():
    torch.manual_seed(0)
    images = torch.randn(32, 1, 8, 8)
    labels = torch.arange(32) % 10
    mixed, blended = trainer._mixup(images, labels, 0.4)
    for i in range(32):
        share = float(blended.share[i])
        assert 0.0 <= share <= 1.0
        partners = [j for j in range(32) if torch.allclose(mixed[i], share * images[i] + (1 - share) * images[j], atol=1e-6)]
        assert partners, f"image {i} is not a blend of itself and another image of the batch"
        assert int(blended.first[i]) == int(labels[i]) and int(blended.second[i]) in {int(labels[p]) for p in partners}
    assert blended.share.unique().numel() > 20, "one share per image, not one per batch"
    assert torch.equal(trainer._mixup(images, labels, 0.0)[0], images)
    assert trainer._mixup(images, None, 0.4)[1] is None  # unlabelled inputs are blended without labels


class _Recorder(nn.Module):
    """A linear classifier that keeps a copy of every training input it sees."""

    def __init__(self, record_always: bool) -> None:
        super().__init__()
        self.layer = nn.Linear(64, 10)
        self.record_always = record_always
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.record_always:
            self.seen.append(x.detach().clone())
        return self.layer(x.flatten(1))


def test_teacher_scores_the_same_mixup_blends_the_student_trains_on():
    from edgekd.distill.teacher import Teacher, TeacherSet
    from edgekd.recipe import LossTerm

    data = load_data("digits")
    torch.manual_seed(0)
    teacher, student = _Recorder(record_always=True), _Recorder(record_always=False)
    settings = TrainSettings(1, 200, 1e-3, 0, ce_weight=0.5, mixup=0.4, terms=(LossTerm(method="kd", weight=0.5),))
    fit(student, data.x_train, data.y_train, data.x_val, data.y_val, settings, "mixup", teachers=TeacherSet([Teacher("test", 1.0, model=teacher)]))
    assert len(student.seen) == len(teacher.seen) == -(-len(data.x_train) // 200)
    assert all(torch.equal(s, t) for s, t in zip(student.seen, teacher.seen))


def test_amp_and_compile_are_off_on_the_cpu_and_say_so(monkeypatch):
    said = []
    monkeypatch.setattr(trainer, "say", said.append)
    data = load_data("digits")
    args = (data.x_train[:256], data.y_train[:256], data.x_val, data.y_val)
    plain, flagged = _model(), _model()
    fit(plain, *args, TrainSettings(2, 64, 3e-3, 0), "plain")
    fit(flagged, *args, TrainSettings(2, 64, 3e-3, 0, amp=True, compile=True), "flagged")
    assert any(line.startswith("flagged: amp/compile apply on CUDA only") for line in said)
    assert not any("CUDA only" in line for line in said if line.startswith("plain"))
    for a, b in zip(plain.state_dict().values(), flagged.state_dict().values()):
        assert torch.equal(a, b)  # fp32 eager on the CPU: the very same weights


@pytest.mark.slow
def test_compiled_student_keeps_feature_hooks_losses_and_adapter_gradients():
    """The CUDA `compile` path, compiled here for the CPU: torch.compile must not lose the forward
    hooks that hint terms read, change the loss, or cut the adapters out of the graph."""
    from edgekd.distill.objective import Objective
    from edgekd.recipe import LossTerm

    torch.manual_seed(0)
    student = build_model(ModelSpec("cnn", {"channels": [4, 8], "hidden": 16}, (1, 8, 8), 10)).eval()  # eval: no dropout draws
    teacher = build_model(ModelSpec("cnn", {"channels": [8, 16], "hidden": 32}, (1, 8, 8), 10)).eval()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    terms = [LossTerm(method="kd", weight=0.5), LossTerm(method="hint", weight=1.0, teacher_layer="features.3", student_layer="features.3")]
    objective = Objective(terms, 0.5, 4.0, student, teacher, [1.0], {"input": x[:2]})
    trainable = trainer._Trainable(student, objective.adapters)
    with torch.no_grad():
        teacher_logits = [teacher(x)]  # also fills the teacher's feature hooks
    eager_loss, eager_parts = objective(trainable({"input": x}), teacher_logits, y)
    compiled = trainer._wrap(trainable, TrainSettings(1, 16, 1e-3, 0, compile=True), cuda=True)
    assert compiled is not trainable
    loss, parts = objective(compiled({"input": x}), teacher_logits, y)
    assert torch.allclose(loss, eager_loss, atol=1e-5)
    assert parts.keys() == eager_parts.keys() and all(abs(parts[k] - eager_parts[k]) < 1e-5 for k in parts)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.adapters.parameters())
    assert not any("_orig_mod" in key for key in student.state_dict())  # checkpoints keep plain keys
    objective.close()


def test_an_epoch_passes_over_the_larger_of_the_labelled_and_unlabelled_sets(monkeypatch):
    """A transfer set bigger than the labels sets the epoch's length, for the distilled student and
    for its scratch twin (given the unlabelled inputs, which it does not train on) alike."""
    from edgekd.distill.teacher import Teacher, TeacherSet

    data = load_data("digits")
    labelled, unlabelled = 100, data.x_train[100:400]
    steps = []
    real = trainer._optimise
    monkeypatch.setattr(trainer, "_optimise", lambda loop, loss: (steps.append(1), real(loop, loss)))
    from edgekd.recipe import LossTerm

    settings = TrainSettings(epochs=1, batch_size=64, lr=1e-3, seed=0)
    kd = TrainSettings(epochs=1, batch_size=64, lr=1e-3, seed=0, ce_weight=0.3, terms=(LossTerm(method="kd", weight=0.7),))
    teacher = TeacherSet([Teacher("given", 1.0, model=_model().eval())])
    args = (data.x_train[:labelled], data.y_train[:labelled], data.x_val, data.y_val, settings)
    counted = {}
    for name, extra in {"alone": {}, "scratch twin": {"x_unlabeled": unlabelled},
                        "distilled": {"x_unlabeled": unlabelled, "teachers": teacher}}.items():
        steps.clear()
        fit(_model(), *args[:4], kd if "teachers" in extra else settings, label=name, **extra)
        counted[name] = len(steps)
    assert counted == {"alone": 2, "scratch twin": 5, "distilled": 5}  # ceil(100 / 64), ceil(300 / 64)


def test_batches_bucketed_by_length_hold_the_same_samples_with_similar_lengths():
    """bucket_by_length: every sample once per pass, each batch from a run of similar lengths, the
    batches in random order, a partial batch last; the same seed gives the same order."""
    torch.manual_seed(0)
    lengths = torch.randint(1, 200, (1000,))
    order = torch.randperm(1000)
    torch.manual_seed(1)
    bucketed = trainer._bucketed(order, lengths, 16)
    assert sorted(bucketed.tolist()) == list(range(1000))
    batches = bucketed.split(16)
    spread = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    random = [int(lengths[b].max() - lengths[b].min()) for b in order.split(16)]
    assert sum(spread) < sum(random) / 5, "similar lengths within a batch"
    assert len(batches[-1]) == 1000 % 16, "the partial batch stays last"
    firsts = [int(lengths[b].min()) for b in batches[:-1]]
    assert firsts != sorted(firsts), "the batches are shuffled, not sorted by length"
    torch.manual_seed(1)
    assert torch.equal(trainer._bucketed(order, lengths, 16), bucketed)


def test_bucketing_applies_only_to_sequences(corpus):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    settings = TrainSettings(1, 8, 1e-3, 0, bucket_by_length=True)
    assert trainer._lengths(load_data("digits").x_train, settings) is None
    text = load_data(f"text:{corpus[0]}", options=DataConfig(tokenizer=str(corpus[1]), max_length=48))
    lengths = trainer._lengths(text.x_train, settings)
    assert lengths is not None and len(lengths) == len(text.x_train) and int(lengths.max()) <= 48
    assert trainer._lengths(text.x_train, TrainSettings(1, 8, 1e-3, 0)) is None
