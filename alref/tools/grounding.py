"""GroundingDINO: boxes for the things a phrase names, in one or many images.

The detector wraps ``transformers``' ``GroundingDinoForObjectDetection`` and its processor, loaded from a
``save_pretrained`` folder (``IDEA-Research/grounding-dino-base`` by default, or the tiny random ``smoke``
model that :func:`build_tiny` writes). It runs in fp32 on every device: GroundingDINO's box and score
heads are sensitive to half precision, and one pivot frame per clip is cheap enough in fp32.

Batching groups images by size, so a batch is never padded: Swin's window attention sees padded pixels
and the pixel mask does not undo that, so padding changes a frame's boxes. Grouped, the detections for
an image do not depend on ``batch_size`` or on the other images of the call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from alref.core.records import Detection
from alref.errors import InputError
from alref.tools.loading import ModelSource, load_once, load_pretrained, resolve_device

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

__all__ = [
    "Detection",
    "GroundPhraseArgs",
    "GroundingDetector",
    "build_tiny",
    "make_grounding_tool",
    "normalize_phrase",
]

# ----------------------------------------------------------------------------------------------
# results


def check_detect_args(images: Sequence[np.ndarray], top_k: int, batch_size: int) -> None:
    """What every grounding tool's ``detect`` accepts: RGB uint8 HxWx3 images, top_k and batch_size >= 1."""
    if top_k < 1 or batch_size < 1:
        raise ValueError(f"top_k and batch_size must be at least 1 (got {top_k}, {batch_size})")
    for i, image in enumerate(images):
        ok = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.size
        if not ok or image.dtype != np.uint8:
            shape = getattr(image, "shape", type(image).__name__)
            kind = getattr(image, "dtype", "")
            raise ValueError(f"image {i} must be an RGB uint8 array of shape HxWx3, got {shape} {kind}")


def normalize_phrase(phrase: str) -> str:
    """The text as GroundingDINO was trained on it: lowercase, single spaces, ending with a period."""
    text = " ".join(str(phrase).lower().split()).rstrip(". ")
    if not text:
        raise ValueError(
            "the phrase to ground is empty; give the words that name the object, e.g. 'the red car'"
        )
    return text + "."


# ----------------------------------------------------------------------------------------------
# the detector


class GroundingDetector:
    """A loaded GroundingDINO model and processor on one device (load with :meth:`load`)."""

    def __init__(self, source: ModelSource, device: str, model: Any, processor: Any) -> None:
        self.source = source
        self.device = device
        self.model = model
        self.processor = processor

    @classmethod
    def load(cls, source: ModelSource, device: str) -> GroundingDetector:
        """Load once per process (per folder and device); a folder that does not load is a ModelLoadError."""
        device = resolve_device(device)
        return load_once(("grounding", str(source.path), device), lambda: cls._load(source, device))

    @classmethod
    def _load(cls, source: ModelSource, device: str) -> GroundingDetector:
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        # without torchvision the image processor falls back to GroundingDinoImageProcessorPil
        return cls(
            source,
            device,
            *load_pretrained(source, device, GroundingDinoForObjectDetection, GroundingDinoProcessor),
        )

    @property
    def max_text_tokens(self) -> int:
        """The longest text, in tokens, the model reads (GroundingDINO: ``max_text_len``, 256)."""
        return int(getattr(self.model.config, "max_text_len", 256))

    def check_phrase(self, phrase: str) -> None:
        """A phrase the model can read whole, or an :class:`InputError` that says how long it may be."""
        text = normalize_phrase(phrase)
        tokens = len(self.processor.tokenizer(text)["input_ids"])
        if tokens > self.max_text_tokens:
            raise InputError(
                f"the reference is too long for the grounding model: {tokens} tokens ({len(text.split())} words), "
                f"it reads at most {self.max_text_tokens}; give a short description of the object and what "
                'sets it apart, e.g. "the dog on the left that jumps"'
            )

    def detect(
        self,
        images: Sequence[np.ndarray],
        phrase: str,
        box_threshold: float = 0.15,
        text_threshold: float = 0.2,
        top_k: int = 10,
        batch_size: int = 4,
    ) -> list[list[Detection]]:
        """Boxes for ``phrase`` in each RGB uint8 HxWx3 image, best first, at most ``top_k`` per image."""
        import torch
        from PIL import Image

        text = normalize_phrase(phrase)
        self.check_phrase(phrase)
        check_detect_args(images, top_k, batch_size)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        results: list[list[Detection]] = [[] for _ in images]
        with torch.inference_mode():
            for (h, w), indices in by_size.items():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start : start + batch_size]
                    pil = [Image.fromarray(np.ascontiguousarray(images[i])) for i in chunk]
                    inputs = self.processor(images=pil, text=[text] * len(chunk), return_tensors="pt")
                    input_ids = inputs["input_ids"]  # kept on the CPU for decoding the matched words
                    outputs = self.model(**inputs.to(self.device))
                    found = self.processor.post_process_grounded_object_detection(
                        outputs,
                        input_ids,
                        threshold=box_threshold,
                        text_threshold=text_threshold,
                        target_sizes=[(h, w)] * len(chunk),
                    )
                    for i, res in zip(chunk, found, strict=True):
                        results[i] = self._to_detections(res, h, w, top_k)
        return results

    def _to_detections(self, result: dict[str, Any], h: int, w: int, top_k: int) -> list[Detection]:
        scores = result["scores"].float().cpu().numpy()
        boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        labels: list[str] = result["text_labels"]
        boxes = np.clip(boxes, 0.0, [w, h, w, h])
        detections = []
        for k in np.argsort(-scores, kind="stable"):
            x0, y0, x1, y1 = (float(v) for v in boxes[k])
            if not (x1 > x0 and y1 > y0 and np.isfinite(scores[k])):  # also drops NaN boxes
                continue
            detections.append(Detection((x0, y0, x1, y1), float(scores[k]), self._clean_label(labels[k])))
            if len(detections) == top_k:
                break
        return detections

    def _clean_label(self, label: str) -> str:
        """Drop the special tokens ([SEP], …) and periods the processor's decoding leaves in a label."""
        special = set(self.processor.tokenizer.all_special_tokens)
        words = [t for t in label.replace(".", " ").split() if t not in special]
        return " ".join(words)


# ----------------------------------------------------------------------------------------------
# the LangChain tool


class GroundPhraseArgs(BaseModel):
    image_path: str = Field(description="Path of the image (a frame) to search, e.g. a pivot frame JPEG.")
    phrase: str = Field(description="Words naming the object to find, e.g. 'the dog on the left'.")
    box_threshold: float = Field(0.15, ge=0.0, le=1.0, description="Keep boxes scoring above this (0-1).")
    text_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="A word of the phrase counts as matched above this score (0-1)."
    )
    top_k: int = Field(10, ge=1, le=100, description="At most this many boxes, best first.")


def make_grounding_tool(get_detector: Callable[[], GroundingDetector]) -> StructuredTool:
    """A StructuredTool ``ground_phrase``: numbered candidate boxes for a phrase in one image."""
    from langchain_core.tools import StructuredTool, ToolException
    from PIL import Image, UnidentifiedImageError

    def ground_phrase(
        image_path: str,
        phrase: str,
        box_threshold: float = 0.15,
        text_threshold: float = 0.2,
        top_k: int = 10,
    ) -> list[dict[str, Any]]:
        path = Path(image_path).expanduser()
        if not path.is_file():
            raise ToolException(f"no image file at {image_path}; pass the path of an existing image")
        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise ToolException(f"{image_path} is not a readable image: {exc}") from None
        try:
            found = get_detector().detect([image], phrase, box_threshold, text_threshold, top_k)[0]
        except (ValueError, InputError) as exc:
            raise ToolException(" ".join(str(exc).split())) from None
        return [{"number": n, **d.to_dict()} for n, d in enumerate(found, start=1)]

    return StructuredTool.from_function(
        func=ground_phrase,
        name="ground_phrase",
        description=(
            "Find candidate boxes for the object a phrase names in one image with GroundingDINO. Returns a list "
            "of {number, box [x0, y0, x1, y1] in pixels, score, phrase}, best first; empty if nothing matches."
        ),
        args_schema=GroundPhraseArgs,
        handle_tool_error=True,
    )


# ----------------------------------------------------------------------------------------------
# the tiny random model (tests and the smoke profile)

_TINY_WORDS = """
the a an of and or in on at to from by with for as is are was be it its this that these those there here
who which what where when while than then not no one two three four five first second last other another
left right top bottom middle center front back behind near next beside between above below under over
up down inside outside around across along through into onto off away toward towards close far
big small large little tall short long wide thin fat old young new dark light bright white black red blue
green yellow orange purple pink brown gray grey gold silver striped spotted colored colorful
man woman boy girl child kid baby person people player rider driver lady guy men women children
dog cat horse cow sheep bird duck goose fish bear elephant giraffe zebra monkey lion tiger rabbit mouse
deer fox wolf pig goat camel snake turtle frog parrot owl eagle dolphin whale shark seal penguin
car truck bus bike bicycle motorcycle motorbike train boat ship plane airplane skateboard surfboard
ball kite frisbee racket bat umbrella bag box bottle cup chair table bed sofa couch door window wall
tree grass water road street floor ground sky snow sand field house building phone guitar piano drum
hand head arm leg foot face hat shirt jacket dress shoe glasses tail wing
square circle triangle rectangle object thing shape animal vehicle instrument toy
walking running jumping sitting standing moving turning holding riding playing eating looking lying
flying swimming climbing falling barking singing making sound talking crying laughing carrying pushing
pulling chasing following leading facing staying waiting shaking spinning rolling
walks runs jumps sits stands moves turns holds rides plays eats looks lies flies swims climbs falls
barks sings makes talks cries laughs carries pushes pulls chases follows leads faces stays waits
""".split()
_TINY_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_TINY_PUNCT = list(".,;:!?'\"-()/&0123456789")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_vocab() -> list[str]:
    """Special tokens, punctuation, letters, ##letters and common words: every lowercase word tokenizes."""
    vocab = _TINY_SPECIAL + _TINY_PUNCT + list(_LETTERS) + ["##" + c for c in _LETTERS]
    vocab += ["##s", "##ing", "##ed", "##er", "##ly"]
    return list(dict.fromkeys(vocab + _TINY_WORDS))


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight GroundingDINO and its processor into ``folder`` (no network, ~1 s)."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    vocab_path = folder / "vocab.txt"
    vocab_path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # positional: transformers 5 silently ignores vocab_file= and builds a 5-token vocabulary
    tokenizer = BertTokenizer(str(vocab_path))
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 256, "longest_edge": 384})

    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=256, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
        window_size=7, out_indices=[2, 3, 4],
    )  # fmt: skip
    text = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )  # fmt: skip
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=64, num_queries=30, encoder_layers=1,
        decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2, max_text_len=256,
    )  # fmt: skip
    model = GroundingDinoForObjectDetection(config).eval()
    with torch.no_grad():  # random dot products saturate the sigmoid; shrink them so scores spread
        norm = model.model.decoder.layer_norm
        norm.weight.mul_(0.05)
        norm.bias.zero_()
    model.save_pretrained(folder)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    (folder / "alref-smoke.json").write_text(json.dumps({"note": "random weights: boxes are meaningless"}))
