"""Text classifiers: a BERT-style student built from `transformers`' own config classes, Hugging
Face teachers from a local folder, and DistilBERT-style initialisation of a student from its teacher.

Every text model is called as `model(input_ids, attention_mask)` and returns logits, so export,
parity and distillation treat it like any other model. `transformers` is imported only here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd._io import read_json
from edgekd.errors import ModelError, first_line


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ModelError("text models need the text extra: pip install 'edgekd[text]'") from None
    transformers.logging.set_verbosity_error()  # load reports and tips are not the user's problem
    transformers.logging.disable_progress_bar()  # edgekd reports progress itself, on its own terms
    return transformers


class SequenceClassifier(nn.Module):
    """encoder → pooled hidden state (mean over real tokens, or the first token) → dropout → linear;
    with pooling "none", every token's hidden state → dropout → linear: a token classifier (NER)."""

    def __init__(self, encoder: nn.Module, hidden: int, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("mean", "first", "none"):
            raise ModelError(f"pooling must be 'mean', 'first' or 'none' (one output per token); got '{pooling}'")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled hidden state the head classifies (pooling "none": every token's)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "none":
            return hidden
        if self.pooling == "first":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def head(self) -> nn.Module:
        """Dropout and the linear layer, sharing this model's parameters (trained alone on pooled features)."""
        return nn.Sequential(self.dropout, self.classifier)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(input_ids, attention_mask)))


class _HeadLogits(nn.Module):
    """A Hugging Face *ForSequenceClassification model, returning its logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def transformer(
    vocab_size: int,
    num_classes: int,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 2,
    intermediate: int = 512,
    max_position: int = 512,
    pooling: str = "mean",
    dropout: float = 0.1,
) -> nn.Module:
    """A BERT-style encoder (BertConfig, randomly initialised) with a classification head (pooling
    "mean" or "first": one label per text; "none": one tag per token)."""
    if hidden % heads:
        raise ModelError(f"transformer: hidden ({hidden}) must be a multiple of heads ({heads})")
    transformers = _transformers()
    config = transformers.BertConfig(
        vocab_size=int(vocab_size), hidden_size=int(hidden), num_hidden_layers=int(layers), num_attention_heads=int(heads),
        intermediate_size=int(intermediate), max_position_embeddings=int(max_position),
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    encoder = transformers.BertModel(config, add_pooling_layer=False)
    return SequenceClassifier(encoder, int(hidden), int(num_classes), pooling, dropout)


def hf_model(folder: str, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> nn.Module:
    """A local Hugging Face model folder (or a name from edgekd.data.text.PRETRAINED).

    With a sequence-classification head (a token-classification head when `pooling` is "none") for
    `num_classes` labels it is used as it is; an encoder (no head, e.g. MiniLM) gets a fresh linear
    head, pooled or per token, that the teacher training fits.
    """
    from edgekd.data.text import PRETRAINED, pretrained_dir

    path = pretrained_dir(folder) if folder in PRETRAINED else Path(folder).expanduser()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(f"hf:{folder}: no Hugging Face model folder there (no config.json); give a folder that save_pretrained wrote")
    config = read_json(config_file, ModelError, "config.json", "give a folder that save_pretrained wrote")
    if not isinstance(config, dict):
        raise ModelError(f"{config_file}: holds a JSON {type(config).__name__}, not the object save_pretrained writes; give a folder that save_pretrained wrote")
    transformers = _transformers()
    head_kind = "ForTokenClassification" if pooling == "none" else "ForSequenceClassification"
    has_head = any(head_kind in a for a in config.get("architectures") or [])
    try:
        if has_head:
            labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
            if labels != num_classes:
                raise ModelError(f"hf:{folder} classifies {labels} labels but the data has {num_classes} classes; "
                                 f"use data with its labels, or the encoder without its head")
            auto = transformers.AutoModelForTokenClassification if pooling == "none" else transformers.AutoModelForSequenceClassification
            model = auto.from_pretrained(str(path), local_files_only=True)
            return _HeadLogits(model)
        encoder = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    except ModelError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad folders
        raise ModelError(f"hf:{folder}: transformers cannot load it ({first_line(exc)})") from None
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused: the head pools the hidden states itself
    return SequenceClassifier(encoder, int(encoder.config.hidden_size), num_classes, pooling, dropout)


@torch.no_grad()
def pooled_features(model: SequenceClassifier, inputs, batch_size: int = 128) -> np.ndarray:
    """The frozen encoder's pooled features of every input, computed once: a head-only teacher
    trains on these (a linear probe) instead of running the encoder again every epoch."""
    from edgekd._progress import bar
    from edgekd.inputs import concat_outputs
    from edgekd.models.call import to_tensors

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    with bar() as progress:
        task = progress.add_task("encoding", total=len(inputs), info="")
        for i in range(0, len(inputs), batch_size):
            chunks.append(model.pool(**to_tensors(inputs[i : i + batch_size].trimmed(), device)).float().cpu().numpy())
            progress.update(task, advance=min(batch_size, len(inputs) - i))
    model.train(was)
    return concat_outputs(chunks)  # per-token features (pooling "none") of shorter batches padded back


def freeze_encoder(model: nn.Module) -> int:
    """Train only the head of an encoder teacher; returns the parameters left trainable."""
    if not isinstance(model, SequenceClassifier):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> int:
    """Copy the teacher's embeddings and every k-th encoder layer into the student where shapes agree
    (DistilBERT took every second layer of BERT-base). Returns the tensors copied; raises if none fit."""
    s_encoder, t_encoder = _bert_encoder(student, "student"), _bert_encoder(teacher, "teacher")
    s_layers, t_layers = len(s_encoder.encoder.layer), len(t_encoder.encoder.layer)
    step = max(1, t_layers // max(1, s_layers))
    mapping = {"embeddings.": "embeddings."}
    for i in range(min(s_layers, t_layers)):
        mapping[f"encoder.layer.{i}."] = f"encoder.layer.{i * step}."
    t_state = t_encoder.state_dict()
    s_state = s_encoder.state_dict()
    copied = 0
    for name in s_state:
        prefix = next((p for p in mapping if name.startswith(p)), None)
        if prefix is None:
            continue
        source = mapping[prefix] + name[len(prefix):]
        if source in t_state and t_state[source].shape == s_state[name].shape:
            s_state[name] = t_state[source].clone()
            copied += 1
    if copied == 0:
        raise ModelError(f"init_from_teacher: no teacher weights fit the student (hidden {s_encoder.config.hidden_size} vs the teacher's "
                         f"{t_encoder.config.hidden_size}); give the student the teacher's hidden size and heads, or drop init_from_teacher")
    s_encoder.load_state_dict(s_state)
    return copied


def _bert_encoder(model: nn.Module, role: str) -> nn.Module:
    encoder = model.encoder if isinstance(model, SequenceClassifier) else getattr(getattr(model, "model", None), "base_model", None)
    if encoder is None or not hasattr(encoder, "embeddings") or not hasattr(getattr(encoder, "encoder", None), "layer"):
        raise ModelError(f"init_from_teacher works between BERT-style text models; the {role} is {type(model).__name__}")
    return encoder
