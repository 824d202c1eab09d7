"""Video segmentation with SAM 2 (transformers ``Sam2VideoModel``): box prompts, then propagation.

alref runs SAM 2 exactly as transformers does: what ``Sam2VideoProcessor`` and the canonical session
API (``Sam2VideoInferenceSession``, ``model(inference_session=..., frame_idx=...)``,
``model.propagate_in_video_iterator``) compute, alref computes too (``tests/test_segmentation.py``
compares mask logits and memory on the same weights and pixels: equal to the bit on CPU). No
processor class is used (``Sam2VideoProcessor`` needs torchvision, which alref must not depend on);
what it does is reproduced here.

Frames (``prepare_frame``, as ``Sam2VideoVideoProcessor`` with its SAM 2 settings, resample 2 =
bilinear, antialias on, aspect not kept):
- RGB uint8 H x W x 3 -> 3 x H x W uint8 -> float32 -> ``F.interpolate(mode="bilinear",
  align_corners=False, antialias=True)`` to ``image_size`` x ``image_size`` -> ``round()`` (half to
  even) -> uint8. That is torchvision's ``resize`` on a uint8 tensor, which transformers calls, on a
  GPU and on any CPU whose torch capability is not exactly ``"AVX2"`` (e.g. ``"AVX512"``); only on an
  AVX2-only CPU does torchvision call torch's native uint8 kernel instead (integer arithmetic, as
  PIL's), which differs by 1 in some values. alref keeps the float path everywhere, so a
  video gives the same frames on every machine (a frame already at the size is left as it is);
- then, lazily per frame, what the processor's fused rescale + normalise does:
  ``(x.float() - mean / rescale_factor) / (std / rescale_factor)`` in float32 (mean and std times
  ``1 / rescale_factor``, then subtract, then divide).

Prompts and masks:
- a box (x1, y1, x2, y2) in video pixels -> two points labelled 2 and 3, x scaled by image_size / W and
  y by image_size / H (``Sam2VideoProcessor.add_inputs_to_inference_session`` with ``input_boxes``);
- clicks (``add_points``): points (x, y) in video pixels scaled the same way, labels 1 (positive) and 0
  (negative), int64; with a box, the box's two points come first, then the clicks (labels int64 then:
  the processor concatenates its int32 [2, 3] with the int64 click labels). A prompt replaces every
  earlier prompt of that object on that frame (the processor's ``clear_old_inputs=True``);
- masks: the low-resolution logits (``pred_masks``) -> bilinear to the video's H x W -> ``> 0``
  (``Sam2VideoProcessor.post_process_masks``, which is SAM 2's own post-processing).

Session semantics, those of the canonical session after the same calls in the same order:
- ``add_box`` is ``add_inputs_to_inference_session`` + ``model(inference_session, frame_idx)``: the
  box's object is prompted and *every other object is tracked on that frame too* (its "co-tracked"
  output is kept as memory, as transformers keeps it). One exception, as in SAM 2's reference code:
  a box always makes its frame a conditioning frame of its object, even where that object was
  co-tracked (transformers would treat it as a refinement click on the tracked mask); the object's
  co-tracked output on that frame is dropped first. Clicks without a box follow transformers exactly:
  on a frame where their object was co-tracked they refine that tracked output (a non-conditioning
  frame), elsewhere the frame becomes a conditioning frame of the object.
- ``propagate(start)`` is ``propagate_in_video_iterator(start_frame_idx=start)`` then, when
  ``start > 0``, ``propagate_in_video_iterator(start_frame_idx=start, reverse=True)``: the reverse
  pass starts *at* ``start`` (re-running it in reverse mode), as the canonical iterator and SAM 2's
  ``propagate_in_video`` do, so frame ``start`` is computed twice (one model call more than frames).
- Frame ``start``: the caller gets the reverse pass's output (start == 0: the forward one, as there
  is no reverse pass). It is the later of the two, the one the canonical session holds for that frame
  at the end, the one a caller of the two canonical iterators keeps when it collects the outputs by
  frame index, and the one SAM 2's demo server shows (it streams both passes; the later replaces the
  earlier). Each frame is yielded once: ``start+1 .. last``, then ``start, start-1 .. 0`` (``start ==
  0``: ``0 .. last``). Where ``start`` is a conditioning frame of every object both outputs are the
  same.
- Every ``add_box`` and ``propagate`` starts from the state the prompts alone left (the outputs of
  the prompt calls, co-tracked ones included), never from an earlier propagation: propagating twice
  gives the same masks, and a box after a propagation is what it would have been before it.
  ``remove_object`` replays the other objects' prompts in their original order.

Memory and work per frame stay bounded on long videos:
- frames are prepared once into a ``FrameStore`` (a file on disk, read one frame at a time); the
  inference session reads and normalises them lazily, so the video is never held in memory, as float
  tensors or as mapped pages;
- propagation drops tracked outputs (and their ``frames_tracked_per_obj`` entries) that the model will
  not read again (``memory_window``, derived from the code that reads them) and every ``high_res_masks``;
  what it holds is the prompt (conditioning) frames' outputs plus at most about ``2 * memory_window``
  tracked ones, whatever the video's length, and the outputs equal the unpruned canonical session's;
- the memory attention reads at most ``MAX_COND_FRAMES`` prompt frames per frame (the model config's
  ``max_cond_frame_num``, lowered at load from SAM 2's "all of them"), so a long video with a prompt
  per clip costs the same per frame as a short one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from alref.errors import InputError
from alref.media.offsets import OffsetFile
from alref.tools.loading import ModelSource, load_once, wrap_load_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESCALE_FACTOR = 1 / 255
TINY_IMAGE_SIZE = 256
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: conditioning (prompted) frames SAM 2's memory attention reads per frame at most (transformers'
#: ``config.max_cond_frame_num``, SAM 2's ``max_cond_frames_in_attn``): the closest before the frame, the
#: closest after it, then the nearest others (``Sam2VideoModel._select_closest_cond_frames``). SAM 2's
#: configs say -1 (all of them), and alref prompts one frame per clip, so the work per frame grew with the
#: video's length (one more memory per 50 frames: 27 -> 8.6 frames/s from 300 to 3000 frames on the smoke
#: models). 4 is what SAM 3's tracker, the same architecture, uses (``Sam3TrackerVideoConfig``). alref
#: lowers an unbounded (or higher) value in the loaded model's config to this, so the session still equals
#: the canonical transformers session on that model; ``max_cond_frames=None`` at load keeps the config.
MAX_COND_FRAMES = 4
Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Prompt:
    """One prompt of one object on one frame: a box, clicks (label 1 positive, 0 negative), or both."""

    box: Box | None = None
    points: tuple[Point, ...] = ()
    labels: tuple[int, ...] = ()


def tiny_config() -> Any:
    """A shrunken ``Sam2VideoConfig`` (256 px, 4-stage Hiera with one block each but stage 3)."""
    from transformers import Sam2VideoConfig

    hidden, side = 128, TINY_IMAGE_SIZE  # hidden must be > 64; memory channels stay 64
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 16,
        "image_size": [side, side],
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 1, 1],
        "window_size_per_stage": [8, 4, 4, 8],
        "global_attention_blocks": [3],  # never the first block of a stage
        "window_positional_embedding_background_size": [4, 4],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [128, 64, 32, 16],
        "fpn_hidden_size": hidden,
        "backbone_feature_sizes": [[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
    }
    return Sam2VideoConfig(
        image_size=side,
        vision_config=vision,
        prompt_encoder_config={"hidden_size": hidden, "image_size": side, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": hidden,
            "mlp_dim": 256,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": hidden,
        },
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[side // 16] * 2,
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=256,
        memory_fuser_num_layers=1,
    )


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight SAM 2 video checkpoint (~1.5 M parameters, ~20 ms a frame on CPU)."""
    from transformers import Sam2VideoModel

    folder = Path(folder)
    torch.manual_seed(0)
    model = Sam2VideoModel(tiny_config()).eval()
    with torch.no_grad():  # "object present" on every frame, so propagated masks are not all empty
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(folder)
    side = TINY_IMAGE_SIZE
    preprocessor = {
        "image_processor_type": "Sam2ImageProcessorFast",
        "processor_class": "Sam2VideoProcessor",
        "do_resize": True,
        "size": {"height": side, "width": side},
        "mask_size": {"height": side // 4, "width": side // 4},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": RESCALE_FACTOR,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def _config_side(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def _video_processor_dict(folder: Path) -> dict[str, Any] | None:
    """The settings ``Sam2VideoProcessor``'s video processor loads, in its order of precedence:
    ``processor_config.json``'s ``video_processor``, ``video_preprocessor_config.json``,
    ``preprocessor_config.json``."""
    nested = folder / "processor_config.json"
    if nested.is_file():
        data = json.loads(nested.read_text())
        if isinstance(data.get("video_processor"), dict):
            return data["video_processor"]
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def check_preprocessing(data: dict[str, Any], model: str) -> None:
    """The processor settings alref reproduces (resize bilinear, rescale, normalise), else a ValueError."""
    unsupported = [
        key for key in ("do_resize", "do_rescale", "do_normalize") if data.get(key, True) is not True
    ]
    if data.get("resample", 2) != 2:
        unsupported.append(f"resample={data['resample']}")
    if unsupported:
        raise ValueError(
            f"unsupported {model} preprocessing ({', '.join(unsupported)}): alref resizes bilinear"
        )


def _preprocessing(folder: Path, model_side: int) -> tuple[tuple[float, ...], tuple[float, ...], int, float]:
    """Mean, std, input side and rescale factor from the processor settings, else ImageNet + config."""
    mean, std, side, rescale = IMAGENET_MEAN, IMAGENET_STD, model_side, RESCALE_FACTOR
    data = _video_processor_dict(folder)
    if data is not None:
        mean = tuple(float(v) for v in data.get("image_mean", mean))
        std = tuple(float(v) for v in data.get("image_std", std))
        rescale = float(data.get("rescale_factor", rescale))
        size = data.get("size")
        if isinstance(size, dict):
            side = int(size.get("height", size.get("longest_edge", side)))
        elif isinstance(size, int):
            side = size
        check_preprocessing(data, "SAM 2")
    if side != model_side:
        raise ValueError(f"preprocessor size {side} differs from the model's image_size {model_side}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("image_mean and image_std must have 3 values")
    if not rescale > 0:
        raise ValueError(f"rescale_factor must be positive, got {rescale}")
    return mean, std, side, rescale


def resize_frame(frame: np.ndarray, side: int) -> np.ndarray:
    """RGB uint8 H x W x 3 -> uint8 side x side x 3, as ``Sam2VideoProcessor`` resizes video frames.

    torchvision's ``resize(uint8 video, [side, side], BILINEAR, antialias=True)`` on its float path:
    3 x H x W uint8 -> float32 -> antialiased bilinear (align_corners=False) -> round half to even ->
    uint8; a frame already side x side comes back unchanged (a copy), as torchvision returns it as it is.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 frame, got {frame.dtype} {frame.shape}")
    if frame.shape[:2] == (side, side):
        return frame.copy()
    pixels = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))  # a writable 3 x H x W copy
    resized = F.interpolate(
        pixels[None].to(torch.float32),
        size=[side, side],
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return resized[0].round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class FrameStore(Protocol):
    """Prepared frames (uint8, image_size x image_size x 3) by index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class MemmapFrameStore:
    """Prepared frames in one uint8 file (N, side, side, 3), frame i at byte i * side² * 3; reopened if
    the size fits.

    The file is read and written with plain file I/O, one frame at a time, not mapped (the name is
    historical): the pages of a mapped file count in the process's resident memory once touched, so a
    mapped store grew a run's RSS by side² × 3 bytes for every frame of the video (0.19 MiB at 256 px,
    3 MiB at 1024 px); read this way they stay in the kernel's page cache, which it reclaims under
    pressure, and the process holds the frames it was given. Thread-safe (one lock around seek + I/O).
    """

    def __init__(self, path: Path, num_frames: int, side: int) -> None:
        if num_frames < 1 or side < 1:
            raise ValueError(
                f"a frame store needs at least one frame and a positive side, got {num_frames}, {side}"
            )
        self.path = Path(path)
        self.side = side
        self._count = num_frames
        self._frame_bytes = side * side * 3
        size = num_frames * self._frame_bytes
        self.reopened = self.path.is_file() and self.path.stat().st_size == size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if self.reopened else "w+b"
        self._io = OffsetFile(open(self.path, mode, buffering=0), str(self.path))  # noqa: SIM115
        if not self.reopened:
            os.truncate(self.path, size)  # zeros (a sparse file) until the frames are written

    def __len__(self) -> int:
        return self._count

    def _offset(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} is outside the store (0..{self._count - 1})")
        return index * self._frame_bytes

    def __getitem__(self, index: int) -> np.ndarray:
        frame = np.empty((self.side, self.side, 3), dtype=np.uint8)
        self._io.read_into(self._offset(index), frame)
        return frame

    def __setitem__(self, index: int, frame: np.ndarray) -> None:
        if frame.shape != (self.side, self.side, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"a prepared frame must be uint8 {self.side}x{self.side}x3, got {frame.dtype} {frame.shape}"
            )
        self._io.write_at(self._offset(index), np.ascontiguousarray(frame))

    def flush(self) -> None:
        """The frames to disk (what the mapped store's flush did), before a run marks them decoded."""
        self._io.sync()

    def close(self) -> None:
        self._io.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _NormalisedFrames(Mapping[int, torch.Tensor]):
    """Read-only view used as ``session.processed_frames``: normalises one stored frame per access,
    as the processor's fused rescale + normalise (float32, minus mean/rescale, divided by std/rescale)."""

    def __init__(
        self,
        store: FrameStore,
        mean: Sequence[float],
        std: Sequence[float],
        side: int,
        device: str,
        dtype: torch.dtype,
        rescale_factor: float = RESCALE_FACTOR,
    ) -> None:
        self.store, self.side, self.device, self.dtype = store, side, device, dtype
        scale = 1.0 / rescale_factor
        self.mean = (torch.tensor(tuple(mean), device=device) * scale).view(-1, 1, 1)
        self.std = (torch.tensor(tuple(std), device=device) * scale).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.store)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.store)))

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self.store):
            raise KeyError(index)
        frame = np.ascontiguousarray(self.store[index])
        if not frame.flags.writeable:  # torch.from_numpy warns on read-only arrays
            frame = frame.copy()
        if frame.shape != (self.side, self.side, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"stored frame {index} is {frame.dtype} {frame.shape}, expected uint8 {self.side}x{self.side}x3"
            )
        # contiguous 3 x side x side, as the processor's video tensor (a permuted HWC view would be
        # channels-last, and some convolution kernels compute channels-last inputs differently)
        pixels = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).contiguous().to(torch.float32)
        return pixels.sub_(self.mean).div_(self.std).to(self.dtype)


class Sam2VideoSegmenter:
    """A loaded SAM 2 video model; one ``SegmentationSession`` per video."""

    def __init__(
        self,
        source: ModelSource,
        model: Any,
        device: str,
        dtype: torch.dtype,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        storage_device: str,
        state_device: str,
        rescale_factor: float = RESCALE_FACTOR,
    ) -> None:
        self.source, self.model, self.device, self.dtype, self.image_size = (
            source,
            model,
            device,
            dtype,
            image_size,
        )
        self.mean, self.std, self.rescale_factor = tuple(mean), tuple(std), float(rescale_factor)
        self.storage_device, self.state_device = storage_device, state_device

    @classmethod
    def load(
        cls,
        source: ModelSource,
        device: str,
        precision: str = "auto",
        offload_video: bool = False,
        offload_state: bool = False,
        max_cond_frames: int | None = MAX_COND_FRAMES,
    ) -> Sam2VideoSegmenter:
        """``max_cond_frames``: prompted frames attended per frame at most (see ``MAX_COND_FRAMES``);
        None keeps the checkpoint's ``max_cond_frame_num`` (-1: all of them, cost growing with them)."""
        key = (
            "segmentation",
            str(source.path),
            device,
            precision,
            offload_video,
            offload_state,
            max_cond_frames,
        )
        return load_once(
            key, lambda: cls._load(source, device, precision, offload_video, offload_state, max_cond_frames)
        )

    @classmethod
    def _load(
        cls,
        source: ModelSource,
        device: str,
        precision: str,
        offload_video: bool,
        offload_state: bool,
        max_cond_frames: int | None = MAX_COND_FRAMES,
    ) -> Sam2VideoSegmenter:
        is_cuda = torch.device(device).type == "cuda"
        if precision == "auto":
            precision = "bfloat16" if is_cuda else "float32"
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision '{precision}'; choose auto, {', '.join(PRECISIONS)}")
        from transformers import Sam2VideoModel

        try:  # weights stay float32; lower precision is applied with torch.autocast per call
            model = Sam2VideoModel.from_pretrained(source.path, dtype=torch.float32).to(device).eval()
            side = _config_side(model.config.image_size)
            mean, std, side, rescale = _preprocessing(Path(source.path), side)
        except Exception as exc:  # noqa: BLE001 - any failure here is "this folder does not load"
            raise wrap_load_error(source, exc) from exc
        bound_cond_frames(model.config, max_cond_frames)
        storage = "cpu" if offload_video or not is_cuda else device
        state = "cpu" if offload_state or not is_cuda else device
        return cls(source, model, device, PRECISIONS[precision], side, mean, std, storage, state, rescale)

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> uint8 image_size x image_size x 3, resized as ``Sam2VideoProcessor`` does."""
        return resize_frame(frame, self.image_size)

    def start_session(self, frames: FrameStore, height: int, width: int) -> SegmentationSession:
        return SegmentationSession(self, frames, height, width)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype)


def bound_cond_frames(config: Any, most: int | None) -> None:
    """Lower ``config.max_cond_frame_num`` to ``most`` where it is unbounded (-1) or higher (None: as it is)."""
    if most is None:
        return
    if most < 1:
        raise ValueError(f"max_cond_frames must be at least 1 (or None for the checkpoint's), got {most}")
    current = int(config.max_cond_frame_num)
    if current == -1 or current > most:
        config.max_cond_frame_num = int(most)


def box_points(box: Sequence[float], side: int, width: int, height: int) -> torch.Tensor:
    """An xyxy box in video pixels as the two prompt points (1 x 1 x 2 x 2, float32, model input pixels),
    exactly as ``Sam2VideoProcessor`` and ``Sam3TrackerVideoProcessor`` scale it: the coordinates times
    ``side / original_size``, where the original size is an int64 tensor, so torch computes the ratio
    as ``float32(1 / size) * side`` (``Tensor.__rtruediv__``), not ``float32(side / size)``. The two
    differ by a float32 step for sizes where ``side`` is not a power of two (SAM 3's 1008)."""
    return _scaled(torch.tensor(box, dtype=torch.float32).view(1, 1, 2, 2), side, width, height)


def _scaled(coords: torch.Tensor, side: int, width: int, height: int) -> torch.Tensor:
    """x times side / width, y times side / height, as the processors compute it (``box_points``)."""
    ratio = side / torch.tensor([width, height], dtype=torch.int64)
    return coords * ratio


def prompt_inputs(prompt: Prompt, side: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A prompt as the session's point inputs (1 x 1 x n x 2 float32 coordinates in model input pixels,
    1 x 1 x n labels), exactly as ``Sam2VideoProcessor.add_inputs_to_inference_session`` builds them: the
    box's two corners (labels 2, 3, int32) first, then the clicks (int64 labels; with a box the
    concatenation promotes the box's labels to int64 too)."""
    coords: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    if prompt.box is not None:
        coords.append(box_points(prompt.box, side, width, height))
        labels.append(torch.tensor([[[2, 3]]], dtype=torch.int32))
    if prompt.points:
        points = torch.tensor(prompt.points, dtype=torch.float32).view(1, 1, -1, 2)
        coords.append(_scaled(points, side, width, height))
        labels.append(torch.tensor(prompt.labels, dtype=torch.int64).view(1, 1, -1))
    return torch.cat(coords, dim=2), torch.cat(labels, dim=2)


def make_prompt(
    box: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
) -> Prompt:
    """A checked :class:`Prompt`, else a ValueError saying what is wrong."""
    values: Box | None = None
    if box is not None:
        numbers = tuple(float(v) for v in box)
        if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"a box is four finite numbers x1, y1, x2, y2; got {box!r}")
        if numbers[2] < numbers[0] or numbers[3] < numbers[1]:
            raise ValueError(f"box {numbers} is not x1 <= x2, y1 <= y2")
        values = numbers  # type: ignore[assignment]
    clicks: list[Point] = []
    for point in points:
        xy = tuple(float(v) for v in point)
        if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
            raise ValueError(f"a point is two finite numbers x, y; got {point!r}")
        clicks.append(xy)  # type: ignore[arg-type]
    kinds = tuple(int(v) for v in labels)
    if len(kinds) != len(clicks):
        raise ValueError(f"{len(clicks)} point(s) but {len(kinds)} label(s): give one label per point")
    if any(v not in (0, 1) for v in kinds):
        raise ValueError(f"a point's label is 1 (positive) or 0 (negative); got {list(kinds)}")
    if values is None and not clicks:
        raise ValueError("a prompt needs at least one point or a box")
    return Prompt(values, tuple(clicks), kinds)


class SegmentationSession:
    """Box and point prompts and propagation over one video; several objects share the image features.

    The semantics are the canonical transformers session's (see the module docstring)."""

    def __init__(self, segmenter: Sam2VideoSegmenter, frames: FrameStore, height: int, width: int) -> None:
        if len(frames) < 1:
            raise ValueError("a segmentation session needs at least one frame")
        if height < 1 or width < 1:
            raise ValueError(f"bad video size {height}x{width}")
        self.segmenter, self.frames, self.height, self.width = segmenter, frames, height, width
        self._prompts: dict[int, dict[int, Prompt]] = {}
        #: every prompt (add_box, add_points) in order, superseded ones included: remove_object replays it
        self._history: list[tuple[int, int, Prompt]] = []
        #: per object index, the tracked (non-conditioning) outputs and tracked-frame marks that the
        #: prompt calls left: co-tracked outputs on other objects' prompt frames
        self._prompted: dict[int, tuple[dict[int, Any], dict[int, Any]]] = {}
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        seg = segmenter
        self.state = Sam2VideoInferenceSession(
            video=None,
            video_height=height,
            video_width=width,
            inference_device=seg.device,
            inference_state_device=seg.state_device,
            video_storage_device=seg.storage_device,
            dtype=torch.float32,
            max_vision_features_cache_size=1,
        )
        self.state.processed_frames = _NormalisedFrames(  # type: ignore[assignment]
            frames, seg.mean, seg.std, seg.image_size, seg.storage_device, torch.float32, seg.rescale_factor
        )
        config = seg.model.config
        #: tracked frames this far or farther from the current one are never read again, so propagation
        #: drops them and memory stays bounded on long videos. What the model reads of the tracked
        #: (non-conditioning) outputs, in transformers' ``modeling_sam2_video.py``:
        #: ``_gather_memory_frame_outputs``: ``non_cond_frame_outputs`` at ``frame_idx -/+ offset`` for offset
        #: in ``range(num_maskmem - 1, 0, -1)`` (memory features, "-" forward, "+" in reverse);
        #: ``_get_object_pointers``: at ``frame_idx -/+ t`` for t in ``range(1, max_object_pointers_in_encoder)``
        #: (object pointers). Conditioning outputs are never dropped: every one's object pointer is read
        #: (those on the side already passed), the closest ``max_cond_frame_num`` are attended, and an
        #: unselected one is read as a memory frame inside the window above. ``frames_tracked_per_obj`` is
        #: read only for an object with new inputs (``forward``: "is_init_cond_frame"), never while
        #: propagating, and every prompt call starts from the saved prompt state (``_restore_prompt_state``),
        #: so its propagated entries go with the outputs. The vision features cache holds one frame
        #: (``max_vision_features_cache_size=1``) and the frames are read from the store per access.
        self.memory_window = max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder))

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def object_ids(self) -> list[int]:
        return list(self._prompts)

    def add_box(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> np.ndarray:
        """Prompt ``obj_id`` with an xyxy box (video pixels) on a frame; returns its HxW bool mask there."""
        return self._masks(*self._add_box(frame_idx, obj_id, box))[int(obj_id)]

    def add_box_logits(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> dict[int, torch.Tensor]:
        """``add_box``, returning every object's low-resolution mask logits on that frame (float32, CPU)
        instead: what ``model(inference_session, frame_idx)`` gives as ``pred_masks``."""
        return self._logits(*self._add_box(frame_idx, obj_id, box))

    def add_points(
        self,
        frame_idx: int,
        obj_id: int,
        points: Sequence[Sequence[float]],
        labels: Sequence[int],
        box: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Prompt ``obj_id`` on a frame with clicks (x, y in video pixels; label 1 positive, 0 negative),
        optionally with an xyxy box, replacing its earlier prompt there; returns its HxW bool mask there.
        ``add_inputs_to_inference_session(input_points=, input_labels=, input_boxes=)`` + ``model(...)``."""
        prompt = make_prompt(box, points, labels)
        return self._masks(*self._add(frame_idx, obj_id, prompt))[int(obj_id)]

    def add_points_logits(
        self,
        frame_idx: int,
        obj_id: int,
        points: Sequence[Sequence[float]],
        labels: Sequence[int],
        box: Sequence[float] | None = None,
    ) -> dict[int, torch.Tensor]:
        """``add_points``, returning every object's low-resolution mask logits on that frame instead."""
        return self._logits(*self._add(frame_idx, obj_id, make_prompt(box, points, labels)))

    def propagate(
        self, start_frame: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Masks of every object on every frame, once each: start_frame+1..last, then start_frame..0
        (start_frame 0: 0..last); frame start_frame gets the reverse pass's output (module docstring)."""
        self._check_propagate(start_frame)
        return ((f, self._masks(ids, logits)) for f, ids, logits in self._outputs(start_frame, progress))

    def propagate_logits(
        self, start_frame: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, dict[int, torch.Tensor]]]:
        """``propagate`` yielding each object's low-resolution mask logits (float32, CPU) instead of masks."""
        self._check_propagate(start_frame)
        return ((f, self._logits(ids, logits)) for f, ids, logits in self._outputs(start_frame, progress))

    def remove_object(self, obj_id: int) -> None:
        """Drop ``obj_id``; the other objects' prompts are replayed in order (cached frames stay)."""
        if obj_id not in self._prompts:
            raise KeyError(f"object {obj_id} is not in this session")
        del self._prompts[obj_id]
        self._history = [entry for entry in self._history if entry[0] != obj_id]
        self.state.reset_tracking_data()
        self._prompted.clear()
        for other, frame_idx, prompt in self._history:
            self._apply(frame_idx, other, prompt)

    def reset(self) -> None:
        """Forget every object and prompt."""
        self._prompts.clear()
        self._history.clear()
        self._prompted.clear()
        self.state.reset_tracking_data()

    # ----------------------------------------------------------------------------------------

    def _check_frame(self, frame_idx: int) -> None:
        if not 0 <= frame_idx < self.num_frames:
            raise IndexError(f"frame {frame_idx} is outside the video (0..{self.num_frames - 1})")

    def _check_propagate(self, start_frame: int) -> None:
        self._check_frame(start_frame)
        if not self._prompts:
            raise ValueError("no object has a prompt: call add_box or add_points before propagate")

    def _add_box(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> tuple[list[int], torch.Tensor]:
        self._check_frame(frame_idx)
        return self._add(frame_idx, obj_id, make_prompt(box))

    def _add(self, frame_idx: int, obj_id: int, prompt: Prompt) -> tuple[list[int], torch.Tensor]:
        self._check_frame(frame_idx)
        self._prompts.setdefault(int(obj_id), {})[frame_idx] = prompt
        self._history.append((int(obj_id), frame_idx, prompt))
        return self._apply(frame_idx, int(obj_id), prompt)

    def _save_prompt_state(self) -> None:
        state = self.state
        self._prompted = {
            obj_idx: (dict(outputs["non_cond_frame_outputs"]), dict(state.frames_tracked_per_obj[obj_idx]))
            for obj_idx, outputs in state.output_dict_per_obj.items()
        }

    def _restore_prompt_state(self) -> None:
        """Back to what the prompt calls left: propagated outputs go, co-tracked ones come back."""
        state = self.state
        for obj_idx, outputs in state.output_dict_per_obj.items():
            kept, tracked = self._prompted.get(obj_idx, ({}, {}))
            outputs["non_cond_frame_outputs"].clear()
            outputs["non_cond_frame_outputs"].update(kept)
            state.frames_tracked_per_obj[obj_idx].clear()
            state.frames_tracked_per_obj[obj_idx].update(tracked)
        state.obj_with_new_inputs = []

    def _apply(self, frame_idx: int, obj_id: int, prompt: Prompt) -> tuple[list[int], torch.Tensor]:
        state, side = self.state, self.segmenter.image_size
        self._restore_prompt_state()
        obj_idx = state.obj_id_to_idx(obj_id)
        if prompt.box is not None:
            # a box makes its frame a conditioning frame of its object, also where the object was co-tracked
            # (SAM 2 drops a frame's tracked output when the frame becomes a conditioning one); clicks alone
            # refine a co-tracked output, as transformers does
            state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"].pop(frame_idx, None)
            state.frames_tracked_per_obj[obj_idx].pop(frame_idx, None)
        coords, labels = prompt_inputs(prompt, side, self.width, self.height)
        state.add_point_inputs(obj_idx, frame_idx, {"point_coords": coords, "point_labels": labels})
        state.remove_mask_inputs(obj_idx, frame_idx)
        state.obj_with_new_inputs = [obj_id]
        object_ids, logits = self._run(frame_idx, reverse=False)
        self._save_prompt_state()
        return object_ids, logits

    def _schedule(self, start: int) -> list[tuple[int, bool, bool]]:
        """(frame, reverse, given to the caller) in the order the canonical iterators run them."""
        order = [(i, False, i != start or start == 0) for i in range(start, self.num_frames)]
        if start > 0:
            order += [(i, True, True) for i in range(start, -1, -1)]
        return order

    def _outputs(
        self, start: int, progress: Callable[[int], None] | None
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        self._restore_prompt_state()
        window, state = self.memory_window, self.state
        for frame_idx, reverse, given in self._schedule(start):
            object_ids, logits = self._run(frame_idx, reverse)
            # the next frame reads at most window - 1 frames back (ahead, in reverse): the frame ``window``
            # behind is stale. Forward keeps start .. start + window - 1, which the reverse pass, starting at
            # ``start``, reads; the reverse pass drops them as it moves on
            stale = frame_idx + window if reverse else frame_idx - window
            if reverse or stale >= start + window:
                for obj_idx, outputs in state.output_dict_per_obj.items():
                    outputs["non_cond_frame_outputs"].pop(stale, None)
                    state.frames_tracked_per_obj[obj_idx].pop(stale, None)
            if given:
                if progress is not None:
                    progress(1)
                yield frame_idx, object_ids, logits

    def _run(self, frame_idx: int, reverse: bool) -> tuple[list[int], torch.Tensor]:
        with torch.inference_mode(), self.segmenter.autocast():
            out = self.segmenter.model(inference_session=self.state, frame_idx=frame_idx, reverse=reverse)
        for outputs in self.state.output_dict_per_obj.values():  # transformers keeps an image_size^2
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):  # float mask per frame and object
                outputs[kind].get(frame_idx, {}).pop("high_res_masks", None)  # that nothing reads again
        return [int(obj_id) for obj_id in out.object_ids], out.pred_masks

    def _masks(self, object_ids: list[int], logits: torch.Tensor) -> dict[int, np.ndarray]:
        with torch.inference_mode():
            video = F.interpolate(
                logits.float(), size=(self.height, self.width), mode="bilinear", align_corners=False
            )
            masks = (video[:, 0] > 0).cpu().numpy()
        return {obj_id: masks[i] for i, obj_id in enumerate(object_ids)}

    @staticmethod
    def _logits(object_ids: list[int], logits: torch.Tensor) -> dict[int, torch.Tensor]:
        values = logits.detach().float().cpu()
        return {obj_id: values[i, 0] for i, obj_id in enumerate(object_ids)}


# ----------------------------------------------------------------------------------------------
# the LangChain tool (used by the agents)


class SegmentFromBoxArgs(BaseModel):
    frame: int = Field(ge=0, description="0-based index of the video frame the box is drawn on.")
    box: list[float] = Field(
        min_length=4, max_length=4, description="[x0, y0, x1, y1] in pixels of that frame."
    )
    object_id: int = Field(1, ge=1, description="Object id to give the mask; an existing id is re-prompted.")
    propagate: bool = Field(True, description="Propagate the mask over every frame of the video (both ways).")


def make_segmentation_tool(
    get_session: Callable[[], SegmentationSession],
    on_masks: Callable[[int, dict[int, np.ndarray]], None] | None = None,
) -> Any:
    """A StructuredTool ``segment_from_box``: prompt SAM 2 with a box and optionally propagate.

    The masks go to ``on_masks(frame, {object_id: mask})``; the tool itself returns only numbers
    (areas, frame ranges) so no array ever enters an LLM conversation.
    """
    from langchain_core.tools import StructuredTool, ToolException

    def segment_from_box(
        frame: int, box: list[float], object_id: int = 1, propagate: bool = True
    ) -> dict[str, Any]:
        session = get_session()
        try:
            mask = session.add_box(frame, object_id, box)
        except (ValueError, IndexError) as exc:
            raise ToolException(f"{exc} (the video has {session.num_frames} frames)") from None
        answer: dict[str, Any] = {"object_id": object_id, "frame": frame, "mask_area_px": int(mask.sum())}
        if propagate:
            present: list[int] = []
            for index, masks in session.propagate(frame):
                if on_masks is not None:
                    on_masks(index, masks)
                if masks.get(object_id) is not None and masks[object_id].any():
                    present.append(index)
            answer |= {
                "frames_with_mask": len(present),
                "first_frame": min(present, default=None),
                "last_frame": max(present, default=None),
            }
        return answer

    return StructuredTool.from_function(
        func=segment_from_box,
        name="segment_from_box",
        description=(
            "Segment an object with SAM 2 from a box on one frame and, by default, propagate its mask through the "
            "whole video. Returns the mask area on that frame and on which frames the object has a mask."
        ),
        args_schema=SegmentFromBoxArgs,
        handle_tool_error=True,
    )
