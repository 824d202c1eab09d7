"""The tool registry: built-in tools, the example plugin installed from tests/plugins, broken plugins."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import synth
import typer
from PIL import Image
from typer.testing import CliRunner

from alref.config import load_settings
from alref.errors import InputError, ModelLoadError
from alref.tools.cli import tool_rows, tools_list
from alref.tools.registry import Grounder, ToolSpec, broken, for_role, model_source, registry, select

PLUGIN = Path(__file__).parent / "plugins" / "alref-example-grounding"
BUILTINS = {"grounding-dino": "grounding", "sam2-video": "segmentation", "ast-audioset": "audio_tagging",
            "clap": "audio_text"}  # fmt: skip


def _add_site(site: Path) -> None:
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    registry(refresh=True)


def _remove_site(site: Path, modules: list[str]) -> None:
    sys.path.remove(str(site))
    for name in modules:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    registry(refresh=True)


def install_example_plugin(target: Path) -> Path:
    """pip-install the example plugin (a copy: the build writes into its folder) into ``target/site``."""
    source = shutil.copytree(PLUGIN, target / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = target / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(site), str(source)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("alref_example_grounding-*.dist-info/entry_points.txt"))
    return site


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolSpec]:
    site = install_example_plugin(tmp_path_factory.mktemp("plugin"))
    _add_site(site)
    yield registry()["color-boxes"]
    _remove_site(site, ["alref_example_grounding"])


def test_registry_lists_builtins_and_the_plugin(plugin: ToolSpec) -> None:
    tools = registry()
    assert {name: tools[name].role for name in BUILTINS} == BUILTINS
    assert all(tools[name].origin == "alref" for name in BUILTINS)
    assert (plugin.role, plugin.origin, plugin.version) == ("grounding", "alref-example-grounding", "0.1.0")
    assert plugin.default_model is None and plugin.make_tool is not None
    assert [s.name for s in for_role("grounding")] == ["grounding-dino", "sam3", "color-boxes"]
    assert not broken()
    row = next(r for r in tool_rows() if r["name"] == "color-boxes")
    assert row["role"] == "grounding" and row["status"] == "ok"
    assert row["args"] == ["image_path", "phrase", "top_k"]


def test_select_by_role_and_name(plugin: ToolSpec) -> None:
    assert select("grounding", "color-boxes") is plugin
    assert select("grounding").name == "grounding-dino"
    assert select("segmentation", None).name == "sam2-video"
    with pytest.raises(
        InputError, match="installed grounding tools: grounding-dino, sam3, color-boxes"
    ) as err:
        select("grounding", "owlv2")
    assert err.value.exit_code == 2
    with pytest.raises(InputError, match="'sam2-video' is a segmentation tool, not grounding"):
        select("grounding", "sam2-video")


def test_model_sources(plugin: ToolSpec, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    settings = load_settings(models="smoke", grounding_model=str(tmp_path))
    assert model_source(plugin, settings) is None  # a tool without a model
    assert model_source(select("grounding"), settings).path == tmp_path.resolve()
    with_model = replace(plugin, default_model="org/some-detector")  # --grounding-model wins over it
    assert model_source(with_model, settings).path == tmp_path.resolve()


@pytest.mark.parametrize("index", [0, 11, 29])
def test_plugin_finds_the_red_square(plugin: ToolSpec, index: int) -> None:
    grounder = plugin.load(None, "cpu", precision="float32")  # options it does not take are dropped
    assert isinstance(grounder, Grounder)
    frame = synth.shapes_frame(index, 30, 160, 120)
    found = grounder.detect([frame, frame], "the red square", 0.15, 0.2, 10, 4)
    assert len(found) == 2 and found[0] == found[1]
    assert [d.phrase for d in found[0]] == ["red"]
    assert np.allclose(found[0][0].box, synth.red_square_box(index, 30, 160, 120), atol=2)
    cx, cy, r = synth.blue_circle_centre(index, 30, 160, 120)
    blue = grounder.detect([frame], "The BLUE circle.")[0]
    assert np.allclose(blue[0].box, (cx - r, cy - r, min(160, cx + r + 1), cy + r + 1), atol=2)
    assert grounder.detect([frame], "the dog")[0] == []


def test_plugin_on_decoded_video_frames(plugin: ToolSpec, shapes_mp4: Path) -> None:
    from alref.media.video import open_video

    grounder = plugin.load(None, "cpu")
    frames = open_video(shapes_mp4).read_frames([0, 15, 29])
    for index, found in zip(frames, grounder.detect(list(frames.values()), "red"), strict=True):
        assert len(found) == 1, found
        assert np.allclose(found[0].box, synth.red_square_box(index, 30, 160, 120), atol=2)


def test_plugin_chat_tool(plugin: ToolSpec, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    Image.fromarray(synth.shapes_frame(0, 30, 160, 120)).save(image)
    tool = plugin.make_tool(lambda: plugin.load(None, "cpu"))
    assert tool.args_schema is plugin.schema()
    answer = tool.invoke({"image_path": str(image), "phrase": "red or blue", "top_k": 1})
    assert answer == [{"number": 1, "box": [0, 12, 30, 42], "score": 0.2165, "phrase": "red"}]
    assert "no image file" in tool.invoke({"image_path": str(tmp_path / "nope.png"), "phrase": "red"})


def test_tools_list_command(plugin: ToolSpec) -> None:
    app = typer.Typer()
    app.command()(tools_list)
    result = CliRunner().invoke(app, ["--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["color-boxes"]["origin"] == "alref-example-grounding"
    assert rows["grounding-dino"]["default"] and not rows["color-boxes"]["default"]
    table = CliRunner().invoke(app, [], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "color-boxes" in table.output and "sam2-video" in table.output


BAD_PLUGIN = """
from alref.tools.registry import ToolSpec

def fail(source, device):
    raise RuntimeError("no such device")

def specs():
    return [ToolSpec("grounding-dino", "grounding", "a clash", fail),
            ToolSpec("echo", "echo", "a new role", lambda source, device: "echo"),
            ToolSpec("failing", "grounding", "its loader fails", fail)]
"""


def test_broken_plugins_are_reported_and_ignored(tmp_path: Path) -> None:
    (tmp_path / "alref_bad_plugin.py").write_text(BAD_PLUGIN)
    info = tmp_path / "alref_bad_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alref-bad-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[alref.tools]\nmissing = alref_no_such_module:spec\nwrong-type = os:sep\nmany = alref_bad_plugin:specs\n"
    )
    _add_site(tmp_path)
    try:
        problems = {b.name: b for b in broken()}
        assert set(problems) == {"missing", "wrong-type", "grounding-dino"}
        assert problems["missing"].error.startswith("ModuleNotFoundError")
        assert "got str" in problems["wrong-type"].error
        assert "already used by alref" in problems["grounding-dino"].error
        assert registry()["grounding-dino"].origin == "alref"
        assert select("echo").load(None, "cpu") == "echo"  # a new role's only tool is its default
        with pytest.raises(
            ModelLoadError, match="tool failing .* does not load: RuntimeError: no such device"
        ):
            select("grounding", "failing").load(None, "cpu")
        with pytest.raises(InputError, match="'missing' .* is installed but broken: ModuleNotFoundError"):
            select("grounding", "missing")
        rows = {r["name"]: r for r in tool_rows()}
        assert rows["wrong-type"]["status"].startswith("broken: TypeError")
    finally:
        _remove_site(tmp_path, ["alref_bad_plugin"])
    assert not broken() and "echo" not in registry()
