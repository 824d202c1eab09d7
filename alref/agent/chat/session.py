"""The state a conversation keeps about its video between turns: the SAM 2 session, the current
objects (each a name, its box prompts and a person's refinements), their propagated masks (as RLE),
the undo history, and the images the last tools made for the model to see.

A refinement (:meth:`ChatSession.refine`: positive/negative points and/or a box on one frame) is kept
in the object's data (``"refinements"``: ``{frame, points, labels, box}`` in order, as `alref refine`
records them in result.json), so the masks digest, undo, the saved state and ``--resume`` carry it.
The session is prompted as `alref refine` prompts it: per object (in id order), its box prompts, then
its refinements in order (``add_points``: a refinement replaces the object's earlier prompt on its
frame, as the canonical transformers session does); one propagation serves every object.

The objects' prompts and names are persisted in the conversation's LangGraph state (so in SQLite);
their masks are kept in the conversation's folder (``work/chat/masks_<digest>.json``, one file per set
of objects, named by a digest of their prompts, the segmentation model and the video), so a
conversation resumed in a new process shows its objects at once and an undo needs no model: only a set
of objects with no stored masks is propagated again. The decoded frames serve the live session only:
:meth:`ChatSession.close` removes them unless ``keep_work``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alref.config import Settings
from alref.core.workspace import Workspace
from alref.errors import InputError
from alref.media.boxes import draw_boxes
from alref.media.masks import MaskSink
from alref.media.tiles import tile_frames
from alref.media.video import open_video
from alref.media.writers import atomic_write_json, render_overlay, rle_to_mask, write_jpeg
from alref.tools.refinement import Refinement, already_applied, check_refinement, make_refinement
from alref.tools.registry import resolve_models
from alref.tools.segmentation import MemmapFrameStore


class ChatSession:
    def __init__(
        self, video_path: str | Path, out: Path, settings: Settings, audio_path: str | Path | None = None
    ):
        self.video_path = Path(video_path).expanduser().resolve()  # a resumed chat finds it from anywhere
        self.video = open_video(self.video_path)
        self.info = self.video.info
        self.out = Path(out)
        self.workspace = Workspace(self.out)
        self.settings = settings
        self.audio_path = Path(audio_path).expanduser().resolve() if audio_path else None
        self.models = resolve_models(settings)
        self.objects: dict[
            int, dict[str, Any]
        ] = {}  # id -> {"name", "reference", "prompts": [[frame, box]], "silent_frames", "refinements"?}
        self.masks: dict[int, dict[int, dict]] = {}  # id -> frame -> RLE
        self.history: list[dict[int, dict[str, Any]]] = []
        self.pending_images: list[str] = []  # shown to the model with its next step
        self.notes: list[
            str
        ] = []  # what a tool has to tell the person (a model's limit): said after the turn
        self.changed = False
        self._detector = self._segmenter = self._store = self._session = None
        self._tracks: Any = None
        self._counter = 0
        self._frame_stores: set[Path] = set()  # the decoded frames this session wrote or reopened

    # --- models and frames, loaded on first use -------------------------------------------------

    @property
    def detector(self):
        if self._detector is None:
            self._detector = self.models.grounding_tool.load(self.models.grounding, self.models.device)
        return self._detector

    def _segmentation(self):
        if self._session is None:
            self._segmenter = self.models.load_segmentation(self.settings)
            self._store = self._frames(self._segmenter.image_size, self._segmenter.prepare_frame)
            self._session = self._segmenter.start_session(self._store, self.info.height, self.info.width)
        return self._session

    def tracks_source(self):
        """SAM 3 concept tracks over this video (loaded, and the frames decoded for it, on first use)."""
        if self._tracks is None:
            from alref.tools.loading import resolve_device
            from alref.tools.registry import model_source, select
            from alref.tools.video_tracks import VideoTracks

            tool = select("concept_tracks", None)
            tracker = tool.load(model_source(tool, self.settings), resolve_device(self.settings.device))
            if skipped := getattr(
                tracker, "skipped_postprocessing", None
            ):  # instead of transformers' warning
                self.notes.append(skipped)
            store = self._frames(tracker.image_size, tracker.prepare_frame)
            from alref.progress import Reporter

            self._tracks = VideoTracks(
                tracker, store, self.video, self.workspace, Reporter(), key=str(self.video_path)
            )
        return self._tracks

    def _frames(self, side: int, prepare: Any) -> MemmapFrameStore:
        """The video decoded and prepared at ``side`` px in ``work/frames_<side>.u8``: reopened when an
        earlier session of this conversation finished decoding it (its ``.done`` marker), else decoded."""
        path, done = self.workspace.frame_store(side), self.workspace.frame_store_done(side)
        store = MemmapFrameStore(path, self.info.num_frames, side)
        self._frame_stores.add(path)
        if not (store.reopened and done.is_file()):
            done.unlink(missing_ok=True)
            for index, frame in self.video.iter_frames():
                store[index] = prepare(frame)
            store.flush()
            done.touch()
        return store

    def close(self) -> None:
        """The conversation is over for this process: the decoded frames are removed unless
        ``keep_work`` (the masks stay, so a resumed conversation needs them only to change an object)."""
        self._session = self._segmenter = self._store = None
        self._tracks = None
        if self.settings.keep_work:
            return
        for path in self._frame_stores:
            path.unlink(missing_ok=True)
            path.with_suffix(".done").unlink(missing_ok=True)
        self._frame_stores.clear()

    def check_frame(self, frame: int) -> None:
        if not 0 <= frame < self.info.num_frames:
            raise InputError(
                f"frame {frame} does not exist: the video has frames 0 to {self.info.num_frames - 1}"
            )

    def _image(self, kind: str, image: np.ndarray) -> str:
        self._counter += 1
        path = write_jpeg(
            self.workspace.tool_images / f"{int(time.time())}-{self._counter:03d}-{kind}.jpg", image, 90
        )
        self.pending_images.append(path)
        return path

    # --- what the tools do ----------------------------------------------------------------------

    def show_frames(self, frames: list[int] | None = None, count: int = 8) -> dict[str, Any]:
        """A tile of frames labelled with their (0-based) frame numbers."""
        if not frames:
            frames = sorted(
                {round(i) for i in np.linspace(0, self.info.num_frames - 1, min(count, self.info.num_frames))}
            )
        for f in frames:
            self.check_frame(f)
        read = self.video.read_frames(frames)
        tile = tile_frames(
            [read[f] for f in frames], frames, self.settings.tile_columns, self.settings.tile_max_side
        )
        return {"image": self._image("frames", tile.image), "frames": frames}

    def ground(self, frame: int, phrase: str) -> dict[str, Any]:
        self.check_frame(frame)
        image = self.video.read_frame(frame)
        s = self.settings
        found = self.detector.detect([image], phrase, s.box_threshold, s.text_threshold, s.top_k)[0]
        drawn_image, drawn = draw_boxes(image, [d.box for d in found])
        path = self._image("boxes", drawn_image)
        boxes = [
            {"number": b.number, "colour": b.colour, **d.to_dict()} for b, d in zip(drawn, found, strict=True)
        ]
        self.last_boxes = {frame: boxes}
        return {"frame": frame, "image": path, "boxes": boxes}

    def _remember(self) -> None:
        self.history.append(copy.deepcopy(self.objects))

    def set_object(self, prompts: list[tuple[int, list[float]]], name: str, reference: str | None = None,
                   object_id: int | None = None) -> dict[str, Any]:  # fmt: skip
        """Create an object (or replace object ``object_id``) from box prompts and propagate."""
        for frame, box in prompts:
            self.check_frame(frame)
            if len(box) != 4:
                raise InputError("a box is [x0, y0, x1, y1] in pixels")
        if object_id is not None and object_id not in self.objects:
            raise InputError(f"there is no object {object_id}; objects: {self.describe_objects() or 'none'}")
        self._remember()
        obj = object_id if object_id is not None else max(self.objects, default=0) + 1
        self.objects[obj] = {"name": name, "reference": reference or name, "prompts": [[f, list(map(float, b))] for f, b in prompts],
                             "silent_frames": []}  # fmt: skip
        self.propagate()
        return {"object_id": obj, **self.object_summary(obj)}

    def refine(
        self,
        object_id: int,
        frame: int,
        points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] = (),
        box: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Correct object ``object_id`` with clicks (label 1 positive, 0 negative) and/or a box on
        ``frame`` (video pixels) and propagate again; the same prompt as the object's last one on that
        frame is already applied (nothing is computed)."""
        self._check_object(object_id)
        refinement = self.make_refinement(frame, points, labels, box)
        data = self.objects[object_id]
        if already_applied(data.get("refinements", []), refinement):
            return {"object_id": object_id, "already_applied": True, **self.frame_summary(object_id, frame)}
        self._check_points()
        self._remember()
        data["refinements"] = [*data.get("refinements", []), refinement]
        self.propagate()
        return {"object_id": object_id, **self.frame_summary(object_id, frame)}

    def add_object(
        self,
        name: str,
        frame: int,
        points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] = (),
        box: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """A new object from a box (a box prompt, as :meth:`set_object`) or from clicks (with or
        without a box: its first refinement) on ``frame``, then propagate."""
        refinement = self.make_refinement(frame, points, labels, box)
        if not refinement["points"]:
            made = self.set_object([(refinement["frame"], refinement["box"])], name)  # type: ignore[list-item]
            return {"object_id": made["object_id"], **self.frame_summary(made["object_id"], frame)}
        self._check_points()
        self._remember()
        obj = max(self.objects, default=0) + 1
        self.objects[obj] = {"name": name, "reference": name, "prompts": [], "silent_frames": [],
                             "refinements": [refinement]}  # fmt: skip
        self.propagate()
        return {"object_id": obj, **self.frame_summary(obj, frame)}

    def make_refinement(
        self,
        frame: int,
        points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] = (),
        box: Sequence[float] | None = None,
    ) -> Refinement:
        """A checked refinement ``{frame, points, labels, box}`` (as result.json records it, see
        :mod:`alref.tools.refinement`), else an InputError in one line."""
        self.check_frame(int(frame))
        refinement = make_refinement(frame, points, labels, box)
        check_refinement(refinement, self.info.num_frames, self.info.width, self.info.height)
        return refinement

    def _check_points(self) -> None:
        """The segmentation tool takes point prompts (``add_points``), else an InputError before any change."""
        if not hasattr(self._segmentation(), "add_points"):
            name = self.models.segmentation_tool.name
            raise InputError(f"the segmentation tool {name} takes no point prompts: use a box (segment_box)")

    def _check_object(self, object_id: int) -> None:
        if object_id not in self.objects:
            ids = ", ".join(str(o) for o in sorted(self.objects)) or "none"
            raise InputError(f"there is no object {object_id}; the objects are: {ids}")

    def frame_summary(self, obj: int, frame: int) -> dict[str, Any]:
        """The object's summary and its mask's size on ``frame`` (pixels)."""
        rle = self.masks.get(obj, {}).get(int(frame))
        pixels = int(rle_to_mask(rle).sum()) if rle is not None else 0
        return {**self.object_summary(obj), "frame": int(frame), "mask_pixels_on_frame": pixels}

    def remove(self, object_id: int) -> dict[str, Any]:
        if object_id not in self.objects:
            raise InputError(f"there is no object {object_id}; objects: {self.describe_objects() or 'none'}")
        self._remember()
        removed = self.objects.pop(object_id)
        self.propagate()
        return {"removed": object_id, "name": removed["name"]}

    def rename(self, object_id: int, name: str) -> dict[str, Any]:
        if object_id not in self.objects:
            raise InputError(f"there is no object {object_id}; objects: {self.describe_objects() or 'none'}")
        self._remember()
        self.objects[object_id]["name"] = name
        self.changed = True
        return {"object_id": object_id, "name": name}

    def undo(self) -> dict[str, Any]:
        if not self.history:
            raise InputError("nothing to undo")
        self.objects = self.history.pop()
        self.propagate()
        return {"objects": self.describe_objects()}

    def keep_while_sounding(self, object_id: int, sound: str) -> dict[str, Any]:
        """Remove the object's mask on frames where ``sound`` is not heard (CLAP sound events)."""
        from alref.audio.events import silent_frames, sound_events
        from alref.media.audio import load_audio
        from alref.tools.audio_tagging import AudioTagger
        from alref.tools.audio_text import AudioTextMatcher
        from alref.tools.loading import audio_models

        if object_id not in self.objects:
            raise InputError(f"there is no object {object_id}; objects: {self.describe_objects() or 'none'}")
        source = self.audio_path or self.video_path
        if self.audio_path is None and not self.info.has_audio:
            raise InputError("this video has no audio track; start the chat with --audio PATH")
        waveform = load_audio(source)
        tagging, text = audio_models(self.settings)
        tags = AudioTagger.load(tagging, self.models.device).tag(waveform, top_k=self.settings.audio_top_k)
        events = sound_events(
            waveform, [sound], self.settings, tags, AudioTextMatcher.load(text, self.models.device)
        )
        self._remember()
        frames = sorted(silent_frames(events, sound, self.info))
        self.objects[object_id]["silent_frames"] = frames
        self.propagate()
        return {
            "object_id": object_id,
            "sound": sound,
            "frames_removed": len(frames),
            **self.object_summary(object_id),
        }

    def tag_audio(self, top_k: int = 5) -> dict[str, Any]:
        from alref.media.audio import load_audio
        from alref.tools.audio_tagging import AudioTagger
        from alref.tools.loading import audio_models

        source = self.audio_path or self.video_path
        tags = AudioTagger.load(audio_models(self.settings)[0], self.models.device).tag(
            load_audio(source), top_k=top_k
        )
        return {"labels": [{"label": t.label, "score": round(float(t.score), 3)} for t in tags.labels]}

    # --- masks ------------------------------------------------------------------------------------

    def masks_digest(self, objects: dict[int, dict[str, Any]]) -> str:
        """What the masks of ``objects`` depend on: their ids, box prompts, refinements and silent
        frames, the segmentation model, its precision and ``cond_frames``, and the video. (An object without refinements
        has the digest it had before refinements existed: stored masks stay valid.)"""
        shape = sorted(
            [obj, d["prompts"], sorted(d.get("silent_frames", []))]
            + ([d["refinements"]] if d.get("refinements") else [])
            for obj, d in objects.items()
        )
        key = [shape, self.models.describe()["segmentation"], self.settings.precision, str(self.video_path),
               [self.info.num_frames, self.info.width, self.info.height], self.settings.cond_frames]  # fmt: skip
        return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]

    def _load_masks(self) -> bool:
        """The stored masks of the current objects, if this set of objects was propagated before."""
        path = self.workspace.chat_masks(self.masks_digest(self.objects))
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))["objects"]
            masks = {int(obj): {int(f): rle for f, rle in frames.items()} for obj, frames in stored.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
        if set(masks) != set(self.objects):
            return False
        self.masks = masks
        return True

    def _save_masks(self) -> None:
        """Store the current masks; keep only those of the current objects and of the undo history."""
        digest = self.masks_digest(self.objects)
        path = self.workspace.chat_masks(digest)
        stored = {str(obj): {str(f): rle for f, rle in frames.items()} for obj, frames in self.masks.items()}
        atomic_write_json(path, {"video": str(self.video_path), "objects": stored})
        keep = {path.name} | {self.workspace.chat_masks(self.masks_digest(h)).name for h in self.history if h}
        for old in path.parent.glob("masks_*.json"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def propagate(self) -> None:
        """The masks of the current objects: the stored ones when this set of objects was propagated
        before (no model runs), else SAM 2 prompted with every object's boxes over the whole video."""
        self.changed = True
        self.masks = {}
        if not self.objects or self._load_masks():
            return
        self._propagate()
        self._save_masks()

    def _propagate(self) -> None:
        """Prompt SAM 2 with every object's boxes, then its refinements (as `alref refine` does), and
        propagate once over the whole video, from the newest object's first prompt."""
        from alref.media.writers import mask_to_rle

        self.masks = {obj: {} for obj in self.objects}
        session = self._segmentation()
        session.reset()
        for obj, data in sorted(self.objects.items()):
            for frame, box in data["prompts"]:
                session.add_box(frame, obj, box)
            for r in data.get("refinements", []):
                session.add_points(r["frame"], obj, r["points"], r["labels"], r["box"])
        start = self.first_frame(max(self.objects))
        for frame, masks in session.propagate(start, progress=self._advance):
            for obj, mask in masks.items():
                if frame in self.objects[obj].get("silent_frames", []):
                    mask = np.zeros_like(mask)
                self.masks[obj][frame] = mask_to_rle(mask)

    def _advance(self, frames: int) -> None:
        """Propagation's progress (``frames`` more done); a session that shows progress overrides it."""

    def first_frame(self, obj: int) -> int:
        """The frame of the object's first prompt: its first box, else its first refinement."""
        data = self.objects[obj]
        return data["prompts"][0][0] if data["prompts"] else data["refinements"][0]["frame"]

    def object_summary(self, obj: int) -> dict[str, Any]:
        present = [f for f, rle in sorted(self.masks.get(obj, {}).items()) if rle_to_mask(rle).any()]
        data = self.objects[obj]
        refined = {"refinements": data["refinements"]} if data.get("refinements") else {}
        return {"name": data["name"], "prompts": data["prompts"], **refined, "frames_with_mask": len(present),
                "first_frame": present[0] if present else None, "last_frame": present[-1] if present else None}  # fmt: skip

    def describe_objects(self) -> list[dict[str, Any]]:
        return [{"object_id": obj, **self.object_summary(obj)} for obj in sorted(self.objects)]

    def preview(self, turn: int) -> str | None:
        """The first prompt frame of the newest object with every mask tinted and the prompt boxes drawn."""
        if not self.objects:
            return None
        frame = self.first_frame(max(self.objects))
        image = self.video.read_frame(frame)
        masks = {obj: rle_to_mask(m[frame]) for obj, m in self.masks.items() if frame in m}
        boxes = [
            (box, f"{obj} {d['name']}")
            for obj, d in sorted(self.objects.items())
            for f, box in d["prompts"]
            if f == frame
        ]
        return write_jpeg(
            self.workspace.previews / f"turn{turn:03d}.jpg", render_overlay(image, masks, boxes), 90
        )

    def export(self, folder: str | Path | None = None) -> dict[str, Any]:
        """masks/, objects/, palette/ and masks.json as `alref segment` writes them, plus objects.json, into
        the chat's folder (``--out``, beside its trace/ as a run's outputs are) unless ``folder`` is given."""
        target = Path(folder) if folder else self.out
        if not self.objects:
            raise InputError("there is nothing to export yet: no object has been segmented")
        if not folder:  # an earlier export of other objects leaves nothing behind that is not these
            import shutil

            for old in ("masks", "objects", "palette"):
                shutil.rmtree(target / old, ignore_errors=True)
        sink = MaskSink(target, self.info, {obj: d["name"] for obj, d in self.objects.items()})
        for frame in range(self.info.num_frames):
            sink.add(frame, {obj: rle_to_mask(m[frame]) for obj, m in self.masks.items() if frame in m})
        sink.write_json()
        atomic_write_json(
            target / "objects.json", {"video": str(self.video_path), "objects": self.describe_objects()}
        )
        return {"folder": str(target), "objects": len(self.objects), "frames": self.info.num_frames}

    # --- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"objects": {str(k): v for k, v in self.objects.items()},
                "history": [{str(k): v for k, v in h.items()} for h in self.history[-20:]]}  # fmt: skip

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        """The objects and undo history of a saved conversation, with their stored masks (propagated
        again only when none are stored for these objects)."""
        if not snapshot:
            return
        self.objects = {int(k): v for k, v in snapshot.get("objects", {}).items()}
        self.history = [{int(k): v for k, v in h.items()} for h in snapshot.get("history", [])]
        if self.objects:
            self.propagate()
        self.changed = False
