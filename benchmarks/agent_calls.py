"""LLM cost and wall time of GPT-PS, against a local OpenAI-compatible test server that takes a
fixed time per answer (default 1 s), with the smoke models (so SAM 2 and GroundingDINO cost little).

Reports, in one run:
- LLM calls and tokens per clip (prompt, completion, estimated image tokens), from the trace;
- wall time for a 6-clip video with concurrency 1 and 8;
- wall time for 10 references on a 1-clip video with concurrency 1 and 8.

    python benchmarks/agent_calls.py               # 1 s per answer
    python benchmarks/agent_calls.py --delay 0.2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from agent_script import Script, text_of  # noqa: E402
from llm_server import Reply, ScriptedOpenAIServer  # noqa: E402
from synth import write_shapes_video  # noqa: E402

import alref  # noqa: E402
from alref.trace.record import read_events  # noqa: E402

REFERENCES = [
    "the red square", "the blue circle", "the square on the left", "the moving square", "the round object",
    "the object at the bottom", "the red shape moving right", "the blue ball", "the small square", "the circle",
]  # fmt: skip


def run_once(video: Path, refs: list[str], out: Path, url: str, clip_frames: int, concurrency: int) -> dict:
    started = time.perf_counter()
    result = alref.segment(
        video, refs, out=out, models="smoke", llm="bench", llm_base_url=url, clip_frames=clip_frames,
        llm_concurrency=concurrency, cache=False, overlay=False, force=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    calls = [e for e in read_events(out / "trace") if e.get("kind") == "llm_call"]
    clips = len(result.data["clips"]) * len(refs)
    return {
        "references": len(refs),
        "clips": len(result.data["clips"]),
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "selection_s": result.data["timings_s"].get("selection"),
        "llm_calls": len(calls),
        "calls_per_clip": round(len(calls) / clips, 2),
        "prompt_tokens_per_clip": round(sum(e.get("prompt_tokens") or 0 for e in calls) / clips),
        "completion_tokens_per_clip": round(sum(e.get("completion_tokens") or 0 for e in calls) / clips),
        "image_tokens_per_clip": round(sum(e.get("image_tokens_estimate") or 0 for e in calls) / clips),
        "status": result.status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the server takes per answer")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    script = Script()

    def answer(body: dict) -> Reply:
        # the test server has no tokenizer: text tokens are estimated at 4 characters per token
        # (images are counted separately by alref with OpenAI's published per-tile formula)
        text = script(body["messages"])
        prompt_chars = sum(len(text_of(m)) for m in body["messages"])
        return Reply(
            text, prompt_tokens=prompt_chars // 4, completion_tokens=max(1, len(text) // 4), delay=args.delay
        )

    rows = []
    with tempfile.TemporaryDirectory() as tmp, ScriptedOpenAIServer(answer) as server:
        tmp_path = Path(tmp)
        six_clips = write_shapes_video(
            tmp_path / "six.mp4", num_frames=60, width=320, height=240, fps=12, audio=False
        )
        one_clip = write_shapes_video(
            tmp_path / "one.mp4", num_frames=30, width=320, height=240, fps=12, audio=False
        )
        # warm up models and imports so the first timed run is not charged for them
        run_once(one_clip, REFERENCES[:1], tmp_path / "warm", server.base_url, 50, 8)
        for concurrency in (1, 8):
            rows.append(
                run_once(
                    six_clips,
                    REFERENCES[:1],
                    tmp_path / f"six{concurrency}",
                    server.base_url,
                    10,
                    concurrency,
                )
            )
        for concurrency in (1, 8):
            rows.append(
                run_once(
                    one_clip, REFERENCES, tmp_path / f"ten{concurrency}", server.base_url, 50, concurrency
                )
            )
    if args.json:
        print(json.dumps({"delay_s": args.delay, "rows": rows}, indent=2))
        return
    print(f"test server: {args.delay:.1f} s per answer; smoke models; {os.cpu_count()} CPUs")
    header = ["references", "clips", "concurrency", "wall_s", "selection_s", "llm_calls", "calls_per_clip",
              "prompt_tokens_per_clip", "completion_tokens_per_clip", "image_tokens_per_clip"]  # fmt: skip
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    for refs in (1, 10):
        pair = [r for r in rows if r["references"] == refs]
        print(
            f"{refs} reference(s): concurrency 8 is {pair[0]['wall_s'] / pair[1]['wall_s']:.1f}x faster than 1"
        )


if __name__ == "__main__":
    main()
