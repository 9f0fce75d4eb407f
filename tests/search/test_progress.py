"""The progress line: redrawn with \\r on a terminal, one final line elsewhere."""

from __future__ import annotations

import io

from lowbit.search.progress import Progress, format_eta


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_redraws_in_place():
    stream = _Tty()
    bar = Progress("joint", total=4, stream=stream)
    bar.update(done=1, failed=0)
    bar.update(done=2, failed=1, hypervolume=1.25)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    last = text.rsplit("\r", 1)[1]
    assert "[joint] 2/4 done, 1 failed, HV 1.2500" in last and "ETA" in last


def test_not_a_terminal_prints_only_a_final_line():
    stream = io.StringIO()
    bar = Progress("random", total=3, stream=stream)
    bar.update(done=1, failed=0)
    assert stream.getvalue() == ""
    bar.update(done=3, failed=0)
    bar.close()
    assert stream.getvalue().count("\n") == 1 and "3/3 done" in stream.getvalue()


def test_disabled_is_silent_and_eta_format():
    stream = _Tty()
    bar = Progress("x", total=2, stream=stream, enabled=False)
    bar.update(done=1, failed=0)
    bar.close()
    assert stream.getvalue() == ""
    assert format_eta(3725) == "1:02:05" and format_eta(None) == "--:--"
