"""What the SAM 3 tools share: precision, frame preprocessing read from the processor settings, and
the text prompt as SAM 3's processors tokenise it.

SAM 3's processors (``Sam3Processor``, ``Sam3VideoProcessor``, ``Sam3TrackerVideoProcessor``) need
torchvision for their image and video processors, which alref must not depend on; what they compute is
reproduced here and in :mod:`alref.tools.segmentation` (``tests/test_sam3.py`` checks it against their
documented algorithm and against the installed source):

- frames and images: the same resize as SAM 2's video processor (``Sam2VideoVideoProcessor``, which
  ``facebook/sam3`` names as its video processor; ``Sam3ImageProcessor`` resizes images the same way):
  antialiased bilinear on float32, rounded to uint8, to ``image_size`` x ``image_size`` (1008 for
  ``facebook/sam3``), then the fused rescale + normalise (mean and std 0.5 for ``facebook/sam3``);
- text: ``tokenizer(text, padding="max_length", max_length=32)``, as both processors call it. Nothing
  truncates: a longer text would reach a 32-position text encoder, so alref refuses it first
  (:func:`check_phrase`, an :class:`~alref.errors.InputError` in one line).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alref.errors import InputError
from alref.tools.segmentation import (
    PRECISIONS,
    RESCALE_FACTOR,
    _preprocessing,
    _video_processor_dict,
    check_preprocessing,
)  # fmt: skip

#: SAM 3's processor defaults (``Sam3ImageProcessor``: IMAGENET_STANDARD mean and std) and facebook/sam3's
SAM3_MEAN = (0.5, 0.5, 0.5)
SAM3_STD = (0.5, 0.5, 0.5)
#: the processors pad every text prompt to 32 tokens (start and end tokens included), the text encoder's
#: ``max_position_embeddings``
TEXT_TOKENS = 32
HUB_ID = "facebook/sam3"


def resolve_precision(precision: str, device: str) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere; weights stay float32, lower precision is autocast."""
    if precision == "auto":
        precision = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; choose auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def autocast(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def storage_devices(device: str, offload_video: bool, offload_state: bool) -> tuple[str, str]:
    """Where the prepared frames and the tracking state live: the GPU unless offloaded, else the CPU."""
    on_gpu = torch.device(device).type == "cuda"
    return ("cpu" if offload_video or not on_gpu else device), (
        "cpu" if offload_state or not on_gpu else device
    )


# ----------------------------------------------------------------------------------------------
# preprocessing settings


def video_preprocessing(
    folder: Path, model_side: int
) -> tuple[tuple[float, ...], tuple[float, ...], int, float]:
    """Mean, std, side and rescale factor of the checkpoint's video processor (``processor_config.json``'s
    ``video_processor``, then the other files SAM 2's loader reads); none at all: SAM 3's defaults."""
    if _video_processor_dict(Path(folder)) is None:
        return SAM3_MEAN, SAM3_STD, model_side, RESCALE_FACTOR
    return _preprocessing(Path(folder), model_side)


def image_preprocessing(
    folder: Path, model_side: int
) -> tuple[tuple[float, ...], tuple[float, ...], int, float]:
    """The same for ``Sam3Processor``'s image processor (``processor_config.json``'s ``image_processor``,
    else ``preprocessor_config.json``; defaults: ``Sam3ImageProcessor``'s)."""
    folder = Path(folder)
    data: dict[str, Any] | None = None
    nested = folder / "processor_config.json"
    if nested.is_file():
        found = json.loads(nested.read_text()).get("image_processor")
        data = found if isinstance(found, dict) else None
    if data is None and (folder / "preprocessor_config.json").is_file():
        data = json.loads((folder / "preprocessor_config.json").read_text())
    data = data or {}
    mean = tuple(float(v) for v in data.get("image_mean", SAM3_MEAN))
    std = tuple(float(v) for v in data.get("image_std", SAM3_STD))
    rescale = float(data.get("rescale_factor", RESCALE_FACTOR))
    size = data.get("size", {"height": model_side, "width": model_side})
    side = int(size.get("height", model_side)) if isinstance(size, dict) else int(size)
    width = int(size.get("width", side)) if isinstance(size, dict) else side
    check_preprocessing(data, "SAM 3")
    if side != model_side or width != model_side:
        raise ValueError(
            f"image processor size {side}x{width} differs from the model's image_size {model_side}"
        )
    if len(mean) != 3 or len(std) != 3 or not rescale > 0:
        raise ValueError("image_mean and image_std must have 3 values and rescale_factor must be positive")
    return mean, std, side, rescale


def normalise(
    frame: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], rescale: float, device: str
) -> torch.Tensor:
    """A prepared uint8 side x side x 3 frame -> float32 3 x side x side, as the processors' fused rescale +
    normalise: ``(x - mean / rescale) / (std / rescale)``."""
    pixels = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1).contiguous().float()
    scale = 1.0 / rescale
    mean_t = (torch.tensor(mean, device=device) * scale).view(-1, 1, 1)
    std_t = (torch.tensor(std, device=device) * scale).view(-1, 1, 1)
    return pixels.sub_(mean_t).div_(std_t)


# ----------------------------------------------------------------------------------------------
# text


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def prompt_text(phrase: str) -> str:
    """The phrase with its whitespace collapsed (the tokenizer lowercases it itself)."""
    text = " ".join(str(phrase).split())
    if not text:
        raise InputError("the phrase for SAM 3 is empty; give a short noun phrase, e.g. 'red car'")
    return text


def check_phrase(tokenizer: Any, phrase: str) -> str:
    """The prompt text, or an InputError (one line) if SAM 3's 32-token text encoder cannot read it whole."""
    text = prompt_text(phrase)
    tokens = len(tokenizer(text)["input_ids"])
    if tokens > TEXT_TOKENS:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InputError(
            f'"{shown}" is {tokens} tokens ({len(text.split())} words) but SAM 3 reads at most {TEXT_TOKENS} '
            'tokens; give a short noun phrase, e.g. "the dog on the left"'
        )
    return text


def encode_text(tokenizer: Any, texts: list[str], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask as the processors make them (padded to 32 tokens)."""
    encoded = tokenizer(texts, return_tensors="pt", padding="max_length", max_length=TEXT_TOKENS)
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
