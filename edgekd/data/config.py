"""The [data] section: where the data comes from and how it is split and read.

It lives with the data sources that read it (the recipe holds one), so the data layer needs
nothing from the recipe.
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, Field, Strict
from pydantic.dataclasses import dataclass

from edgekd._config import CONFIG, Bool, Count, Float, Int, Seed


def _known_encoding(name: str) -> str:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding '{name}'; use a Python codec name such as \"utf-8\", \"latin-1\" or \"cp1252\"") from None
    return name


Encoding = Annotated[str, Strict(), AfterValidator(_known_encoding)]


@dataclass(config=CONFIG)
class DataConfig:
    # Where the data comes from: "digits", "npz:PATH", "text:PATH", ... or "package.module:function".
    source: str = Field("digits", description='"digits", "npz:PATH", "idx:DIR", "csv:PATH", "imagefolder:DIR", "masks:DIR", "coco:PATH", "text:PATH", "conll:PATH" or "package.module:function"')
    # Seed of the stratified split, so every stage and every rerun sees the same split.
    split_seed: Seed = Field(0, description="seed of the stratified train/val/test split")
    # Share of the labelled training data held out for validation when the source has no val split.
    val_fraction: Float = Field(0.15, gt=0, lt=0.5, description="validation share, when the source has none")
    # Share held out for testing when the source has no test split (digits).
    test_fraction: Float = Field(0.2, gt=0, lt=0.5, description="test share, when the source has none")
    # csv: the column that holds the class labels (the other numeric columns are the features).
    label_column: Optional[str] = Field(None, description='csv / text: name of the label column (text default: "label")')
    # regression: the models learn targets standardised with the training split's mean and std, and
    # map them back in their last step, so every model (and its ONNX file) answers in the data's units.
    # segmentation / token classification: positions whose label equals this are neither trained on
    # nor scored (default 255, the usual "void" value of masks; -100 for tokens, as Hugging Face has it).
    ignore_index: Optional[Int] = Field(None, description="segmentation / token classification: the label neither trained on nor scored (default 255 / -100)")
    standardize_targets: Bool = Field(True, description="regression: train on standardised targets (undone inside the model)")
    # text:PATH (csv, tsv or jsonl): the column with the text, the tokenizer, the longest sequence kept.
    text_column: str = Field("text", description="text: name of the text column")
    tokenizer: Optional[str] = Field(None, description='text: a Hugging Face tokenizer folder, "minilm", or "package.module:function"')
    max_length: Int = Field(128, ge=2, le=8192, description="text: tokens kept per text (longer texts are truncated)")
    # text: keep only these labels, in this class order (e.g. ["fresh", "rotten"]); default: all, sorted.
    labels: Optional[list[str]] = Field(None, min_length=2, description="text: the labels to keep, in class-index order")
    # imagefolder / masks: resize to (height, width), optionally to one grey channel, then normalise.
    image_size: Optional[list[Count]] = Field(None, min_length=2, max_length=2, description="imagefolder / masks / coco: [height, width]")
    grayscale: Bool = Field(False, description="imagefolder: convert images to one channel")
    # coco: the folder of the images the JSON names (default: the JSON's own folder).
    images: Optional[str] = Field(None, description="coco: folder of the images (default: the annotation file's folder)")
    mean: Optional[list[Float]] = Field(None, description="imagefolder: per-channel mean to subtract (after scaling to 0..1)")
    std: Optional[list[Annotated[float, Strict(), Field(gt=0)]]] = Field(None, description="imagefolder: per-channel std to divide by")
    # csv / text files: the encoding they were saved in (UTF-8 unless a spreadsheet wrote, say, cp1252).
    encoding: Encoding = Field("utf-8", description='csv / text: the files\' text encoding, e.g. "latin-1" or "cp1252"')
    # Few labels: the students keep the labels of this share of the training split (the task's split:
    # stratified for classes, seeded by split_seed); the other training inputs join the unlabelled
    # transfer set, which only the distilled student sees, through the teachers' soft targets. A teacher
    # edgekd trains still learns from every training label: it stands for a model trained elsewhere on
    # more labels than the students have (the usual reason to distil). Validation and test keep theirs.
    label_fraction: Float = Field(1.0, gt=0, le=1, description="share of the training labels the students keep; the rest become unlabelled inputs (a teacher edgekd trains keeps all)")
    # Unlabelled inputs (an .npz with x_unlabeled, an image folder, or a text file) used with teacher soft targets only.
    unlabeled: Optional[str] = Field(None, description="npz:PATH (x_unlabeled), imagefolder:DIR or text:PATH (its text column) of unlabelled inputs")
    # Random translations (up to 1/8 of the image size, or max_shift pixels), drawn per image, while the students
    # train (the scratch baseline and the distilled student alike; the teacher: [teacher] augment).
    augment: Bool = Field(False, description="random shifts of the students' training images (disables teacher-output caching)")
    # Largest shift in pixels, up and down and sideways (Hinton et al. 2015 used 2 on MNIST's 28×28).
    max_shift: Optional[Int] = Field(None, ge=1, description="largest shift in pixels with augment = true (default: 1/8 of the height and width)")
    # With augment (the students', and the teacher's with [teacher] augment): each image also mirrored
    # left-right with probability 1/2, masks and boxes alike. Off by default: a mirrored digit is not that digit.
    flip: Bool = Field(False, description="with augment = true: also mirror images left-right at random (masks and boxes alike)")
    # Mixup (Zhang et al. 2018) while the students train: each image is blended with another of
    # its batch, share ~ Beta(α, α) per image; the hard-label loss is blended the same way. The
    # teacher sees the very same blended image, so distillation matches the teacher's function
    # beyond the training images ("function matching", Beyer et al. 2022). 0 turns it off.
    mixup: Float = Field(0.0, ge=0, description="mixup α of the students' training images, e.g. 0.4 (0: off; disables teacher-output caching)")
