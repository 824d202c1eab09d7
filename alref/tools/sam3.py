"""SAM 3 (``facebook/sam3``, one checkpoint) behind alref's tool interfaces:

- :class:`Sam3ConceptTracker` (``Sam3VideoModel``, role ``concept_tracks``, tool ``sam3-tracks``): every
  instance of a noun phrase tracked over the whole video, as :class:`ConceptTracks` (see
  :mod:`alref.tools.sam3_tracks`);
- :class:`Sam3Grounder` (``Sam3Model``, role ``grounding``, tool ``sam3``): boxes for a phrase in images,
  the same ``detect`` as GroundingDINO's;
- :class:`Sam3TrackerSegmenter` (``Sam3TrackerVideoModel``, role ``segmentation``, tool ``sam3-tracker``):
  box prompts and propagation with exactly SAM 2's session (transformers derives this model from
  ``Sam2VideoModel``; their code and session differ only in names), so alref's SAM 2 session code runs it.

Each loads once per process from a Hugging Face id or a local ``save_pretrained`` folder; the smoke
model ``smoke:sam3`` (:func:`build_tiny`) is a tiny random checkpoint of the same layout. No processor
class is used (they need torchvision); :mod:`alref.tools.sam3_common` reproduces what they compute.

Grounding, compared with ``Sam3Processor`` + ``Sam3Model`` + ``post_process_object_detection``:
``scores = sigmoid(pred_logits) * sigmoid(presence_logits)``, kept where ``> box_threshold``, boxes
(xyxy, relative) times the image's width and height. alref departs on purpose as GroundingDINO's tool
does: boxes are clipped to the image, empty or non-finite ones dropped, the rest sorted best first and
cut at ``top_k``; ``text_threshold`` is unused (SAM 3 does not match words) and ``phrase`` is the whole
prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alref.core.records import Detection
from alref.tools.grounding import check_detect_args
from alref.tools.loading import ModelSource, load_once, resolve_device, wrap_load_error
from alref.tools.sam3_common import (
    TEXT_TOKENS,
    check_phrase,
    encode_text,
    image_preprocessing,
    load_tokenizer,
    normalise,
    resolve_precision,
    storage_devices,
    video_preprocessing,
)
from alref.tools.sam3_tiny import build_tiny
from alref.tools.sam3_tracks import ConceptTracks, Sam3ConceptTracker, postprocess
from alref.tools.segmentation import (
    FrameStore,
    Sam2VideoSegmenter,
    SegmentationSession,
    _config_side,
    resize_frame,
)

__all__ = [
    "ConceptTracks",
    "Sam3ConceptTracker",
    "Sam3Grounder",
    "Sam3TrackerSegmenter",
    "Sam3TrackerSession",
]
__all__ += ["build_tiny", "postprocess"]


class Sam3Grounder:
    """A loaded ``Sam3Model`` and tokenizer: concept detection on images, GroundingDetector's interface."""

    max_text_tokens = TEXT_TOKENS

    def __init__(self, source: ModelSource, model: Any, tokenizer: Any, device: str,
                 preprocessing: tuple[tuple[float, ...], tuple[float, ...], int, float]) -> None:  # fmt: skip
        self.source, self.model, self.tokenizer, self.device = source, model, tokenizer, device
        self.mean, self.std, self.image_size, self.rescale_factor = preprocessing

    @classmethod
    def load(cls, source: ModelSource, device: str) -> Sam3Grounder:
        """Load once per process (per folder and device); float32, as GroundingDINO runs."""
        device = resolve_device(device)
        return load_once(("grounding-sam3", str(source.path), device), lambda: cls._load(source, device))

    @classmethod
    def _load(cls, source: ModelSource, device: str) -> Sam3Grounder:
        from transformers import Sam3Model

        try:
            model = Sam3Model.from_pretrained(source.path, dtype=torch.float32).to(device).eval()
            side = _config_side(model.config.vision_config.backbone_config.image_size)
            preprocessing = image_preprocessing(Path(source.path), side)
            tokenizer = load_tokenizer(Path(source.path))
        except Exception as exc:  # noqa: BLE001 - any failure here is "this folder does not load"
            raise wrap_load_error(source, exc) from exc
        return cls(source, model, tokenizer, device, preprocessing)

    def check_phrase(self, phrase: str) -> None:
        """A phrase SAM 3 can read whole, or an InputError (one line) that says the 32-token limit."""
        check_phrase(self.tokenizer, phrase)

    def pixel_values(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """B x 3 x side x side float32, as ``Sam3Processor(images=...)`` makes them."""
        return torch.stack([
            normalise(resize_frame(image, self.image_size), self.mean, self.std, self.rescale_factor, self.device)
            for image in images
        ])  # fmt: skip

    def raw_outputs(self, images: Sequence[np.ndarray], phrase: str) -> Any:
        """``Sam3Model``'s output for a batch of images and one phrase (``Sam3ImageSegmentationOutput``)."""
        text = check_phrase(self.tokenizer, phrase)
        ids, attention = encode_text(self.tokenizer, [text] * len(images), self.device)
        with torch.inference_mode():
            return self.model(pixel_values=self.pixel_values(images), input_ids=ids, attention_mask=attention)

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
        text = check_phrase(self.tokenizer, phrase)
        check_detect_args(images, top_k, batch_size)
        results: list[list[Detection]] = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            out = self.raw_outputs(chunk, text)
            sizes = [image.shape[:2] for image in chunk]
            for found, (h, w) in zip(
                post_process_object_detection(out, box_threshold, sizes), sizes, strict=True
            ):
                results.append(_to_detections(found, h, w, top_k, text))
        return results


def post_process_object_detection(
    out: Any, threshold: float, target_sizes: Sequence[tuple[int, int]]
) -> list[dict]:
    """``Sam3Processor.post_process_object_detection``: scores and boxes in pixels, kept where > threshold."""
    scores = out.pred_logits.sigmoid()
    if out.presence_logits is not None:
        scores = scores * out.presence_logits.sigmoid()
    heights = torch.tensor([h for h, _ in target_sizes])
    widths = torch.tensor([w for _, w in target_sizes])
    scale = torch.stack([widths, heights, widths, heights], dim=1).unsqueeze(1).to(out.pred_boxes.device)
    boxes = out.pred_boxes * scale
    return [
        {"scores": s[s > threshold], "boxes": b[s > threshold]} for s, b in zip(scores, boxes, strict=True)
    ]


def _to_detections(found: dict, h: int, w: int, top_k: int, phrase: str) -> list[Detection]:
    """Clipped to the image, empty or non-finite boxes dropped, best first, at most top_k (alref's choice)."""
    scores = found["scores"].float().cpu().numpy()
    boxes = np.clip(found["boxes"].float().cpu().numpy().reshape(-1, 4), 0.0, [w, h, w, h])
    detections = []
    for k in np.argsort(-scores, kind="stable"):
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        if not (x1 > x0 and y1 > y0 and np.isfinite(scores[k])):
            continue
        detections.append(Detection((x0, y0, x1, y1), float(scores[k]), phrase))
        if len(detections) == top_k:
            break
    return detections


# ----------------------------------------------------------------------------------------------
# box prompts: SAM 2's session over Sam3TrackerVideoModel


class Sam3TrackerSession(SegmentationSession):
    """:class:`~alref.tools.segmentation.SegmentationSession` (same semantics, see that module) over a
    ``Sam3TrackerVideoInferenceSession``."""

    def __init__(self, segmenter: Sam2VideoSegmenter, frames: FrameStore, height: int, width: int) -> None:
        super().__init__(segmenter, frames, height, width)
        from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
            Sam3TrackerVideoInferenceSession,
        )

        processed = self.state.processed_frames  # the lazily normalising view the SAM 2 session set up
        self.state = Sam3TrackerVideoInferenceSession(
            video=None, video_height=height, video_width=width, inference_device=segmenter.device,
            inference_state_device=segmenter.state_device, video_storage_device=segmenter.storage_device,
            dtype=torch.float32, max_vision_features_cache_size=1,
        )  # fmt: skip
        self.state.processed_frames = processed


class Sam3TrackerSegmenter(Sam2VideoSegmenter):
    """A loaded ``Sam3TrackerVideoModel`` with the SAM 2 segmenter's interface (``image_size``,
    ``prepare_frame``, ``start_session`` -> ``add_box``, ``propagate``, ``remove_object``, ``reset``)."""

    @classmethod
    def load(cls, source: ModelSource, device: str, precision: str = "auto", offload_video: bool = False,
             offload_state: bool = False) -> Sam3TrackerSegmenter:  # fmt: skip
        device = resolve_device(device)
        key = ("segmentation-sam3", str(source.path), device, precision, offload_video, offload_state)
        return load_once(key, lambda: cls._load(source, device, precision, offload_video, offload_state))

    @classmethod
    def _load(cls, source: ModelSource, device: str, precision: str, offload_video: bool,
              offload_state: bool) -> Sam3TrackerSegmenter:  # fmt: skip
        dtype = resolve_precision(precision, device)
        from transformers import Sam3TrackerVideoModel

        try:  # from facebook/sam3 transformers maps the detector's backbone into the tracker's encoder
            model = Sam3TrackerVideoModel.from_pretrained(source.path, dtype=torch.float32).to(device).eval()
            mean, std, side, rescale = video_preprocessing(
                Path(source.path), _config_side(model.config.image_size)
            )
        except Exception as exc:  # noqa: BLE001 - any failure here is "this folder does not load"
            raise wrap_load_error(source, exc) from exc
        storage, state = storage_devices(device, offload_video, offload_state)
        return cls(source, model, device, dtype, side, mean, std, storage, state, rescale)

    def start_session(self, frames: FrameStore, height: int, width: int) -> Sam3TrackerSession:
        return Sam3TrackerSession(self, frames, height, width)
