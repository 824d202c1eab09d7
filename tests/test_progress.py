"""Progress reporters: stages opened at once share one rich display; a Relay replays the calls of
work on other threads on the owner's thread, and raises their errors there."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from alref.progress import Relay, Reporter, RichReporter


class _Recorder(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def stage(self, name, total):
        from contextlib import contextmanager

        recorder = self

        class Stage:
            def advance(self, amount: int = 1) -> None:
                recorder.calls.append(("advance", name, amount, threading.get_ident()))

        @contextmanager
        def opened():
            self.calls.append(("open", name, total, threading.get_ident()))
            yield Stage()
            self.calls.append(("close", name, None, threading.get_ident()))

        return opened()

    def note(self, message):
        self.calls.append(("note", message, None, threading.get_ident()))


def test_two_rich_stages_open_at_once_share_one_display():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    reporter = RichReporter(console)
    with reporter.stage("decode", 10) as decode, reporter.stage("reasoning", 3) as reasoning:
        decode.advance(10)
        reasoning.advance(3)
    with reporter.stage("propagation", 5) as propagation:  # a new display after the first closed
        propagation.advance(5)
    text = console.file.getvalue()
    assert "decode" in text and "reasoning" in text and "10/10" in text and "3/3" in text and "5/5" in text


def test_a_relay_replays_the_workers_progress_on_the_owners_thread():
    target = _Recorder()
    relay = Relay(target)
    both_open = threading.Barrier(2)

    def work(name: str, n: int):
        def run():
            with relay.stage(name, n) as stage:
                both_open.wait(60)  # the two stages are open at the same time
                for _ in range(n):
                    stage.advance()
            relay.note(f"{name} done")
            return name

        return run

    assert relay.run(work("decode", 3), work("reasoning", 2)) == ["decode", "reasoning"]
    owner = threading.get_ident()
    assert {call[3] for call in target.calls} == {owner}
    for name, n in (("decode", 3), ("reasoning", 2)):
        mine = [c[0] for c in target.calls if c[1] == name]
        assert mine == ["open"] + ["advance"] * n + ["close"]
    assert sorted(c[1] for c in target.calls if c[0] == "note") == ["decode done", "reasoning done"]


def test_a_relay_raises_the_first_workers_error_after_all_have_ended():
    relay = Relay(_Recorder())
    ended = []

    def fails():
        raise OSError("disk full")

    def fails_too():
        ended.append("second")
        raise ValueError("a consequence")

    with pytest.raises(OSError, match="disk full"):
        relay.run(fails, fails_too)
    assert ended == ["second"]
    assert not [t for t in threading.enumerate() if t.name.startswith("alref-work")]


def test_an_interrupted_relay_cancels_its_workers():
    stop = threading.Event()

    class Interrupting(Reporter):
        def note(self, message):
            raise KeyboardInterrupt  # Ctrl-C on the owner's thread while it draws

    relay = Relay(Interrupting())

    def waits():
        relay.note("started")
        assert stop.wait(60)

    with pytest.raises(KeyboardInterrupt):
        relay.run(waits, cancel=stop.set)
    assert stop.is_set()  # the worker was asked to stop, and it did (run raised at once)
