"""`alref eval compare`: the same dataset run with --strategy pivot and --strategy tracks (smoke models),
one table with a column per run."""

from __future__ import annotations

import json

import eval_synth
import pytest

pytestmark = pytest.mark.slow


def test_pivot_and_tracks_side_by_side(run_cli, tmp_path):
    root = tmp_path / "ds"
    eval_synth.write_refdavis(root, videos=1, frames=3, size=(32, 32), objects=1)
    for strategy in ("pivot", "tracks"):
        code, _, err = run_cli("eval", "run", "refdavis", "--root", root, "--models", "smoke", "--strategy", strategy,
                               "--out", tmp_path / strategy)  # fmt: skip
        assert code == 0, err
    code, out, _ = run_cli("eval", "compare", tmp_path / "pivot", tmp_path / "tracks", "--json")
    data = json.loads(out)
    assert code == 0 and [r["strategy"] for r in data["runs"]] == ["pivot", "tracks"]
    assert {"J", "F", "J&F"} <= set(data["metrics"]) and all(len(v) == 2 for v in data["metrics"].values())
    code, table, _ = run_cli("eval", "compare", tmp_path / "pivot", tmp_path / "tracks")
    assert code == 0 and "J&F" in table and "tracks" in table and "pivot" in table
    code, _, err = run_cli("eval", "compare", tmp_path / "nowhere")
    assert code == 2 and "no readable summary.json" in err


def test_with_and_without_verification_side_by_side(run_cli, tmp_path, llm_server, monkeypatch):
    import verify_script
    from agent_script import Script
    from llm_server import Reply

    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    script = Script(verify_masks=lambda m: verify_script.verdicts(m, default="target_absent"))
    llm_server.default = lambda body: Reply(script(body["messages"]))
    root = tmp_path / "ds"
    eval_synth.write_refdavis(root, videos=1, frames=3, size=(32, 32), objects=1)
    for flag in ("--verify", "--no-verify"):
        code, _, err = run_cli("eval", "run", "refdavis", "--root", root, "--models", "smoke", "--llm", "m",
                               "--llm-base-url", llm_server.base_url, flag, "--out", tmp_path / flag.strip("-"))  # fmt: skip
        assert code == 0, err
    code, out, _ = run_cli("eval", "compare", tmp_path / "verify", tmp_path / "no-verify", "--json")
    data = json.loads(out)
    assert code == 0 and [r["verify"] for r in data["runs"]] == [True, False]
    metrics = data["metrics"]
    assert metrics["verification: target_absent"][0] >= 1 and metrics["verification: expressions changed"] == [
        metrics["verification: target_absent"][0], 0]  # fmt: skip
    code, table, _ = run_cli("eval", "compare", tmp_path / "verify", tmp_path / "no-verify")
    assert "verify on" in table and "verify off" in table
