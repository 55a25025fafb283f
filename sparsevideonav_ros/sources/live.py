"""Live cameras read by a background thread that keeps only the freshest frame, and reconnects.

A camera produces frames at its own rate whether or not anyone reads them; buffering them would
hand the policy frames that are already old. The grab thread reads every frame as it arrives and
keeps only the newest; poll() returns it once (None until a newer one arrives), read() waits for it.

When the camera disappears (read fails, or no frame for ``timeout_s``) the thread closes it and
tries to reopen it every ``timeout_s`` until it is back; ``status()`` says what is going on.
The first open() happens in the caller and raises SourceError: a camera that is missing at start
is a configuration error, not something to wait for silently.
"""
from __future__ import annotations

import abc
import threading
import time
from typing import Optional

import numpy as np

from .base import Frame, FrameSource, SourceError


class LiveSource(FrameSource):
    """Subclasses implement _connect(), _grab() and _disconnect(); all run on one thread at a time."""

    live = True

    def __init__(self, width: int, height: int, fps: float, timeout_s: float = 2.0):
        if not timeout_s > 0:
            raise ValueError(f'timeout_s must be > 0, got {timeout_s}')
        super().__init__(width, height, fps)
        self.timeout_s = float(timeout_s)
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self._returned_index = -1
        self._index = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.state = 'closed'  # streaming | reconnecting | closed
        self.last_error = ''
        self.reconnects = 0
        self.frames_grabbed = 0
        self.frames_skipped = 0  # grabbed but replaced by a newer one before anyone took them
        self._last_frame_time: Optional[float] = None

    # -- subclass hooks (grab thread, or open() for the first _connect) ---------------------------

    @abc.abstractmethod
    def _connect(self) -> None:
        """Open the device; set width/height/nominal_fps to what it delivers. Raise SourceError."""

    @abc.abstractmethod
    def _grab(self) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        """Block for the next frame: (rgb, depth or None); None or SourceError = camera lost."""

    @abc.abstractmethod
    def _disconnect(self) -> None:
        """Release the device; safe when already released."""

    # -- FrameSource --------------------------------------------------------------------------------

    def open(self) -> None:
        self.close()
        self._stop.clear()
        self._connect()
        self.state, self.last_error = 'streaming', ''
        self._last_frame_time = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f'{type(self).__name__}_grab', daemon=True)
        self._thread.start()

    def poll(self) -> Optional[Frame]:
        """The newest frame if it was not returned before, else None (never blocks)."""
        with self._cond:
            frame = self._latest
            if frame is None or frame.index <= self._returned_index:
                return None
            self._returned_index = frame.index
            return frame

    def read(self, timeout_s: Optional[float] = None) -> Frame:
        """Wait for a frame newer than the last one returned; SourceError after ``timeout_s`` (default
        the source's timeout_s) or when closed. Live sources never end, so this never returns None."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            while True:
                if self.state == 'closed':
                    raise SourceError(f'{self.describe()} is closed')
                frame = self._latest
                if frame is not None and frame.index > self._returned_index:
                    self._returned_index = frame.index
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(f'no frame from {self.describe()} for {self.timeout_s if timeout_s is None else timeout_s:.1f} s '
                                      f'({self.state}{": " + self.last_error if self.last_error else ""})')
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.timeout_s + 5.0)
        if self.state != 'closed':
            self._disconnect()
        with self._cond:
            self.state = 'closed'
            self._cond.notify_all()

    def describe(self) -> str:
        return type(self).__name__

    def status(self) -> dict:
        age = None if self._last_frame_time is None else time.monotonic() - self._last_frame_time
        return {'state': self.state, 'frames': self.frames_grabbed, 'skipped': self.frames_skipped,
                'reconnects': self.reconnects, 'last_frame_age_s': None if age is None else round(age, 3),
                'size': f'{self.width}x{self.height}', 'fps': self.nominal_fps, 'last_error': self.last_error}

    # -- grab thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                grabbed = self._grab()
                error = '' if grabbed is not None else f'{self.describe()}: no frame (device gone or stream ended)'
            except SourceError as exc:
                grabbed, error = None, str(exc)
            except Exception as exc:  # a driver exception must not end the thread silently
                grabbed, error = None, f'{self.describe()}: {exc!r}'
            if self._stop.is_set():
                return
            if grabbed is not None:
                self._publish(*grabbed)
                continue
            self._reconnect(error)

    def _publish(self, rgb: np.ndarray, depth: Optional[np.ndarray]) -> None:
        frame = Frame(rgb, time.time(), self._index, depth)
        self._index += 1
        self.frames_grabbed += 1
        self._last_frame_time = time.monotonic()
        with self._cond:
            if self._latest is not None and self._latest.index > self._returned_index:
                self.frames_skipped += 1
            self._latest = frame
            self._cond.notify_all()

    def _reconnect(self, error: str) -> None:
        with self._cond:
            self.state, self.last_error = 'reconnecting', error
            if self._latest is not None:  # a frame from before the loss is stale by now: never hand it out
                self._returned_index = max(self._returned_index, self._latest.index)
            self._cond.notify_all()
        self._disconnect()
        while not self._stop.wait(self.timeout_s):
            try:
                self._connect()
            except SourceError as exc:
                self.last_error = f'{error}; reopen failed: {exc}'
                continue
            except Exception as exc:
                self.last_error = f'{error}; reopen failed: {exc!r}'
                continue
            with self._cond:
                self.state = 'streaming'
                self.reconnects += 1
                self._last_frame_time = time.monotonic()
            return
