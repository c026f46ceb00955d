"""The detector's loss on labels and its distillation term, for the (N, A, 4 + C) layout.

Assignment (FCOS, Tian et al. 2019, with center sampling): a position learns a true box when it
lies inside the box, within `CENTER_RADIUS` strides of its centre, and its level suits the box's
size (the largest of its distances to the box's sides falls in the level's range: up to 8 strides,
beyond the finer level's); a position that several boxes claim takes the smallest.
Classification: quality focal loss (Li et al. 2020, GFL): each assigned position's target for its
class is the IoU of its predicted box with the true box (0 elsewhere), so a score says how well the
box fits and needs no separate centerness branch. Boxes: GIoU loss (Rezatofighi et al. 2019) on
assigned positions, weight 2 as GFL. Both normalised by the number of assigned positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ModelError

CENTER_RADIUS = 1.5  # strides around a box's centre where positions may learn it
LEVEL_REACH = 8  # a level takes boxes whose farthest side is up to this many of its strides away
BOX_WEIGHT = 2.0
CONFIDENT = 0.3  # distillation: the teacher's boxes are learned where its best class score reaches this


def anchors_of(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions (A, 2) and strides (A,) a detector's outputs follow: the built-in family's
    buffers, or the initializers of those names in the ONNX graph quantization-aware training runs."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "student", inner)  # the trainer's student-plus-adapters module
    points, strides = getattr(inner, "anchor_points", None), getattr(inner, "anchor_strides", None)
    if (points is None or strides is None) and hasattr(inner, "slots"):  # qad.graph.FakeQuantGraph: the file's initializers
        points, strides = (inner.initializer(n) if n in inner.slots else None for n in ("anchor_points", "anchor_strides"))
    if points is None or strides is None:
        raise ModelError(f"{type(inner).__name__} has no anchor_points (A, 2) and anchor_strides (A, 1): the detection loss assigns "
                         "true boxes to the positions of the outputs; give the detector those buffers (as edgekd's `detector` has)")
    return points, strides.reshape(-1)


def assign(points: torch.Tensor, strides: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, A): the index of the true box each position learns, −1 for background."""
    boxes, real = labels[..., 1:5], labels[..., 0] >= 0  # (N, M, 4), (N, M)
    x, y = points[:, 0][None, :, None], points[:, 1][None, :, None]  # (1, A, 1)
    sides = torch.stack([x - boxes[:, None, :, 0], y - boxes[:, None, :, 1], boxes[:, None, :, 2] - x, boxes[:, None, :, 3] - y], -1)
    centre_x, centre_y = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    radius = (CENTER_RADIUS * strides)[None, :, None]
    central = ((x - centre_x[:, None]).abs() < radius) & ((y - centre_y[:, None]).abs() < radius)
    levels = torch.unique(strides)
    upper = torch.where(strides == levels[-1], torch.inf, LEVEL_REACH * strides)
    lower = torch.where(strides == levels[0], 0.0, LEVEL_REACH * strides / 2)
    reach = sides.amax(-1)
    fits = (reach > lower[None, :, None]) & (reach <= upper[None, :, None])
    claims = (sides.amin(-1) > 0) & central & fits & real[:, None, :]
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, None, :].expand_as(claims)
    smallest = torch.where(claims, area, torch.inf).argmin(-1)
    return torch.where(claims.any(-1), smallest, -1)


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of boxes a[i] and b[i] (…, 4), x1 y1 x2 y2."""
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    union = (area_a + area_b - inter).clamp_min(1e-9)
    iou = inter / union
    hull = ((torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0]))
            * (torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1]))).clamp_min(1e-9)
    return iou, iou - (hull - union) / hull


def quality_focal_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Σ over positions and classes of BCE(σ(z), q) · |σ(z) − q|^β (GFL's QFL, summed)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * (torch.sigmoid(logits) - target).abs().pow(beta)).sum()


def detection_loss(outputs: torch.Tensor, labels: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """QFL on the class logits + 2 · GIoU loss on the assigned positions' boxes, per assigned position."""
    points, strides = anchors_of(model)
    outputs = outputs.float()
    boxes, logits = outputs[..., :4], outputs[..., 4:]
    assigned = assign(points, strides, labels.float())
    positive = assigned >= 0
    count = positive.sum().clamp_min(1)
    matched = torch.gather(labels.float(), 1, assigned.clamp_min(0)[..., None].expand(-1, -1, 5))  # (N, A, 5)
    iou, giou = box_iou_pairs(boxes, matched[..., 1:5])
    target = torch.zeros_like(logits)
    rows = positive.nonzero(as_tuple=True)
    target[(*rows, matched[..., 0][rows].long())] = iou[rows].detach().clamp_min(0)
    return (quality_focal_loss(logits, target) + BOX_WEIGHT * (1 - giou[rows]).sum()) / count


def detection_kd_loss(student: torch.Tensor, teachers: list[torch.Tensor], temperature: float, weights: list[float] | None = None) -> torch.Tensor:
    """Dense head distillation (after Chen et al. 2017): per position and class, the KL divergence
    between the teachers' and the student's Bernoulli scores at temperature T, × T²; plus GIoU
    loss to the teachers' boxes where their best score reaches CONFIDENT, weighted by that score.
    Both divided by the teachers' summed best scores (their soft count of objects)."""
    weights = weights or [1.0] * len(teachers)
    total = float(sum(weights))
    student = student.float()
    for teacher in teachers:
        if teacher.shape[1:] != student.shape[1:]:
            raise ModelError(f"det-kd compares the teacher's and the student's outputs position by position, but the teacher answers "
                             f"{tuple(teacher.shape[1:])} per image and the student {tuple(student.shape[1:])}: give both the same "
                             "pyramid strides (detector: first_stride and the number of widths; mobilenetv2: strides 8, 16, 32)")
    p_teacher = sum(w / total * torch.sigmoid(t[..., 4:].float() / temperature) for w, t in zip(weights, teachers)).detach()
    teacher_boxes = sum(w / total * t[..., :4].float() for w, t in zip(weights, teachers)).detach()
    log_p, log_q = F.logsigmoid(student[..., 4:] / temperature), F.logsigmoid(-student[..., 4:] / temperature)
    p = p_teacher.clamp(1e-6, 1 - 1e-6)
    kl = p * (torch.log(p) - log_p) + (1 - p) * (torch.log(1 - p) - log_q)
    confidence = sum(w / total * torch.sigmoid(t[..., 4:].float()) for w, t in zip(weights, teachers)).amax(-1).detach()
    count = confidence.sum().clamp_min(1.0)
    weight = torch.where(confidence >= CONFIDENT, confidence, 0.0)
    _, giou = box_iou_pairs(student[..., :4], teacher_boxes)
    return (temperature**2 * kl.sum() + BOX_WEIGHT * (weight * (1 - giou)).sum()) / count
