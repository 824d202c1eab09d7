"""Time the real-size models (random weights) through alref's own model code.

The compute of a network does not depend on its weight values, so random weights in the exact
architectures of the default models give their real speed without a download:

- SAM 2.1 hiera-large (``facebook/sam2.1-hiera-large``, ~224 M parameters): Hiera with hidden
  size 144, 2 heads, stages [2, 6, 36, 4], global attention blocks [23, 33, 43], window spec
  [8, 4, 16, 8], window positional embedding background [7, 7], FPN over [1152, 576, 288, 144];
  the rest is ``Sam2VideoConfig``'s defaults, which are SAM 2.1's (1024 px, 7 memory frames,
  4 memory-attention layers, 16 object pointers).
- GroundingDINO base (``IDEA-Research/grounding-dino-base``, ~233 M parameters): Swin-B backbone
  (embed dim 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32], window 12, image size 384, out
  indices [2, 3, 4]), a BERT-base text encoder, and ``GroundingDinoConfig``'s defaults (900
  queries, 6 + 6 layers, d_model 256).
- SAM 3 (``facebook/sam3``, ~848 M parameters published; 860 M as transformers builds it):
  ``Sam3VideoConfig()``'s defaults, which are facebook/sam3's: a 32-layer ViT (hidden 1024, patch 14,
  1008 px, window 24, global attention in layers 7, 15, 23, 31), a CLIP text encoder (24 layers,
  hidden 1024, 32 tokens), DETR encoder and decoder (6 + 6 layers, 200 queries), and the SAM 2-style
  tracker (7 memory frames, 4 memory-attention layers, 16 object pointers). One checkpoint is written;
  alref's ``Sam3ConceptTracker`` (``Sam3VideoModel``) and ``Sam3TrackerSegmenter``
  (``Sam3TrackerVideoModel``) load it, as they load facebook/sam3. The tokenizer is the smoke one (its
  ids are valid for the 49408-entry embedding; the text encoder's cost does not depend on the vocabulary).

Each model is built in this process, written with ``save_pretrained`` to a temporary folder and
loaded back with alref's loaders (``Sam2VideoSegmenter.load``, ``GroundingDetector.load``), so the
measured path is the product's: alref's frame preparation and frame store, box prompt,
propagation loop and mask upsampling for SAM 2; the processor (resize to shortest edge 800 /
longest 1333, tokenisation), the model and the box post-processing for GroundingDINO.

Measured:
- SAM 2: a box prompt on frame 0 (image encoder + mask decoder + memory encoder), then propagation
  forward; the first ``--warmup`` tracked frames are excluded; frames/s over the next ``--frames``.
  float32, and bfloat16 autocast (alref's ``--precision bfloat16``) when CUDA is available or with
  ``--force-bf16``. Masks are upsampled to ``--video-size`` (default 1280x720) as in a real run.
- GroundingDINO: images/s on 720p frames at batch sizes 1 and 4 (float32, as alref runs it), after
  ``--warmup`` untimed calls per batch size.
- SAM 3 concept tracks: ``tracker.track(store, h, w, "red square")`` over ``--warmup`` + ``--frames``
  frames (detector + tracker per frame, hot start and post-processing included); seconds per frame from
  the per-frame progress ticks, the first ``--warmup`` excluded, and the whole call's seconds per frame.
  Random weights detect nothing (every score is ~0.25 < 0.5), so by default no object is tracked and the
  figure is the detector's and the shared image encoder's; ``--sam3-objects K`` forces K detections per
  frame (a forward hook sets the detector's scores; the compute is unchanged) so K objects are tracked.
- SAM 3 tracker: as SAM 2, through ``Sam3TrackerSegmenter`` (a box on frame 0, then propagation).

Usage (from the repository root)::

    python benchmarks/real_size.py --device cuda            # GPU: 20 SAM frames, 20 images per batch size
    python benchmarks/real_size.py --device cpu             # CPU: 2 frames, 2 images (slow: ~10 s a frame)
    python benchmarks/real_size.py --only sam2 --frames 50 --json
    python benchmarks/real_size.py --device cpu --force-bf16 --only sam2
    python benchmarks/real_size.py --device cuda --only sam3 --sam3-objects 3
    python benchmarks/real_size.py --device cpu --only sam3 --frames 2 --warmup 0   # ~50 s a frame on 2 cores

Building and saving the two random models takes ~1 min and ~1.8 GB of temporary disk; SAM 3 adds
~40 s and ~3.5 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
SAM2_PARAMS_M = 224.4  # facebook/sam2.1-hiera-large
GDINO_PARAMS_M = 233.0  # IDEA-Research/grounding-dino-base (approx.)
SAM3_PARAMS_M = 848.0  # facebook/sam3 (published)
CONCEPT = "red square"
PHRASE = "the red square on the left that moves"


def _synth():
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import synth

    return synth


def _stages():
    """``benchmarks/stages.py``, for the machine description and the peak RSS."""
    here = str(REPO / "benchmarks")
    if here not in sys.path:
        sys.path.insert(0, here)
    import stages

    return stages


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# configs


def sam2_large_config():
    """``Sam2VideoConfig`` of facebook/sam2.1-hiera-large (sam2/configs/sam2.1/sam2.1_hiera_l.yaml)."""
    from transformers import Sam2VideoConfig

    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 144,
        "num_attention_heads": 2,
        "blocks_per_stage": [2, 6, 36, 4],
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "window_size_per_stage": [8, 4, 16, 8],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
        "image_size": [1024, 1024],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [1152, 576, 288, 144],
        "fpn_hidden_size": 256,
        "backbone_feature_sizes": [[256, 256], [128, 128], [64, 64]],
    }
    return Sam2VideoConfig(vision_config=vision, image_size=1024)


def gdino_base_config():
    """``GroundingDinoConfig`` of IDEA-Research/grounding-dino-base (Swin-B + BERT-base)."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        image_size=384,
        embed_dim=128,
        depths=[2, 2, 18, 2],
        num_heads=[4, 8, 16, 32],
        window_size=12,
        out_indices=[2, 3, 4],
    )
    return GroundingDinoConfig(backbone_config=backbone, text_config=BertConfig())  # BERT-base defaults


def sam3_config():
    """``Sam3VideoConfig`` of facebook/sam3: its defaults (detector, text encoder and tracker)."""
    from transformers import Sam3VideoConfig

    return Sam3VideoConfig()


def param_millions(model: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 1)


def check_params(name: str, got: float, expected: float) -> None:
    off = abs(got - expected) / expected
    flag = "ok" if off < 0.03 else "MISMATCH"
    log(f"{name}: {got} M parameters (published ~{expected} M, {off:.1%} off) {flag}")


# ----------------------------------------------------------------------------------------------
# building the checkpoints


def write_sam2(folder: Path) -> float:
    from transformers import Sam2VideoModel

    torch.manual_seed(0)
    t = time.perf_counter()
    model = Sam2VideoModel(sam2_large_config()).eval()
    params = param_millions(model)
    model.save_pretrained(folder)
    preprocessor = {  # as the published checkpoint's: 1024 px square, ImageNet mean/std
        "image_processor_type": "Sam2ImageProcessorFast",
        "processor_class": "Sam2VideoProcessor",
        "do_resize": True,
        "size": {"height": 1024, "width": 1024},
        "mask_size": {"height": 256, "width": 256},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    del model
    gc.collect()
    log(f"built and saved random SAM 2.1 hiera-large in {time.perf_counter() - t:.1f} s")
    return params


def bert_vocab() -> list[str]:
    """30522 entries laid out like bert-base-uncased where GroundingDINO cares: [PAD] 0, [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103, '.' 1012, '?' 1029 (the ids its text masks treat as special)."""
    from alref.tools.grounding import tiny_vocab

    size = 30522
    vocab: list[str | None] = [None] * size
    vocab[0] = "[PAD]"
    for i in range(1, 100):
        vocab[i] = f"[unused{i - 1}]"
    vocab[100], vocab[101], vocab[102], vocab[103] = "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    vocab[1012], vocab[1029] = ".", "?"
    taken = set(filter(None, vocab))
    words = [w for w in tiny_vocab() if w not in taken]
    free = (i for i in range(size) if vocab[i] is None)
    for word, i in zip(words, free, strict=False):
        vocab[i] = word
    return [w if w is not None else f"[filler{i}]" for i, w in enumerate(vocab)]


def write_gdino(folder: Path) -> float:
    from transformers import BertTokenizer, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    torch.manual_seed(0)
    t = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path = folder / "vocab.txt"
    vocab_path.write_text("\n".join(bert_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_path))  # positional: transformers 5 ignores vocab_file=
    if len(tokenizer) != 30522:
        raise SystemExit(f"the generated tokenizer has {len(tokenizer)} entries, expected 30522")
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(), tokenizer=tokenizer)
    model = GroundingDinoForObjectDetection(gdino_base_config()).eval()
    params = param_millions(model)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    gc.collect()
    log(f"built and saved random GroundingDINO-base in {time.perf_counter() - t:.1f} s")
    return params


def write_sam3(folder: Path) -> float:
    from transformers import Sam3VideoModel

    from alref.tools.sam3_tiny import processor_config, tiny_tokenizer

    torch.manual_seed(0)
    t = time.perf_counter()
    config = sam3_config()
    model = Sam3VideoModel(config).eval()
    params = param_millions(model)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    side = config.detector_config.vision_config.backbone_config.image_size
    (folder / "processor_config.json").write_text(
        json.dumps(processor_config(side, config.low_res_mask_size))
    )
    del model
    gc.collect()
    log(f"built and saved random SAM 3 in {time.perf_counter() - t:.1f} s")
    return params


# ----------------------------------------------------------------------------------------------
# measurements


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _gpu_reset(device: str) -> int:
    if torch.device(device).type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _gpu_peak_mib(device: str, base: int) -> dict[str, float] | None:
    if torch.device(device).type != "cuda":
        return None
    return {
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "peak_above_start_mib": round((torch.cuda.max_memory_allocated() - base) / 2**20, 1),
    }


def bench_sam2(
    folder: Path,
    work: Path,
    device: str,
    precision: str,
    frames: int,
    warmup: int,
    size: tuple[int, int],
    segmenter_cls: Any = None,
    model: str = "random:sam2.1-hiera-large",
) -> dict[str, Any]:
    """SAM 2 (or, with ``segmenter_cls``, another segmenter of its interface: SAM 3's tracker)."""
    from alref.tools.loading import ModelSource
    from alref.tools.segmentation import MemmapFrameStore, Sam2VideoSegmenter

    synth = _synth()
    width, height = size
    source = ModelSource(model, "segmentation", folder, "random")
    t = time.perf_counter()
    segmenter = (segmenter_cls or Sam2VideoSegmenter).load(source, device, precision)
    load_s = time.perf_counter() - t
    total = 1 + warmup + frames  # frame 0 holds the prompt
    store = MemmapFrameStore(work / f"frames_{precision}.u8", total, segmenter.image_size)
    t = time.perf_counter()
    for i in range(total):
        store[i] = segmenter.prepare_frame(synth.shapes_frame(i, total, width, height))
    prepare_s = time.perf_counter() - t
    base = _gpu_reset(device)
    session = segmenter.start_session(store, height, width)
    box = synth.red_square_box(0, total, width, height)
    t = time.perf_counter()
    mask = session.add_box(0, 1, box)
    _sync(device)
    prompt_s = time.perf_counter() - t
    last = time.perf_counter()
    per_frame: list[float] = []
    for index, masks in session.propagate(0):
        now = time.perf_counter()
        if index > 0:  # frame 0 is the prompt frame: its output is reused, not recomputed
            per_frame.append(now - last)
        last = now
        if index == 0 and 1 not in masks:
            raise SystemExit("SAM 2 returned no mask for the prompted object")
    timed = per_frame[warmup:]
    elapsed = sum(timed)
    fps = len(timed) / elapsed if elapsed > 0 else math.nan
    result = {
        "precision": precision,
        "dtype": str(segmenter.dtype).removeprefix("torch."),
        "image_size": segmenter.image_size,
        "video_size": f"{width}x{height}",
        "load_s": round(load_s, 2),
        "prepare_frames_per_s": round(total / prepare_s, 1),
        "prompt_s": round(prompt_s, 3),
        "warmup_frames": warmup,
        "timed_frames": len(timed),
        "frames_per_s": round(fps, 3),
        "s_per_frame_mean": round(elapsed / len(timed), 4) if timed else None,
        "s_per_frame_median": round(statistics.median(timed), 4) if timed else None,
        "s_per_frame_min": round(min(timed), 4) if timed else None,
        "warmup_s_per_frame": [round(x, 4) for x in per_frame[:warmup]],
        "prompt_mask_area_px": int(mask.sum()),
        "gpu_memory": _gpu_peak_mib(device, base),
    }
    del session, store
    gc.collect()
    return result


def bench_gdino(
    folder: Path, device: str, images: int, batch_sizes: list[int], warmup: int, size: tuple[int, int]
) -> dict[str, Any]:
    from PIL import Image

    from alref.tools.grounding import GroundingDetector
    from alref.tools.loading import ModelSource

    synth = _synth()
    width, height = size
    source = ModelSource("random:grounding-dino-base", "grounding", folder, "random")
    t = time.perf_counter()
    detector = GroundingDetector.load(source, device)
    load_s = time.perf_counter() - t
    most = max(math.ceil(images / b) * b for b in batch_sizes)
    frames = [synth.shapes_frame(i, most, width, height) for i in range(most)]
    sample = detector.processor(images=[Image.fromarray(frames[0])], text=[PHRASE], return_tensors="pt")
    pixel_shape = list(sample["pixel_values"].shape[-2:])
    runs = []
    for b in batch_sizes:
        count = math.ceil(images / b) * b
        base = _gpu_reset(device)
        for _ in range(warmup):
            detector.detect(frames[:b], PHRASE, batch_size=b)
        _sync(device)
        t = time.perf_counter()
        boxes = 0
        for start in range(0, count, b):
            found = detector.detect(frames[start : start + b], PHRASE, batch_size=b)
            boxes += sum(len(f) for f in found)
        _sync(device)
        elapsed = time.perf_counter() - t
        runs.append(
            {
                "batch_size": b,
                "images": count,
                "warmup_calls": warmup,
                "images_per_s": round(count / elapsed, 3),
                "s_per_image": round(elapsed / count, 4),
                "boxes_returned": boxes,
                "gpu_memory": _gpu_peak_mib(device, base),
            }
        )
        log(f"GroundingDINO batch {b}: {count / elapsed:.3f} images/s ({elapsed / count:.3f} s/image)")
    return {
        "load_s": round(load_s, 2),
        "input_size": f"{width}x{height}",
        "model_input_hw": pixel_shape,
        "phrase": PHRASE,
        "dtype": "float32",
        "runs": runs,
    }


def force_detections(tracker: Any, count: int) -> Any:
    """Make SAM 3's detector report exactly ``count`` confident detections per frame (queries 0..count-1):
    a forward hook replaces its score logits; the detector's compute is unchanged."""

    def hook(module: Any, args: Any, output: Any) -> Any:
        logits = torch.full_like(output.pred_logits, -10.0)
        logits[:, :count] = 10.0
        output.pred_logits = logits
        output.presence_logits = torch.full_like(output.presence_logits, 10.0)
        return output

    return tracker.model.detector_model.register_forward_hook(hook)  # .remove() undoes it


def bench_sam3_tracks(
    folder: Path, work: Path, device: str, precision: str, frames: int, warmup: int, size: tuple[int, int],
    objects: int,
) -> dict[str, Any]:  # fmt: skip
    from alref.tools.loading import ModelSource
    from alref.tools.sam3 import Sam3ConceptTracker
    from alref.tools.segmentation import MemmapFrameStore

    synth = _synth()
    width, height = size
    source = ModelSource("random:sam3", "concept_tracks", folder, "random")
    t = time.perf_counter()
    tracker = Sam3ConceptTracker.load(source, device, precision)
    load_s = time.perf_counter() - t
    total = warmup + frames
    store = MemmapFrameStore(work / f"sam3_frames_{precision}.u8", total, tracker.image_size)
    t = time.perf_counter()
    for i in range(total):
        store[i] = tracker.prepare_frame(synth.shapes_frame(i, total, width, height))
    prepare_s = time.perf_counter() - t
    base = _gpu_reset(device)
    ticks: list[float] = []

    def tick(_: int) -> None:
        _sync(device)
        ticks.append(time.perf_counter())

    hook = force_detections(tracker, objects) if objects > 0 else None
    try:
        start = time.perf_counter()
        found = tracker.track(store, height, width, CONCEPT, progress=tick)
        _sync(device)
        wall = time.perf_counter() - start
    finally:
        if hook is not None:
            hook.remove()
    per_frame = [b - a for a, b in zip([start, *ticks], ticks, strict=False)]
    timed = per_frame[warmup:]
    present = sum(len(t["frames"]) for t in found.tracks)
    del store
    gc.collect()
    return {
        "precision": precision,
        "dtype": str(tracker.dtype).removeprefix("torch."),
        "image_size": tracker.image_size,
        "video_size": f"{width}x{height}",
        "forced_detections": objects,
        "load_s": round(load_s, 2),
        "prepare_frames_per_s": round(total / prepare_s, 1),
        "warmup_frames": warmup,
        "timed_frames": len(timed),
        "s_per_frame_median": round(statistics.median(timed), 4) if timed else None,
        "s_per_frame_min": round(min(timed), 4) if timed else None,
        "s_per_frame_all": [round(x, 4) for x in per_frame],
        "track_call_s_per_frame": round(wall / total, 4),
        "tracks": len(found.tracks),
        "objects_per_frame": round(present / total, 2),
        "gpu_memory": _gpu_peak_mib(device, base),
    }


# ----------------------------------------------------------------------------------------------
# the command line


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"command : {report['command']}")
    gpu = f" | GPU {m['cuda']}" if m.get("cuda") else ""
    print(
        f"machine : {m['cpu']} | {m['cpus_usable']} usable CPUs | {m['memory_gib']} GiB{gpu} | "
        f"load avg {report['load_avg_1m_before']} before, {m['load_avg_1m']} after | {m['date_utc']}"
    )
    print(
        f"software: python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, alref {m['alref']} | device {report['device']}"
    )
    print()
    if "sam2" in report:
        s = report["sam2"]
        print(
            f"SAM 2.1 hiera-large video, {s['params_m']} M params, 1024 px, one object, box prompt on frame 0"
        )
        print(
            f"{'precision':<10}{'prompt s':>10}{'warm-up':>9}{'frames':>8}{'frames/s':>10}"
            f"{'s/frame med':>13}{'s/frame min':>13}{'GPU peak MiB':>14}"
        )
        for r in s["runs"]:
            mem = r["gpu_memory"]["peak_allocated_mib"] if r["gpu_memory"] else "-"
            print(
                f"{r['precision']:<10}{r['prompt_s']:>10.3f}{r['warmup_frames']:>9}{r['timed_frames']:>8}"
                f"{r['frames_per_s']:>10.3f}{r['s_per_frame_median']:>13.3f}{r['s_per_frame_min']:>13.3f}"
                f"{mem!s:>14}"
            )
        print()
    if "gdino" in report:
        g = report["gdino"]
        hw = "x".join(str(v) for v in g["model_input_hw"])
        print(
            f"GroundingDINO base (Swin-B), {g['params_m']} M params, {g['input_size']} frames -> "
            f"model input {hw} (HxW), float32"
        )
        print(f"{'batch':<8}{'images':>8}{'images/s':>10}{'s/image':>10}{'GPU peak MiB':>14}")
        for r in g["runs"]:
            mem = r["gpu_memory"]["peak_allocated_mib"] if r["gpu_memory"] else "-"
            print(
                f"{r['batch_size']:<8}{r['images']:>8}{r['images_per_s']:>10.3f}{r['s_per_image']:>10.3f}"
                f"{mem!s:>14}"
            )
        print()
    if "sam3" in report:
        s = report["sam3"]
        side = s["tracks"][0]["image_size"] if s["tracks"] else "?"
        print(f"SAM 3 (facebook/sam3 architecture), {s['params_m']} M params, {side} px")
        print(f"concept tracks of '{CONCEPT}' (Sam3VideoModel: detector + tracker per frame)")
        print(
            f"{'precision':<10}{'warm-up':>9}{'frames':>8}{'s/frame med':>13}{'s/frame min':>13}"
            f"{'track() s/frame':>17}{'objects/frame':>15}{'GPU peak MiB':>14}"
        )
        for r in s["tracks"]:
            mem = r["gpu_memory"]["peak_allocated_mib"] if r["gpu_memory"] else "-"
            print(
                f"{r['precision']:<10}{r['warmup_frames']:>9}{r['timed_frames']:>8}{r['s_per_frame_median']:>13.3f}"
                f"{r['s_per_frame_min']:>13.3f}{r['track_call_s_per_frame']:>17.3f}{r['objects_per_frame']:>15}"
                f"{mem!s:>14}"
            )
        print("box-prompted tracker (Sam3TrackerVideoModel), one object, box prompt on frame 0")
        print(
            f"{'precision':<10}{'prompt s':>10}{'warm-up':>9}{'frames':>8}{'s/frame med':>13}{'GPU peak MiB':>14}"
        )
        for r in s["tracker"]:
            mem = r["gpu_memory"]["peak_allocated_mib"] if r["gpu_memory"] else "-"
            print(
                f"{r['precision']:<10}{r['prompt_s']:>10.3f}{r['warmup_frames']:>9}{r['timed_frames']:>8}"
                f"{r['s_per_frame_median']:>13.3f}{mem!s:>14}"
            )
        print()
    print(f"peak RSS: {report['peak_rss_mib']} MiB")


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError("width and height must be at least 16")
    return w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time SAM 2.1-L propagation, GroundingDINO-B detection and SAM 3 concept tracks and box "
        "tracking (random weights, real sizes).",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="default: auto")
    p.add_argument("--frames", type=int, help="timed SAM 2 frames (default 20 on GPU, 2 on CPU)")
    p.add_argument("--images", type=int, help="timed GroundingDINO images per batch size (20 GPU, 2 CPU)")
    p.add_argument("--warmup", type=int, help="untimed SAM 2 frames / GroundingDINO calls (3 GPU, 1 CPU)")
    p.add_argument("--batch-sizes", default="1,4", help="GroundingDINO batch sizes (default: 1,4)")
    p.add_argument(
        "--precisions", help="SAM 2 precisions, comma-separated (default: float32,bfloat16 on CUDA; float32)"
    )
    p.add_argument("--force-bf16", action="store_true", help="also measure bfloat16 off CUDA")
    p.add_argument("--only", choices=["sam2", "gdino", "sam3"], help="measure one model only")
    p.add_argument(
        "--sam3-objects",
        type=int,
        default=0,
        help="SAM 3 concept tracks: force this many detections per frame",
    )
    p.add_argument("--video-size", type=parse_size, default=(1280, 720), help="default: 1280x720")
    p.add_argument("--workdir", type=Path, help="where the random checkpoints go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = p.parse_args(argv)
    from alref.tools.loading import resolve_device

    args.device = resolve_device(args.device)  # auto: cuda, then mps, then cpu
    gpu = args.device != "cpu"
    args.frames = args.frames if args.frames is not None else (20 if gpu else 2)
    args.images = args.images if args.images is not None else (20 if gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    try:
        args.batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b.strip()})
    except ValueError:
        p.error(f"--batch-sizes takes integers like 1,4, got {args.batch_sizes!r}")
    if args.precisions:
        args.precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
        bad = [x for x in args.precisions if x not in ("float32", "bfloat16", "float16")]
        if bad:
            p.error(f"unknown precision {bad[0]!r}; choose float32, bfloat16, float16")
    else:
        args.precisions = ["float32"] + (["bfloat16"] if gpu or args.force_bf16 else [])
    if args.force_bf16 and "bfloat16" not in args.precisions:
        args.precisions.append("bfloat16")
    if (
        args.frames < 1
        or args.images < 1
        or args.warmup < 0
        or not args.batch_sizes
        or args.batch_sizes[0] < 1
    ):
        p.error("need --frames >= 1, --images >= 1, --warmup >= 0 and batch sizes >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["real_size.py", *argv])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would interleave with the log
    report: dict[str, Any] = {
        "command": command,
        "device": args.device,
        "load_avg_1m_before": _stages().load_avg(),
    }
    log(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="alref-realsize-", dir=args.workdir) as tmp:
        work = Path(tmp)
        if args.only in (None, "sam2"):
            folder = work / "sam2.1-hiera-large-random"
            params = write_sam2(folder)
            check_params("SAM 2.1 hiera-large", params, SAM2_PARAMS_M)
            runs = []
            for precision in args.precisions:
                log(f"SAM 2 {precision}: prompt + {args.warmup} warm-up + {args.frames} timed frames ...")
                runs.append(
                    bench_sam2(
                        folder, work, args.device, precision, args.frames, args.warmup, args.video_size
                    )
                )
                r = runs[-1]
                log(f"SAM 2 {precision}: {r['frames_per_s']} frames/s ({r['s_per_frame_mean']} s/frame)")
            report["sam2"] = {"params_m": params, "runs": runs}
        if args.only in (None, "gdino"):
            folder = work / "grounding-dino-base-random"
            params = write_gdino(folder)
            check_params("GroundingDINO base", params, GDINO_PARAMS_M)
            report["gdino"] = {
                "params_m": params,
                **bench_gdino(
                    folder, args.device, args.images, args.batch_sizes, args.warmup, args.video_size
                ),
            }
        if args.only in (None, "sam3"):
            folder = work / "sam3-random"
            params = write_sam3(folder)
            check_params("SAM 3", params, SAM3_PARAMS_M)
            from alref.tools.sam3 import Sam3TrackerSegmenter

            tracks, tracker = [], []
            for precision in args.precisions:
                log(
                    f"SAM 3 concept tracks {precision}: {args.warmup} warm-up + {args.frames} timed frames ..."
                )
                tracks.append(
                    bench_sam3_tracks(
                        folder, work, args.device, precision, args.frames, args.warmup, args.video_size,
                        args.sam3_objects,
                    )
                )  # fmt: skip
                log(f"SAM 3 concept tracks {precision}: {tracks[-1]['s_per_frame_median']} s/frame")
                log(
                    f"SAM 3 tracker {precision}: prompt + {args.warmup} warm-up + {args.frames} timed frames ..."
                )
                tracker.append(
                    bench_sam2(
                        folder, work, args.device, precision, args.frames, args.warmup, args.video_size,
                        segmenter_cls=Sam3TrackerSegmenter, model="random:sam3",
                    )
                )  # fmt: skip
                log(f"SAM 3 tracker {precision}: {tracker[-1]['s_per_frame_mean']} s/frame")
            report["sam3"] = {"params_m": params, "tracks": tracks, "tracker": tracker}
    report["peak_rss_mib"] = _stages().peak_rss_mib()
    report["machine"] = _stages().machine_info()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
