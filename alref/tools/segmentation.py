"""Video segmentation with SAM 2 (transformers ``Sam2VideoModel``): box prompts, then propagation.

No processor classes are used (``Sam2VideoProcessor`` needs torchvision, which alref must not
depend on). What they do is reproduced here:
- frames: RGB uint8 -> square ``image_size`` (PIL bilinear, aspect not kept) -> /255 -> (x-mean)/std;
- a box (x1, y1, x2, y2) in video pixels -> two points labelled 2 and 3, scaled to ``image_size``;
- masks: low-resolution logits -> bilinear to the video's H x W -> ``> 0`` (what
  ``Sam2VideoProcessor.post_process_masks`` does in transformers 5.23, and SAM 2 itself).

Frames are prepared once into a ``FrameStore`` (a memmap on disk for long videos); the inference
session reads and normalises them lazily, so the video is never held in memory as float tensors.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, Field

from alref.errors import InputError
from alref.tools.loading import ModelSource, load_once, wrap_load_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_IMAGE_SIZE = 256
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def _config_side(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def _preprocessing(folder: Path, model_side: int) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """Mean, std and input side from ``preprocessor_config.json`` when present, else ImageNet + config."""
    mean, std, side = IMAGENET_MEAN, IMAGENET_STD, model_side
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        mean = tuple(float(v) for v in data.get("image_mean", mean))
        std = tuple(float(v) for v in data.get("image_std", std))
        size = data.get("size")
        if isinstance(size, dict):
            side = int(size.get("height", size.get("longest_edge", side)))
        elif isinstance(size, int):
            side = size
        break
    if side != model_side:
        raise ValueError(f"preprocessor size {side} differs from the model's image_size {model_side}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("image_mean and image_std must have 3 values")
    return mean, std, side


class FrameStore(Protocol):
    """Prepared frames (uint8, image_size x image_size x 3) by index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class MemmapFrameStore:
    """Prepared frames in one uint8 ``np.memmap`` file (N, side, side, 3); reopened if the size fits."""

    def __init__(self, path: Path, num_frames: int, side: int) -> None:
        if num_frames < 1 or side < 1:
            raise ValueError(
                f"a frame store needs at least one frame and a positive side, got {num_frames}, {side}"
            )
        self.path = Path(path)
        self.side = side
        shape = (num_frames, side, side, 3)
        size = math.prod(shape)
        self.reopened = self.path.is_file() and self.path.stat().st_size == size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._array = np.memmap(self.path, dtype=np.uint8, mode="r+" if self.reopened else "w+", shape=shape)

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._array[index])

    def __setitem__(self, index: int, frame: np.ndarray) -> None:
        if frame.shape != (self.side, self.side, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"a prepared frame must be uint8 {self.side}x{self.side}x3, got {frame.dtype} {frame.shape}"
            )
        self._array[index] = frame

    def flush(self) -> None:
        self._array.flush()


class _NormalisedFrames(Mapping[int, torch.Tensor]):
    """Read-only view used as ``session.processed_frames``: normalises one stored frame per access."""

    def __init__(
        self,
        store: FrameStore,
        mean: Sequence[float],
        std: Sequence[float],
        side: int,
        device: str,
        dtype: torch.dtype,
    ) -> None:
        self.store, self.side, self.device, self.dtype = store, side, device, dtype
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(3, 1, 1)

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
        pixels = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).float().div_(255.0)
        return ((pixels - self.mean) / self.std).to(self.dtype)


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
    ) -> None:
        self.source, self.model, self.device, self.dtype, self.image_size = (
            source,
            model,
            device,
            dtype,
            image_size,
        )
        self.mean, self.std = tuple(mean), tuple(std)
        self.storage_device, self.state_device = storage_device, state_device

    @classmethod
    def load(
        cls,
        source: ModelSource,
        device: str,
        precision: str = "auto",
        offload_video: bool = False,
        offload_state: bool = False,
    ) -> Sam2VideoSegmenter:
        key = ("segmentation", str(source.path), device, precision, offload_video, offload_state)
        return load_once(key, lambda: cls._load(source, device, precision, offload_video, offload_state))

    @classmethod
    def _load(
        cls, source: ModelSource, device: str, precision: str, offload_video: bool, offload_state: bool
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
            mean, std, side = _preprocessing(Path(source.path), side)
        except Exception as exc:  # noqa: BLE001 - any failure here is "this folder does not load"
            raise wrap_load_error(source, exc) from exc
        storage = "cpu" if offload_video or not is_cuda else device
        state = "cpu" if offload_state or not is_cuda else device
        return cls(source, model, device, PRECISIONS[precision], side, mean, std, storage, state)

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> uint8 image_size x image_size x 3 (bilinear, aspect not kept, as SAM 2)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 frame, got {frame.dtype} {frame.shape}")
        size = (self.image_size, self.image_size)
        return np.array(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.Resampling.BILINEAR))

    def start_session(self, frames: FrameStore, height: int, width: int) -> SegmentationSession:
        return SegmentationSession(self, frames, height, width)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype)


class SegmentationSession:
    """Box prompts and propagation over one video; several objects share the image features."""

    def __init__(self, segmenter: Sam2VideoSegmenter, frames: FrameStore, height: int, width: int) -> None:
        if len(frames) < 1:
            raise ValueError("a segmentation session needs at least one frame")
        if height < 1 or width < 1:
            raise ValueError(f"bad video size {height}x{width}")
        self.segmenter, self.frames, self.height, self.width = segmenter, frames, height, width
        self._prompts: dict[int, dict[int, tuple[float, float, float, float]]] = {}
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
            frames, seg.mean, seg.std, seg.image_size, seg.storage_device, torch.float32
        )
        config = seg.model.config
        #: tracked frames farther than this from the current one are never read again (memory bank and
        #: object pointers), so propagation drops them: memory stays bounded on long videos
        self.memory_window = max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder))

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def object_ids(self) -> list[int]:
        return list(self._prompts)

    def add_box(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> np.ndarray:
        """Prompt ``obj_id`` with an xyxy box (video pixels) on a frame; returns its HxW bool mask there."""
        self._check_frame(frame_idx)
        values = tuple(float(v) for v in box)
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a box is four finite numbers x1, y1, x2, y2; got {box!r}")
        if values[2] < values[0] or values[3] < values[1]:
            raise ValueError(f"box {values} is not x1 <= x2, y1 <= y2")
        self._prompts.setdefault(int(obj_id), {})[frame_idx] = values  # type: ignore[assignment]
        return self._apply_box(frame_idx, int(obj_id), values)

    def propagate(
        self, start_frame: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Masks of every object on every frame: start_frame..last, then start_frame-1..0, once each."""
        self._check_frame(start_frame)
        if not self._prompts:
            raise ValueError("no object has a box prompt: call add_box before propagate")
        return self._propagate(start_frame, progress)

    def remove_object(self, obj_id: int) -> None:
        """Drop ``obj_id``; the other objects are re-prompted from scratch (cached frames stay)."""
        if obj_id not in self._prompts:
            raise KeyError(f"object {obj_id} is not in this session")
        del self._prompts[obj_id]
        self.state.reset_tracking_data()
        for other, boxes in self._prompts.items():
            for frame_idx, box in boxes.items():
                self._apply_box(frame_idx, other, box)

    def reset(self) -> None:
        """Forget every object and prompt."""
        self._prompts.clear()
        self.state.reset_tracking_data()

    # ----------------------------------------------------------------------------------------

    def _check_frame(self, frame_idx: int) -> None:
        if not 0 <= frame_idx < self.num_frames:
            raise IndexError(f"frame {frame_idx} is outside the video (0..{self.num_frames - 1})")

    def _forget_tracking(self) -> None:
        """Drop propagated (non-conditioning) results: they are stale once prompts change, and a
        tracked frame would turn a later box on it into a refinement click instead of a prompt."""
        for obj_idx, outputs in self.state.output_dict_per_obj.items():
            outputs["non_cond_frame_outputs"].clear()
            self.state.frames_tracked_per_obj[obj_idx].clear()

    def _apply_box(self, frame_idx: int, obj_id: int, box: tuple[float, float, float, float]) -> np.ndarray:
        state, side = self.state, self.segmenter.image_size
        obj_idx = state.obj_id_to_idx(obj_id)
        self._forget_tracking()
        scale = torch.tensor([side / self.width, side / self.height], dtype=torch.float32)
        coords = torch.tensor(box, dtype=torch.float32).view(1, 1, 2, 2) * scale
        labels = torch.tensor([[[2, 3]]], dtype=torch.int32)
        state.add_point_inputs(obj_idx, frame_idx, {"point_coords": coords, "point_labels": labels})
        state.remove_mask_inputs(obj_idx, frame_idx)
        state.obj_with_new_inputs = [obj_id]
        return self._run(frame_idx, reverse=False)[obj_id]

    def _propagate(
        self, start: int, progress: Callable[[int], None] | None
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        self._forget_tracking()
        self.state.obj_with_new_inputs = []
        order = [(i, False) for i in range(start, self.num_frames)] + [
            (i, True) for i in range(start - 1, -1, -1)
        ]
        for frame_idx, reverse in order:
            masks = self._run(frame_idx, reverse)
            # forward: keep what the backward pass will read (start .. start+window); backward: a trailing window
            stale = frame_idx + self.memory_window if reverse else frame_idx - self.memory_window
            if reverse or stale >= start + self.memory_window:
                for outputs in self.state.output_dict_per_obj.values():
                    outputs["non_cond_frame_outputs"].pop(stale, None)
            if progress is not None:
                progress(1)
            yield frame_idx, masks

    def _run(self, frame_idx: int, reverse: bool) -> dict[int, np.ndarray]:
        with torch.inference_mode(), self.segmenter.autocast():
            out = self.segmenter.model(inference_session=self.state, frame_idx=frame_idx, reverse=reverse)
            logits = F.interpolate(
                out.pred_masks.float(), size=(self.height, self.width), mode="bilinear", align_corners=False
            )
            masks = (logits[:, 0] > 0).cpu().numpy()
        for outputs in self.state.output_dict_per_obj.values():  # transformers keeps an image_size^2
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):  # float mask per frame and object
                outputs[kind].get(frame_idx, {}).pop("high_res_masks", None)  # that nothing reads again
        return {int(obj_id): masks[i] for i, obj_id in enumerate(out.object_ids)}


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
