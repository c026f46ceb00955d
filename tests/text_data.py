"""Small real text data made in the test: review-like sentences and a WordPiece tokenizer trained on them.

The label is carried by sentiment words placed among neutral ones, with some noise words on
both sides, so a small transformer learns it in a few epochs but not from the first token alone.
Nothing is downloaded: the vocabulary is built from the sentences themselves, the same in every process.
"""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path

import numpy as np

POSITIVE = ["great", "wonderful", "moving", "funny", "brilliant", "charming", "sharp", "gripping"]
NEGATIVE = ["dull", "boring", "clumsy", "tedious", "awful", "bland", "messy", "hollow"]
NEUTRAL = ["the", "film", "movie", "story", "a", "is", "was", "and", "plot", "cast", "its", "this", "with",
           "director", "scenes", "ending", "music", "of", "at", "times", "overall", "really", "quite"]


def sentences(count: int, seed: int = 0, classes: tuple[str, ...] = ("fresh", "rotten")) -> list[tuple[str, str]]:
    """(text, label) pairs; lengths vary from 3 to about 40 words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        label = int(rng.integers(0, len(classes)))
        cue = POSITIVE if label == 0 else NEGATIVE
        other = NEGATIVE if label == 0 else POSITIVE
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(2, 36))))
        for _ in range(int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue)))
        if rng.random() < 0.3:  # a contrary word now and then: the majority decides
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(other)))
        rows.append((" ".join(words) + f" {i % 97}", classes[label]))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[tuple[str, object]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


def train_tokenizer(folder: Path, texts: list[str]) -> Path:
    """A BERT-style WordPiece tokenizer ([CLS] ... [SEP], lower case), saved as a transformers folder.

    The vocabulary is built here in a fixed order (special tokens, characters, continuation
    characters, then words by frequency and alphabet), not by tokenizers' WordPieceTrainer: that
    orders tokens of equal frequency by a Rust HashMap, seeded per process, so the ids differed in
    every test session and each session trained a different text model (tests that passed for one
    model and not for another failed now and then)."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in words for c in word} | set(string.ascii_lowercase + string.digits + string.punctuation))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    tokens += [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if w not in tokens]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(tokens)}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(str(folder))
    return folder


def make_corpus(folder: Path, count: int = 600, seed: int = 0) -> tuple[Path, Path]:
    """A csv of `count` labelled sentences and the tokenizer folder trained on them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = sentences(count, seed)
    csv_path = write_csv(folder / "reviews.csv", rows)
    tokenizer = train_tokenizer(folder / "tokenizer", [t for t, _ in rows])
    return csv_path, tokenizer


TEXT_RECIPE = """
[data]
source = "text:{csv}"
tokenizer = "{tokenizer}"
max_length = 48

[teacher]
model = "transformer"
args = {{ layers = 2, hidden = 64, heads = 4, intermediate = 128, max_position = 64 }}
epochs = 6
lr = 3e-3

[student]
model = "transformer"
args = {{ layers = 1, hidden = 32, heads = 2, intermediate = 64, max_position = 64 }}

[distill]
epochs = 6
batch_size = 32
lr = 3e-3
temperature = 2.0

[target]
name = "x86-cpu-text"
"""


PEOPLE = [["alice"], ["bob", "smith"], ["carol"], ["dave", "jones"], ["erin"], ["zorbanov"]]
PLACES = [["paris"], ["new", "york"], ["oslo"], ["lima"], ["kyotobridge"]]
ORGS = [["acme", "corp"], ["globex"], ["initech", "labs"]]
FILLER = ["met", "in", "at", "works", "for", "visited", "the", "office", "of", "today", "and", "with", "from", "moved", "to"]


def tagged_sentences(count: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """(words, IOB2 tags) sentences: people (PER), places (LOC) and organisations (ORG) among filler
    words, multi-word entities included; 'zorbanov' and 'kyotobridge' split into several sub-tokens."""
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(count):
        words, tags = [], []
        for _ in range(int(rng.integers(1, 4))):
            words += [str(w) for w in rng.choice(FILLER, size=int(rng.integers(1, 4)))]
            tags += ["O"] * (len(words) - len(tags))
            kind, names = [("PER", PEOPLE), ("LOC", PLACES), ("ORG", ORGS)][int(rng.integers(0, 3))]
            name = names[int(rng.integers(0, len(names)))]
            words += name
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        sentences.append((words, tags))
    return sentences


def write_tagged_jsonl(path: Path, sentences) -> Path:
    path.write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in sentences), encoding="utf-8")
    return path


def write_conll(path: Path, sentences) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{w}\tNN\t{t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tagging_tokenizer(folder: Path) -> Path:
    """A tokenizer for tagged_sentences that lacks the words 'zorbanov' and 'kyotobridge' (they split into characters)."""
    texts = [" ".join(words) for words, _ in tagged_sentences(200, seed=99)]
    return train_tokenizer(folder, [t.replace("zorbanov", "").replace("kyotobridge", "") for t in texts])
