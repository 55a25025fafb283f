"""Intel RealSense (D455) through pyrealsense2: colour, optionally depth aligned to colour.

``device`` selects the camera: '' = the first one found, a serial number = that camera, a path to
a .db3/.bag recording = play it back through the same pipeline (how this is tested without a
camera; write_recording() makes such recordings with the library's software device). The grab
thread (LiveSource) keeps the freshest frame set; when frames stop (unplugged camera, USB reset)
the pipeline is stopped and restarted every ``timeout_s`` until the camera is back.

pyrealsense2 needs Debian's libusb-1.0-0 (the Makefile installs it). It is imported lazily, so the
other sources work without it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .base import SourceError
from .live import LiveSource

RECORDING_SUFFIXES = ('.db3', '.bag')


def import_rs():
    try:
        import pyrealsense2 as rs
    except ImportError as error:
        raise SourceError(f'pyrealsense2 does not import ({error}); install it with `pip install pyrealsense2` and '
                          f'Debian\'s libusb-1.0-0 (`apt-get install libusb-1.0-0`; `make venv` does both)') from error
    return rs


def is_recording(device: str) -> bool:
    return bool(device) and (device.lower().endswith(RECORDING_SUFFIXES) or os.path.sep in device)


def connected_serials() -> list[str]:
    rs = import_rs()
    return [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]


class RealSenseSource(LiveSource):
    """Colour frames (rgb8) at width x height @ fps, optionally with aligned z16 depth in mm.

    Args:
        device: '' (first camera), a serial number, or a .db3/.bag recording path.
        width, height, fps: colour (and depth) stream profile asked of the camera.
        depth: also stream depth and align it to colour (Frame.depth, uint16 mm).
        loop: for recordings: repeat at the end (else the end counts as a lost camera).
        timeout_s: no frame for this long = camera lost; restart attempts this often.
    """

    def __init__(self, device: str = '', width: int = 640, height: int = 480, fps: float = 30.0,
                 depth: bool = False, loop: bool = True, timeout_s: float = 2.0):
        if int(width) <= 0 or int(height) <= 0 or not fps > 0:
            raise ValueError(f'RealSense width, height and fps must be > 0, got {width}x{height} @ {fps}')
        super().__init__(width, height, fps, timeout_s)
        self.device = str(device or '')
        self.depth, self.loop = bool(depth), bool(loop)
        self.requested = (int(width), int(height), int(round(fps)))
        self.serial = ''
        self.depth_scale_mm = 1.0
        self._pipeline = None
        self._align = None

    def describe(self) -> str:
        if is_recording(self.device):
            return f'RealSense recording {self.device}'
        return f'RealSense camera {self.device or "(first found)"}'

    def _connect(self) -> None:
        rs = import_rs()
        width, height, fps = self.requested
        config = rs.config()
        if is_recording(self.device):
            if not Path(self.device).is_file():
                raise SourceError(f'{self.describe()}: file not found')
            config.enable_device_from_file(self.device, repeat_playback=self.loop)
        else:
            # pipeline.start() waits ~15 s for a missing camera; the device list answers at once.
            serials = connected_serials()
            if not serials:
                raise SourceError(self._start_error('No device connected'))
            if self.device and self.device not in serials:
                raise SourceError(self._start_error('No device connected'))
            if self.device:
                config.enable_device(self.device)
        config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        if self.depth:
            config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as error:
            raise SourceError(self._start_error(str(error))) from error
        try:
            device = profile.get_device()
            self.serial = device.get_info(rs.camera_info.serial_number)
            colour = profile.get_stream(rs.stream.color).as_video_stream_profile()
            intr = colour.get_intrinsics()
            self.width, self.height, self.nominal_fps = colour.width(), colour.height(), float(colour.fps())
            self.intrinsics = (float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy))
            if self.depth:
                self.depth_scale_mm = float(device.first_depth_sensor().get_depth_scale()) * 1000.0
                self._align = rs.align(rs.stream.color)
        except RuntimeError as error:
            pipeline.stop()
            raise SourceError(f'{self.describe()}: {error}') from error
        self._pipeline = pipeline

    def _start_error(self, message: str) -> str:
        width, height, fps = self.requested
        streams = f'rgb8 {width}x{height} @ {fps} fps' + (' + z16 depth' if self.depth else '')
        if 'No device connected' in message:
            if self.device and not is_recording(self.device):
                serials = connected_serials()
                return (f'no RealSense camera with serial {self.device}; connected: '
                        f'{", ".join(serials) if serials else "none"}')
            return f'no RealSense camera connected ({message}); check the USB 3 cable and `rs-enumerate-devices`'
        if "Couldn't resolve requests" in message:
            return f'{self.describe()} does not offer {streams} ({message})'
        return f'{self.describe()}: {message}'

    def _grab(self) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        pipeline = self._pipeline
        if pipeline is None:
            return None
        try:
            frames = pipeline.wait_for_frames(int(self.timeout_s * 1000))
        except RuntimeError as error:  # "Frame didn't arrive within ..." = unplugged / stream ended
            raise SourceError(f'{self.describe()}: {error}') from error
        if self._align is not None:
            frames = self._align.process(frames)
        colour = frames.get_color_frame()
        if not colour:
            return None
        rgb = np.asanyarray(colour.get_data()).copy()
        depth = None
        if self.depth:
            depth_frame = frames.get_depth_frame()
            if not depth_frame:
                return None
            depth = np.asanyarray(depth_frame.get_data())
            if abs(self.depth_scale_mm - 1.0) > 1e-6:  # device units -> millimetres
                depth = np.clip(np.rint(depth * self.depth_scale_mm), 0, 65535).astype(np.uint16)
            else:
                depth = depth.copy()
        return rgb, depth

    def _disconnect(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.stop()
            except RuntimeError:
                pass  # already stopped by the device going away; nothing left to release

    def status(self) -> dict:
        return {**super().status(), 'device': self.device, 'serial': self.serial}


def write_recording(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0,
                    depths: Optional[Iterable[np.ndarray]] = None, serial: str = '000000000000',
                    fx: Optional[float] = None) -> int:
    """Record RGB frames (and uint16 mm depth of the same size) as a RealSense recording (.db3).

    Uses the library's own software device and recorder, so the file plays back through
    RealSenseSource exactly like one recorded from a camera (colour 'RGB Camera' sensor, depth
    'Stereo Module' sensor with depth_units 0.001 and identity extrinsics to colour). Frames are fed
    at ``fps`` in real time (playback follows their arrival), so this takes len(frames) / fps
    seconds. Returns the number of frames written.
    """
    rs = import_rs()
    path = Path(path)
    if path.suffix.lower() not in RECORDING_SUFFIXES:
        raise ValueError(f'recording path must end in {"/".join(RECORDING_SUFFIXES)}, got {path}')
    if not path.parent.is_dir():
        raise SourceError(f'cannot write {path}: folder {path.parent} does not exist')
    frames = list(frames)
    depths = None if depths is None else list(depths)
    if not frames:
        raise ValueError('no frames to record')
    height, width = frames[0].shape[:2]
    for i, rgb in enumerate(frames):
        if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
            raise ValueError(f'frame {i} must be ({height}, {width}, 3) uint8 like the first, got {rgb.shape} {rgb.dtype}')
    if depths is not None:
        if len(depths) != len(frames):
            raise ValueError(f'{len(depths)} depth images for {len(frames)} frames')
        for i, depth in enumerate(depths):
            if depth.dtype != np.uint16 or depth.shape != (height, width):
                raise ValueError(f'depth {i} must be ({height}, {width}) uint16, got {depth.shape} {depth.dtype}')
    fps_int = int(round(fps))

    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = width, height
    intrinsics.ppx, intrinsics.ppy = (width - 1) / 2.0, (height - 1) / 2.0
    intrinsics.fx = intrinsics.fy = float(fx if fx is not None else 0.5 * width / np.tan(np.radians(90.0) / 2))
    intrinsics.model, intrinsics.coeffs = rs.distortion.none, [0.0] * 5

    def stream(kind, uid, fmt, bpp):
        s = rs.video_stream()
        s.type, s.index, s.uid, s.width, s.height, s.fps, s.bpp, s.fmt = kind, 0, uid, width, height, fps_int, bpp, fmt
        s.intrinsics = intrinsics
        return s

    device = rs.software_device()
    device.register_info(rs.camera_info.name, 'Intel RealSense D455 (software device)')
    device.register_info(rs.camera_info.serial_number, serial)
    colour_sensor = device.add_sensor('RGB Camera')
    colour_profile = colour_sensor.add_video_stream(stream(rs.stream.color, 0, rs.format.rgb8, 3))
    sensors = [(colour_sensor, colour_profile)]
    depth_sensor = depth_profile = None
    if depths is not None:
        depth_sensor = device.add_sensor('Stereo Module')
        depth_profile = depth_sensor.add_video_stream(stream(rs.stream.depth, 1, rs.format.z16, 2))
        depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)
        identity = rs.extrinsics()
        identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        depth_profile.register_extrinsics_to(colour_profile, identity)
        sensors.append((depth_sensor, depth_profile))
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(len(frames) * 2 + 2)
    for sensor, profile in sensors:
        sensor.open(profile)
        sensor.start(queue)
    start = time.monotonic()
    try:
        for i, rgb in enumerate(frames):
            # Playback follows arrival times at the recorder, so frames go in at the recorded rate.
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp_ms = i * 1000.0 / fps
            for sensor, profile, pixels, bpp in ((colour_sensor, colour_profile, rgb, 3),) + (
                    ((depth_sensor, depth_profile, depths[i], 2),) if depths is not None else ()):
                frame = rs.software_video_frame()
                frame.pixels, frame.bpp, frame.stride = np.ascontiguousarray(pixels), bpp, width * bpp
                frame.timestamp, frame.frame_number = stamp_ms, i
                frame.domain = rs.timestamp_domain.hardware_clock
                frame.profile = profile.as_video_stream_profile()
                if bpp == 2:
                    frame.depth_units = 0.001
                sensor.on_video_frame(frame)
    finally:
        for sensor, _ in sensors:
            sensor.stop()
            sensor.close()
        del recorder  # closes and finalises the file
    return len(frames)
