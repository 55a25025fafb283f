"""Progress lines for long jobs (evaluation, the demo, model loading): plain Python, no dependencies.

On a terminal one line is redrawn in place; in a log file (stderr not a tty: a node's log, CI) a new
line is written at most every ``every_s`` seconds, so a 60 s evaluation leaves a dozen lines, not
thousands.

    progress = Progress("evaluate", total=600, unit="frames")
    for i in range(600):
        ...
        progress.update(i + 1, note="12 plans")
    progress.finish("done")

Model loading has no count to show: :func:`loading` says what loads (and its size on disk) before it
starts and how long it took after.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, TextIO

BAR_WIDTH = 20


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KB', 2.8e9 -> '2.8 GB' (powers of 1000, as file managers show sizes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000.0
    return f"{size:.1f} TB"


def human_seconds(seconds: float) -> str:
    """45.2 -> '45 s', 130 -> '2 min 10 s', 4000 -> '1 h 07 min'."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when missing)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


class Progress:
    """One progress line for ``label``: done/total (percent and bar when total is known), elapsed, ETA.

    total: the count at which the job is complete (None or 0: unknown, no percent or ETA).
    unit: what is counted ('frames', 's'). every_s: seconds between lines when the stream is not a tty.
    clock: seconds (time.monotonic; tests pass a fake one).
    """

    def __init__(self, label: str, total: Optional[float] = None, unit: str = "", stream: Optional[TextIO] = None,
                 every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, total or None, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.clock = every_s, clock
        self.started = clock()
        self.done = 0.0
        self.lines = 0  # lines written (tests)
        self._last_write = -float("inf")
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._finished = False

    def eta_s(self) -> Optional[float]:
        """Seconds left at the rate so far (None when the total is unknown or nothing is done yet)."""
        if not self.total or self.done <= 0:
            return None
        elapsed = self.clock() - self.started
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def line(self, note: str = "") -> str:
        elapsed = self.clock() - self.started
        count = f"{self.done:g}" + (f"/{self.total:g}" if self.total else "") + (f" {self.unit}" if self.unit else "")
        parts = [f"{self.label}:"]
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(round(fraction * BAR_WIDTH))
            parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
        parts.append(count)
        parts.append(f"{human_seconds(elapsed)} elapsed")
        eta = self.eta_s()
        if eta is not None and not self._finished:
            parts.append(f"ETA {human_seconds(eta)}")
        if note:
            parts.append(f"({note})")
        return " ".join(parts)

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        """Set the count to ``done``; writes a line when due (always with ``force``)."""
        self.done = float(done)
        now = self.clock()
        due = force or (now - self._last_write >= (0.2 if self._interactive else self.every_s))
        if not due:
            return
        self._last_write = now
        self._write(self.line(note))

    def finish(self, note: str = "") -> None:
        """The final line (always written), ending the in-place line on a terminal."""
        self._finished = True
        self._write(self.line(note), final=True)

    def _write(self, text: str, final: bool = False) -> None:
        self.lines += 1
        if self._interactive:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


@contextlib.contextmanager
def loading(what: str, path: Optional[Path] = None, stream: Optional[TextIO] = None,
            size_bytes: Optional[int] = None) -> Iterator[None]:
    """'<what> (<size on disk>) from <path>...' before the block and '<what>: done in <t>' after it (on
    stderr), so a start-up that loads gigabytes says what it waits for; a failure says how long it tried.
    size_bytes: the size to show (default: everything under ``path``)."""
    stream = stream if stream is not None else sys.stderr
    size = size_bytes if size_bytes is not None else (size_on_disk(path) if path is not None else 0)
    where = f" from {path}" if path is not None else ""
    stream.write(f"{what}{f' ({human_bytes(size)})' if size else ''}{where}...\n")
    stream.flush()
    started = time.monotonic()
    try:
        yield
    except BaseException:
        stream.write(f"{what}: failed after {human_seconds(time.monotonic() - started)}\n")
        stream.flush()
        raise
    stream.write(f"{what}: done in {human_seconds(time.monotonic() - started)}\n")
    stream.flush()


def start_loading(what: str, path: Optional[Path] = None, stream: Optional[TextIO] = None,
                  size_bytes: Optional[int] = None) -> Callable[[], None]:
    """:func:`loading` as two calls, for code that cannot be wrapped in a block: says what loads now and
    returns the function that says it is done."""
    block = loading(what, path, stream, size_bytes)
    block.__enter__()
    return lambda: block.__exit__(None, None, None)
