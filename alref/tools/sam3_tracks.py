"""Concept tracks: every instance of a noun phrase, detected and tracked over a whole video by SAM 3
(transformers ``Sam3VideoModel``).

alref runs the canonical usage (``processor.init_video_session(video)``, ``processor.add_text_prompt``,
``model.propagate_in_video_iterator(session)``, ``processor.postprocess_outputs(session, out)`` per frame,
from frame 0 forward) without the processor class, which needs torchvision:

- the session is a ``Sam3VideoInferenceSession`` whose ``processed_frames`` read and normalise the
  prepared uint8 frames of a frame store lazily, one per access (the video never lives in memory as
  float tensors), with ``max_vision_features_cache_size=1``: the image encoder runs once per frame and
  only the current frame's features are kept;
- the prompt is ``session.add_prompt(text)`` and its ids ``tokenizer(text, padding="max_length",
  max_length=32)``, exactly ``add_text_prompt``'s;
- the loop is ``propagate_in_video_iterator``'s, hot start included: each frame's output is held back
  until ``hotstart_delay`` frames later (all the rest at the last frame), objects the hot-start heuristics
  remove meanwhile are added to ``session.hotstart_removed_obj_ids``, and each output is post-processed
  when it comes out of the buffer, as a caller of the canonical iterator does;
- post-processing is ``postprocess_outputs``'s (:func:`postprocess`): low-resolution logits bilinear to
  the video size, ``> 0``, empty, suppressed and hot-start-removed objects dropped, boxes as torchvision's
  ``masks_to_boxes`` (xyxy, the last pixel row and column inclusive) of those masks, then the non-overlap
  constraint within each prompt (the object with the higher tracker score keeps a shared pixel).

Then, as transformers issue 46493 advises (one direction only loses quality: SAM 3's own predictor
propagates both ways), a reverse pass on the same session:
``model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=True)``, the frames
``start - 1`` down to 0, where ``start`` is the latest frame on which an object still tracked after the
forward pass was first detected (no reverse pass when that is frame 0). The model tracks every object
backwards from its memory of the later frames, detects on each frame as it does forward (new objects get
new ids) and runs its hot start in reverse (which, as in SAM 3's own code, also removes forward objects
unmatched on enough frames of both passes). :meth:`Sam3ConceptTracker.track` merges the two passes: the
forward pass's masks stay, the reverse pass fills the frames before an object's first detection (and
the forward pass's empty frames) without taking pixels the forward masks hold; objects only the reverse
pass created are dropped (the rules and why: :meth:`Sam3ConceptTracker.track`).

Between frames alref forgets what the model never reads again, so a long video keeps bounded state with
the same outputs (``tests/test_sam3.py`` compares them with the canonical run): the per-frame
``high_res_masks`` the tracker stores (nothing reads them after the frame), tracked (non-conditioning)
outputs older than ``memory_window`` frames (the tracker reads ``num_maskmem - 1`` memory frames and
``max_object_pointers_in_encoder - 1`` pointers back), and past frames' entries of the session's
per-frame tracker scores and suppression sets (only the current frame's are read; the canonical session
deep-copies the whole history on every frame), and the per-object bookkeeping of objects the hot start
removed (scores, first frames, keep-alive counters, unmatched frames, overlaps as the later object: the
model copies or scans these every frame and reads them for live objects only). Conditioning outputs
(an object's first frame and its reconditioned frames) stay: their object pointers are all read. When a
reverse pass follows, the forward pass also keeps what that reads, and the reverse pass's outputs equal
the canonical session's too (an object's score is left out once the hot start has removed it): the
tracked outputs of the ``memory_window`` frames from each frame where it may still start (the latest
first detection of an object the hot start can no longer remove, and the first detections of those
it still can: at most ``hotstart_delay + 2 * memory_window + 1`` frames in all), and each frame's tracker
scores and suppression set, put aside and given back to the session just before the reverse pass runs
that frame (the model adds to them). The reverse pass forgets the same way, ahead of the frame instead
of behind.

:class:`ConceptTracks` keeps the result as one :class:`~alref.core.records.Track` per object id and its
masks as COCO RLE, never as a dense video, the RLE in an unnamed temporary file (the system's temporary
folder, ``TMPDIR``) and in memory only where each lies, as the run's own masks are kept
(:class:`~alref.media.masks.SpooledRles`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alref.core.records import Track
from alref.media.masks import RleSpool, SpooledRles
from alref.media.writers import mask_to_rle, rle_to_mask
from alref.tools.loading import ModelSource, load_once, resolve_device, wrap_load_error
from alref.tools.sam3_common import (
    autocast,
    check_phrase,
    encode_text,
    load_tokenizer,
    resolve_precision,
    storage_devices,
    video_preprocessing,
)
from alref.tools.segmentation import FrameStore, _config_side, _NormalisedFrames, resize_frame

JSON_FORMAT = "alref-concept-tracks/1"
#: what transformers' Sam3VideoModel leaves out without its cv-utils kernel (alref's one line instead of its warning)
NO_KERNEL_NOTE = (
    "SAM 3: transformers' cv-utils kernel is not loaded ({reason}), so, as transformers does without it, the "
    "concept tracks skip mask NMS between new detections, hole filling and speck removal; masks can differ "
    "from a setup where the kernel loads"
)
_TRANSFORMERS_PREFIX = "Failed to load cv_utils kernel (your torch/cuda setup may not be supported): "
_kernel_reason = ["tried earlier in this process"]


def load_cv_utils_kernel() -> str | None:
    """Try transformers' cv-utils kernel (mask NMS and connected components for ``Sam3VideoModel``) now,
    as the model would on its first frame, without the warning transformers then prints on every run.
    Returns None when it loaded (or this transformers has no such kernel), else alref's one-line note."""
    import logging

    from transformers.models.sam3_video import modeling_sam3_video as sam3_video

    load = getattr(sam3_video, "_load_cv_utils_kernel_once", None)
    if load is None or not hasattr(sam3_video, "cv_utils_kernel"):
        return None
    reasons: list[str] = []

    def swallow(record: logging.LogRecord) -> bool:
        reasons.append(record.getMessage())
        return False

    if sam3_video.cv_utils_kernel is None:  # not tried yet in this process
        kernels = logging.getLogger("kernels")  # the kernels library's own warnings of the same attempt
        level = kernels.level
        sam3_video.logger.addFilter(swallow)
        kernels.setLevel(logging.ERROR)
        try:
            load()
        finally:
            sam3_video.logger.removeFilter(swallow)
            kernels.setLevel(level)
    if sam3_video.cv_utils_kernel:
        return None
    if reasons:  # the first attempt's reason, kept for the models loaded later in this process
        reason = reasons[0].removeprefix(_TRANSFORMERS_PREFIX)
        _kernel_reason[0] = " ".join(reason.split(". ")[0].split())[:160]
    return NO_KERNEL_NOTE.format(reason=_kernel_reason[0])


#: the canonical session's default; only the current frame's image features are kept
FEATURE_CACHE_FRAMES = 1


# ----------------------------------------------------------------------------------------------
# post-processing (Sam3VideoProcessor.postprocess_outputs without torchvision)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """torchvision's ``masks_to_boxes`` for non-empty N x H x W masks: [min x, min y, max x, max y], float32."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=2).to(torch.uint8), masks.any(dim=1).to(torch.uint8)
    y0, x0 = rows.argmax(dim=1), cols.argmax(dim=1)
    y1, x1 = height - 1 - rows.flip(1).argmax(dim=1), width - 1 - cols.flip(1).argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)


def _non_overlapping(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """A pixel stays with the object whose mask covers it with the highest score (first on ties), if > 0."""
    if masks.shape[0] <= 1:
        return masks
    claim = torch.where(
        masks, scores[:, None, None], torch.zeros((), dtype=scores.dtype, device=masks.device)
    )
    winner = (
        claim.argmax(dim=0, keepdim=True) == torch.arange(masks.shape[0], device=masks.device)[:, None, None]
    )
    return masks & winner & (claim > 0)


def postprocess(session: Any, out: Any) -> dict[str, Any]:
    """``Sam3VideoProcessor.postprocess_outputs(session, out)``: object_ids, scores, boxes, masks (video
    resolution) and prompt_to_obj_ids, with the same dtypes."""
    height, width = session.video_height, session.video_width
    by_id = out.obj_id_to_mask
    ids = sorted(by_id)
    if not ids:
        obj_ids = torch.zeros(0, dtype=torch.int64)
        scores = torch.zeros(0, dtype=torch.float32)
        masks = torch.zeros(0, height, width, dtype=torch.bool)
        boxes = torch.zeros(0, 4, dtype=torch.float32)
        tracker = torch.zeros(0, dtype=torch.float32)
    else:
        obj_ids = torch.tensor(ids, dtype=torch.int64)
        scores = torch.tensor([out.obj_id_to_score[i] for i in ids])
        tracker = torch.tensor([out.obj_id_to_tracker_score.get(i, 0.0) for i in ids])
        low = torch.cat([by_id[i] for i in ids], dim=0)
        masks = F.interpolate(low.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)
        masks = masks.squeeze(1) > 0
        keep = masks.any(dim=(1, 2)).cpu()
        suppressed, removed = out.suppressed_obj_ids or (), session.hotstart_removed_obj_ids
        hidden = [i in suppressed or i in removed for i in ids]  # not a copy of every id removed so far
        if any(hidden):
            keep &= ~torch.tensor(hidden)
        index = torch.nonzero(keep, as_tuple=True)[0]
        obj_ids, scores, tracker = obj_ids[index], scores[index], tracker[index]
        masks = masks[index.to(masks.device)]
        boxes = masks_to_boxes(masks)
    if masks.shape[0] > 1:  # the constraint holds within each prompt's objects
        prompts = torch.tensor([session.obj_id_to_prompt_id[int(i)] for i in obj_ids.tolist()])
        tracker = tracker.to(masks.device)
        constrained = masks.clone()
        for prompt in prompts.unique(sorted=True):
            members = torch.nonzero(prompts == prompt, as_tuple=True)[0].to(masks.device)
            constrained[members] = _non_overlapping(masks[members], tracker[members])
        masks = constrained
    grouped: dict[str, list[int]] = {}
    for obj_id in obj_ids.tolist():
        grouped.setdefault(session.prompts[session.obj_id_to_prompt_id[obj_id]], []).append(obj_id)
    return {
        "object_ids": obj_ids,
        "scores": scores,
        "boxes": boxes,
        "masks": masks,
        "prompt_to_obj_ids": grouped,
    }


# ----------------------------------------------------------------------------------------------
# the result


def temporary_spool() -> RleSpool:
    """Where concept tracks keep their masks' RLE: an unnamed file in the system's temporary folder
    (``TMPDIR``); a tracker knows no output folder."""
    return RleSpool(Path(tempfile.gettempdir()))


class ConceptTracks:
    """The tracks SAM 3 found for one concept: :class:`Track` records and their masks as COCO RLE."""

    def __init__(
        self,
        concept: str,
        height: int,
        width: int,
        num_frames: int,
        tracks: Sequence[Track],
        masks: Mapping[int, Mapping[int, Mapping[str, Any]]],
    ) -> None:
        self.concept, self.height, self.width, self.num_frames = (
            concept,
            int(height),
            int(width),
            int(num_frames),
        )
        self.tracks: list[Track] = sorted(tracks, key=lambda t: t["id"])
        self._masks: dict[int, SpooledRles] = {}
        spool: RleSpool | None = None
        for t, frames in masks.items():
            if isinstance(frames, SpooledRles):  # the builder's, in its own spool already
                self._masks[int(t)] = frames
                continue
            spool = spool or temporary_spool()
            self._masks[int(t)] = spooled = SpooledRles(spool, (self.height, self.width))
            for f, rle in frames.items():
                spooled[int(f)] = rle
        for track in self.tracks:
            if sorted(self._masks.get(track["id"], {})) != track["frames"]:
                raise ValueError(f"track {track['id']}: its masks are not on its frames {track['frames']}")

    @property
    def ids(self) -> list[int]:
        return [t["id"] for t in self.tracks]

    def track(self, track_id: int) -> Track:
        for track in self.tracks:
            if track["id"] == track_id:
                return track
        raise KeyError(f"no track {track_id} for '{self.concept}' (tracks: {self.ids})")

    def mask(self, track_id: int, frame: int) -> np.ndarray:
        """The track's HxW bool mask on ``frame`` (all False where the track has no mask)."""
        self.track(track_id)
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} is outside the video (0..{self.num_frames - 1})")
        rle = self._masks[track_id].get(frame)
        return rle_to_mask(rle) if rle is not None else np.zeros((self.height, self.width), dtype=bool)

    def to_json(self, streamed: bool = False) -> dict[str, Any]:
        """The saved form (:meth:`from_json` reads it). With ``streamed`` each track's masks are a mapping
        that reads one RLE at a time from the spool, for ``atomic_write_json_stream``; else plain dicts."""
        masks: dict[str, Mapping[str, Any]] = {str(t): _FramesJson(m) for t, m in sorted(self._masks.items())}
        return {
            "format": JSON_FORMAT,
            "concept": self.concept,
            "height": self.height,
            "width": self.width,
            "num_frames": self.num_frames,
            "tracks": [dict(t) for t in self.tracks],
            "masks": masks if streamed else {t: dict(m.items()) for t, m in masks.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConceptTracks:
        if not isinstance(data, Mapping) or data.get("format") != JSON_FORMAT:
            raise ValueError(f"not saved concept tracks (expected format {JSON_FORMAT})")
        try:
            tracks: list[Track] = [
                {"id": int(t["id"]), "concept": str(t["concept"]), "score": float(t["score"]),
                 "frames": [int(f) for f in t["frames"]], "boxes": {str(k): [float(v) for v in b]
                 for k, b in t["boxes"].items()}, "area": {str(k): int(v) for k, v in t["area"].items()}}
                for t in data["tracks"]
            ]  # fmt: skip
            masks = {int(t): {int(f): rle for f, rle in m.items()} for t, m in data["masks"].items()}
            return cls(str(data["concept"]), data["height"], data["width"], data["num_frames"], tracks, masks)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"saved concept tracks are incomplete: {type(exc).__name__}: {exc}") from None


class _FramesJson(Mapping[str, Mapping[str, Any]]):
    """One track's spooled masks as the saved form has them: str frame keys, in frame order."""

    def __init__(self, by_frame: SpooledRles) -> None:
        self._by_frame = by_frame

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return self._by_frame[int(key)]

    def __iter__(self) -> Iterator[str]:
        return (str(frame) for frame in sorted(self._by_frame))

    def __len__(self) -> int:
        return len(self._by_frame)


class _TrackBuilder:
    """Collects post-processed frames into tracks: a frame counts for an object where its mask is not empty.

    :meth:`add` takes the forward pass's frames, :meth:`fill` then the reverse pass's (see
    :meth:`Sam3ConceptTracker.track` for the rules)."""

    def __init__(self, concept: str, height: int, width: int, num_frames: int) -> None:
        self.concept, self.height, self.width, self.num_frames = concept, height, width, num_frames
        self.tracks: dict[int, Track] = {}
        #: every candidate's RLE by frame, in a temporary file (a long video's candidates are many)
        self.masks: dict[int, SpooledRles] = {}
        self._spool: RleSpool | None = None

    def add(self, frame: int, processed: Mapping[str, Any]) -> None:
        masks = processed["masks"].cpu().numpy()
        boxes = processed["boxes"].cpu().tolist()
        for k, (obj_id, score) in enumerate(zip(processed["object_ids"].tolist(), processed["scores"].tolist(),
                                                strict=True)):  # fmt: skip
            self._put(obj_id, frame, masks[k], boxes[k], score)

    def fill(self, frame: int, processed: Mapping[str, Any], forward_ids: Container[int]) -> None:
        """A reverse-pass frame: the masks of objects the forward pass created (``forward_ids``) on a frame
        where the forward pass gave them none, less the pixels that forward masks hold on that frame."""
        claimed = np.zeros((self.height, self.width), dtype=bool)
        for by_frame in self.masks.values():
            if frame in by_frame:
                claimed |= rle_to_mask(by_frame[frame])
        masks = processed["masks"].cpu().numpy()
        for k, (obj_id, score) in enumerate(zip(processed["object_ids"].tolist(), processed["scores"].tolist(),
                                                strict=True)):  # fmt: skip
            if obj_id not in forward_ids or frame in self.masks.get(obj_id, {}):
                continue
            mask = masks[k] & ~claimed
            if mask.any():
                box = masks_to_boxes(torch.from_numpy(mask)[None])[0].tolist()
                self._put(obj_id, frame, mask, box, score)

    def _put(self, obj_id: int, frame: int, mask: np.ndarray, box: Sequence[float], score: float) -> None:
        area = int(mask.sum())
        if area == 0:  # emptied by the non-overlap constraint
            return
        track = self.tracks.setdefault(
            obj_id, {"id": obj_id, "concept": self.concept, "score": float(score), "frames": [], "boxes": {},
                     "area": {}},
        )  # fmt: skip
        track["score"] = max(track["score"], float(score))
        track["frames"].append(frame)
        track["boxes"][str(frame)] = [float(v) for v in box]
        track["area"][str(frame)] = area
        if obj_id not in self.masks:
            self._spool = self._spool or temporary_spool()
            self.masks[obj_id] = SpooledRles(self._spool, (self.height, self.width))
        self.masks[obj_id][frame] = mask_to_rle(mask)

    def build(self) -> ConceptTracks:
        for track in self.tracks.values():  # reverse-pass frames came last, latest first
            track["frames"].sort()
            track["boxes"] = {str(f): track["boxes"][str(f)] for f in track["frames"]}
            track["area"] = {str(f): track["area"][str(f)] for f in track["frames"]}
        return ConceptTracks(self.concept, self.height, self.width, self.num_frames, list(self.tracks.values()),
                             self.masks)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the tracker


class Sam3ConceptTracker:
    """A loaded ``Sam3VideoModel`` and its tokenizer; :meth:`track` runs one concept over a video."""

    def __init__(self, source: ModelSource, model: Any, tokenizer: Any, device: str, dtype: torch.dtype,
                 preprocessing: tuple[tuple[float, ...], tuple[float, ...], int, float], storage_device: str,
                 state_device: str) -> None:  # fmt: skip
        self.source, self.model, self.tokenizer, self.device, self.dtype = (
            source,
            model,
            tokenizer,
            device,
            dtype,
        )
        self.mean, self.std, self.image_size, self.rescale_factor = preprocessing
        self.storage_device, self.state_device = storage_device, state_device
        tracker = model.config.tracker_config
        #: tracked outputs farther back than this are never read again (memory frames and object pointers)
        self.memory_window = max(int(tracker.num_maskmem), int(tracker.max_object_pointers_in_encoder))
        #: None, or what the model skips without transformers' cv-utils kernel (one line; a run notes it)
        self.skipped_postprocessing = load_cv_utils_kernel()

    @classmethod
    def load(cls, source: ModelSource, device: str, precision: str = "auto", offload_video: bool = False,
             offload_state: bool = False) -> Sam3ConceptTracker:  # fmt: skip
        """Load once per process (per folder, device and options); a folder that does not load is a
        ModelLoadError naming the model."""
        device = resolve_device(device)
        key = ("concept_tracks", str(source.path), device, precision, offload_video, offload_state)
        return load_once(key, lambda: cls._load(source, device, precision, offload_video, offload_state))

    @classmethod
    def _load(cls, source: ModelSource, device: str, precision: str, offload_video: bool,
              offload_state: bool) -> Sam3ConceptTracker:  # fmt: skip
        dtype = resolve_precision(precision, device)
        from transformers import Sam3VideoModel

        try:  # weights stay float32; lower precision is applied with torch.autocast per call
            model = Sam3VideoModel.from_pretrained(source.path, dtype=torch.float32).to(device).eval()
            side = _config_side(model.config.detector_config.vision_config.backbone_config.image_size)
            preprocessing = video_preprocessing(Path(source.path), side)
            tokenizer = load_tokenizer(Path(source.path))
        except Exception as exc:  # noqa: BLE001 - any failure here is "this folder does not load"
            raise wrap_load_error(source, exc) from exc
        storage, state = storage_devices(device, offload_video, offload_state)
        return cls(source, model, tokenizer, device, dtype, preprocessing, storage, state)

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> uint8 image_size x image_size x 3, resized as SAM 3's video processor does."""
        return resize_frame(frame, self.image_size)

    def check_phrase(self, concept: str) -> str:
        """The prompt text, or an InputError if it is over SAM 3's 32 tokens."""
        return check_phrase(self.tokenizer, concept)

    def start_session(self, frames: FrameStore, height: int, width: int, concept: str) -> Any:
        """The canonical session after ``init_video_session`` and ``add_text_prompt(concept)``."""
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        text = self.check_phrase(concept)
        if len(frames) < 1 or height < 1 or width < 1:
            raise ValueError(
                f"a video needs at least one frame and a positive size, got {len(frames)}, {height}x{width}"
            )
        session = Sam3VideoInferenceSession(
            video=None, video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.state_device, video_storage_device=self.storage_device,
            dtype=torch.float32, max_vision_features_cache_size=FEATURE_CACHE_FRAMES,
        )  # fmt: skip
        session.processed_frames = _NormalisedFrames(  # type: ignore[assignment]
            frames,
            self.mean,
            self.std,
            self.image_size,
            self.storage_device,
            torch.float32,
            self.rescale_factor,
        )
        prompt_id = session.add_prompt(text)
        ids, attention = encode_text(self.tokenizer, [text], self.device)
        session.prompt_input_ids[prompt_id], session.prompt_attention_masks[prompt_id] = ids, attention
        return session

    def outputs(self, frames: FrameStore, height: int, width: int, concept: str,
                progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any, dict[str, Any]]]:  # fmt: skip
        """(frame, the model's output, its post-processed form) for every frame, in order, as the canonical
        iterator and ``postprocess_outputs`` give them; ``progress(1)`` after each model call. Forward only:
        :meth:`passes` adds the reverse pass."""
        for _, frame, out, processed in self.passes(
            frames, height, width, concept, progress, both_ways=False
        ):
            yield frame, out, processed

    def passes(self, frames: FrameStore, height: int, width: int, concept: str,
               progress: Callable[[int], None] | None = None,
               both_ways: bool = True) -> Iterator[tuple[bool, int, Any, dict[str, Any]]]:  # fmt: skip
        """(reverse, frame, the model's output, its post-processed form): the forward pass, as
        :meth:`outputs`, then, with ``both_ways``, the reverse pass on the same session,
        ``propagate_in_video_iterator(session, start_frame_idx=start, reverse=True)`` (frames ``start - 1``
        down to 0, hot start included) where ``start`` is :meth:`reverse_start` after the forward pass;
        nothing when that is frame 0. ``progress(1)`` after each model call of the forward pass only: the
        reverse pass's length is known when the forward pass ends."""
        session = self.start_session(frames, height, width, concept)
        stash: dict[int, tuple[Any, Any]] | None = {} if both_ways else None
        for out in self._propagate(session, progress, stash=stash):
            with torch.inference_mode():
                processed = postprocess(session, out)
            yield False, out.frame_idx, out, processed
        if stash is None:
            return
        start = self.reverse_start(session)
        for frame in [f for f in stash if f >= start]:  # the reverse pass does not reach these frames
            del stash[frame]
        for out in self._propagate(session, None, reverse_from=start, stash=stash):
            with torch.inference_mode():
                processed = postprocess(session, out)
            yield True, out.frame_idx, out, processed

    def track(self, frames: FrameStore, height: int, width: int, concept: str,
              progress: Callable[[int], None] | None = None, both_ways: bool = True) -> ConceptTracks:  # fmt: skip
        """Every instance of ``concept`` over all frames of the store (prepared with :meth:`prepare_frame`).

        With ``both_ways`` (the default) the forward pass is followed by the reverse pass of :meth:`passes`
        (transformers issue 46493: one direction only loses quality), so an object first detected on a
        later frame also gets the frames before it. The tracks are then merged:

        - an object's mask on a frame is the forward pass's where that has one (not empty); else the
          reverse pass's, less the pixels that the forward pass's masks of other objects hold on that
          frame, so tracks still never overlap on a frame (post-processing gives that within each pass),
          and its box is that mask's;
        - only objects the forward pass created are filled. An object the reverse pass creates (a new id)
          is dropped: the detector's output on a frame does not depend on the direction, and the forward
          pass, on that same frame, matched that detection to one of its own tracks (or was at its
          object limit), so it would be a second track of the same thing;
        - objects the reverse pass's hot start removes, as SAM 3 does (transformers and the reference
          code alike count their unmatched frames over both passes), keep their forward frames and get
          no reverse frames.
        """
        text = self.check_phrase(concept)
        builder = _TrackBuilder(text, height, width, len(frames))
        forward_ids: set[int] = set()
        for reverse, frame, out, processed in self.passes(frames, height, width, text, progress, both_ways):
            if reverse:
                builder.fill(frame, processed, forward_ids)
            else:
                forward_ids.update(out.obj_id_to_mask)  # every object appears on the frame that created it
                builder.add(frame, processed)
        return builder.build()

    @staticmethod
    def reverse_start(session: Any) -> int:
        """Where the reverse pass starts (it runs the frames before it): the latest frame on which an
        object that the session still tracks was first detected; 0 (no reverse pass) without objects."""
        return max((int(session.obj_first_frame_idx[obj_id]) for obj_id in session.obj_ids), default=0)

    # ------------------------------------------------------------------------------------------

    def _propagate(self, session: Any, progress: Callable[[int], None] | None, reverse_from: int | None = None,
                   stash: dict[int, tuple[Any, Any]] | None = None) -> Iterator[Any]:  # fmt: skip
        """``propagate_in_video_iterator(session)`` (frame 0 forward, every frame), or with ``reverse_from``
        ``propagate_in_video_iterator(session, start_frame_idx=reverse_from, reverse=True)``, forgetting
        stale state. ``stash`` (a dict) means a reverse pass follows: the forward pass keeps what that
        reads (:meth:`_reverse_starts`) and stores each frame's tracker scores and suppressed objects there,
        the reverse pass puts them back into the session before it runs that frame (the model extends
        them, as it extends the canonical session's full history)."""
        reverse = reverse_from is not None
        order = range(reverse_from - 1, -1, -1) if reverse_from is not None else range(session.num_frames)
        delay = int(self.model.hotstart_delay)
        held: list[Any] = []
        for frame_idx in order:
            if reverse and stash and frame_idx in stash:
                scores, suppressed = stash.pop(frame_idx)
                if scores:
                    session.obj_id_to_tracker_score_frame_wise[frame_idx] = scores
                if suppressed:
                    session.suppressed_obj_ids[frame_idx] = suppressed
            with torch.inference_mode(), autocast(self.device, self.dtype):
                out = self.model(inference_session=session, frame_idx=frame_idx, reverse=reverse)
            keep = self._reverse_starts(session, frame_idx) if stash is not None and not reverse else set()
            scores, suppressed = self._forget(session, frame_idx, reverse, keep)
            if stash is not None and not reverse and (scores or suppressed):
                stash[frame_idx - 1] = (scores, suppressed)
            if progress is not None:
                progress(1)
            if delay <= 0:
                yield out
                continue
            held.append(out)
            session.hotstart_removed_obj_ids.update(out.removed_obj_ids)
            if frame_idx == order[-1]:
                ready, held = held, []
            elif len(held) >= delay:
                ready, held = held[:1], held[1:]
            else:
                ready = []
            yield from ready

    def _reverse_starts(self, session: Any, frame_idx: int) -> set[int]:
        """The frames the reverse pass may still start at, seen from forward frame ``frame_idx``: the first
        frames of the tracked objects that the hot start may still remove (first detected less than
        ``hotstart_delay`` frames ago), and the latest first frame of those it no longer can."""
        delay = int(self.model.hotstart_delay)
        firsts = [int(session.obj_first_frame_idx[obj_id]) for obj_id in session.obj_ids]
        settled = [first for first in firsts if first <= frame_idx - delay]
        return {first for first in firsts if first > frame_idx - delay} | (
            {max(settled)} if settled else set()
        )

    def _forget(self, session: Any, frame_idx: int, reverse: bool = False,
                keep: Iterable[int] = ()) -> tuple[Any, Any]:  # fmt: skip
        """Drop what the model never reads again after ``frame_idx``: this frame's ``high_res_masks``,
        tracked outputs ``memory_window`` or more frames behind (ahead of it in reverse) except those within
        ``memory_window`` frames from a frame in ``keep`` (where a reverse pass may start: it reads them),
        and the previous frame's tracker scores and suppressed objects, which it returns."""
        window, sign = self.memory_window, -1 if reverse else 1
        starts = list(keep)
        for outputs in session.output_dict_per_obj.values():
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                outputs[kind].get(frame_idx, {}).pop("high_res_masks", None)
            tracked = outputs["non_cond_frame_outputs"]
            stale = [
                f for f in tracked
                if sign * (frame_idx - f) >= window and not any(s <= f < s + window for s in starts)
            ]  # fmt: skip
            for f in stale:
                del tracked[f]
        self._forget_removed(session)
        previous = frame_idx - sign
        return (
            session.obj_id_to_tracker_score_frame_wise.pop(previous, None),
            session.suppressed_obj_ids.pop(previous, None),
        )

    @staticmethod
    def _forget_removed(session: Any) -> None:
        """Drop the bookkeeping of objects the hot start removed: a removed object is never tracked,
        matched or output again (new detections get new ids), and the model reads these entries only for
        live objects. It copies ``obj_id_to_score`` and scans ``unmatched_frame_inds`` and the overlap pairs
        on every frame, so kept whole they make each frame cost more the more objects the video has seen
        (the random smoke detector adds two a frame). Kept: ``removed_obj_ids`` (and alref's
        ``hotstart_removed_obj_ids``), and overlap pairs whose later object is alive (they still count)."""
        removed = session.removed_obj_ids
        scores = session.obj_id_to_score  # the frame's output holds this very dict: replaced, not changed
        if any(obj_id in removed for obj_id in scores):
            session.obj_id_to_score = {o: score for o, score in scores.items() if o not in removed}
        for by_object in (session.obj_first_frame_idx, session.trk_keep_alive, session.unmatched_frame_inds):
            for obj_id in [o for o in by_object if o in removed]:
                del by_object[obj_id]
        pairs = session.overlap_pair_to_frame_inds
        for pair in [p for p in pairs if p[1] in removed]:
            del pairs[pair]
