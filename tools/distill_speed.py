"""Distillation speed: edgekd's training loop vs a minimal hand-written KD loop, and cached vs
live teacher outputs — same models, data, batch size and epochs, measured alternately in one
process (median of the repeats), so the ratios hold on a noisy shared machine.

Both loops do the same work per epoch: shuffle, Adam steps on T²·KL + CE, one validation pass.

    python tools/distill_speed.py                          # Fashion-MNIST if installed, else digits
    python tools/distill_speed.py --repeats 5 --samples 20000
Goals: edgekd / hand ≥ 0.95; cached / live ≥ 1.5 when the teacher's forward pass dominates.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd._progress import set_quiet
from edgekd.data import load_data
from edgekd.distill.teacher import Teacher, TeacherSet
from edgekd.distill.trainer import TrainSettings, accuracy, fit
from edgekd.models import ModelSpec, build_model
from edgekd.recipe import LossTerm

FASHION = Path("/usr/share/datasets/fashion-mnist")


def hand_loop(student, teacher, x, y, x_val, y_val, epochs, batch, lr, temperature, kd_weight, ce_weight, seed):
    """What a user would write: the minimal Hinton KD loop."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    teacher.eval()
    steps = 0
    for epoch in range(epochs):
        torch.manual_seed(seed + epoch)
        order = torch.randperm(len(x))
        student.train()
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            xb, yb = x[idx], y[idx]
            with torch.no_grad():
                t = teacher(xb)
            s = student(xb)
            kl = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
            loss = kd_weight * temperature**2 * kl + ce_weight * F.cross_entropy(s, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        accuracy(student, x_val, y_val)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000, help="training samples used")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    set_quiet(True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    source = f"idx:{FASHION}" if FASHION.is_dir() else "digits"
    data = load_data(source)
    x, y = data.x_train[: args.samples], data.y_train[: args.samples]
    x_val, y_val = data.x_val[:2000], data.y_val[:2000]
    torch.manual_seed(0)
    teacher = build_model(ModelSpec("cnn", {}, data.input_shape, data.num_classes)).eval()
    student_spec = ModelSpec("mlp", {"hidden": [128]}, data.input_shape, data.num_classes)
    settings = TrainSettings(args.epochs, args.batch, 1e-3, 0, ce_weight=0.3, terms=(LossTerm(method="kd", weight=0.7, temperature=4.0),))
    live = TeacherSet([Teacher("live", 1.0, model=teacher)])
    cached = TeacherSet([Teacher("cached", 1.0, model=teacher)])
    began = time.perf_counter()
    with torch.no_grad():
        cached.cached = {"train": torch.stack([torch.cat([teacher(torch.as_tensor(x[i : i + 1024])) for i in range(0, len(x), 1024)])])}
    cache_seconds = time.perf_counter() - began
    steps = args.epochs * -(-len(x) // args.batch)
    rates: dict[str, list[float]] = {"hand": [], "edgekd live": [], "edgekd cached": []}
    for repeat in range(args.repeats):
        for name in rates:
            torch.manual_seed(repeat)
            student = build_model(student_spec)
            start = time.perf_counter()
            if name == "hand":
                hand_loop(student, teacher, x, y, x_val, y_val, args.epochs, args.batch, 1e-3, 4.0, 0.7, 0.3, repeat)
            else:
                fit(student, x, y, x_val, y_val, settings, name, teachers=live if name == "edgekd live" else cached)
            rates[name].append(steps / (time.perf_counter() - start))
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"data: {source}, {len(x)} samples, batch {args.batch}, {args.epochs} epochs × {args.repeats} repeats, "
          f"teacher cnn ({sum(p.numel() for p in teacher.parameters()):,} params) → student mlp-128, {torch.get_num_threads()} threads")
    for name, rate in median.items():
        print(f"  {name:<14} {rate:8.1f} steps/s  (runs: {', '.join(f'{r:.1f}' for r in rates[name])})")
    print(f"edgekd live / hand-written loop = {median['edgekd live'] / median['hand']:.3f}  (goal ≥ 0.95)")
    print(f"edgekd cached / edgekd live     = {median['edgekd cached'] / median['edgekd live']:.2f}  (goal ≥ 1.5; the cache itself took {cache_seconds:.1f} s once)")


if __name__ == "__main__":
    main()
