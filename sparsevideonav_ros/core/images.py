"""Conversion between sensor_msgs/Image / CompressedImage fields and numpy arrays.

cv_bridge cannot be installed in our environment, so this module does the
message <-> array conversion itself.  It deliberately works on the *fields* of
the messages (height, width, encoding, is_bigendian, step, data / format, data)
rather than the message classes, so it has no rclpy dependency and can be
tested and reused anywhere.

Array conventions (all arrays C-contiguous, row-major, origin top-left):
  rgb8 / bgr8 : (H, W, 3) uint8
  mono8       : (H, W)    uint8
  16UC1       : (H, W)    uint16, native byte order in memory, written
                little-endian (is_bigendian=0) on the wire; typically depth in mm.
"""

from __future__ import annotations

import cv2
import numpy as np


class ImageEncodingError(ValueError):
    """An image, its encoding or its compressed payload cannot be converted."""


SUPPORTED_ENCODINGS = ('rgb8', 'bgr8', 'mono8', '16UC1')

# encoding -> (numpy dtype, channels); bytes per pixel = itemsize * channels.
_LAYOUT = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'mono8': (np.dtype(np.uint8), 1),
    '16UC1': (np.dtype(np.uint16), 1),
}

# Codec names accepted in CompressedImage.format.  OpenCV detects the codec
# from the payload's magic bytes, so the name only has to be a known one.
_COMPRESSED_CODECS = ('jpeg', 'jpg', 'png')


def _layout(encoding: str) -> tuple[np.dtype, int]:
    try:
        return _LAYOUT[encoding]
    except (KeyError, TypeError):
        raise ImageEncodingError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(SUPPORTED_ENCODINGS)}'
        ) from None


def _expected_shape_text(encoding: str) -> str:
    dtype, channels = _layout(encoding)
    return f'(H, W, {channels}) {dtype.name}' if channels > 1 else f'(H, W) {dtype.name}'


def _check_array(array: np.ndarray, encoding: str) -> None:
    """Raise ImageEncodingError unless `array` has the dtype/shape `encoding` requires."""
    dtype, channels = _layout(encoding)
    if not isinstance(array, np.ndarray):
        raise ImageEncodingError(f'{encoding} image must be a numpy array, got {type(array).__name__}')
    shape_ok = (array.ndim == 3 and array.shape[2] == channels) if channels > 1 else array.ndim == 2
    if not shape_ok or array.dtype != dtype:
        raise ImageEncodingError(
            f'{encoding} image must be {_expected_shape_text(encoding)}, '
            f'got shape {array.shape} {array.dtype}'
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageEncodingError(f'{encoding} image has zero size: shape {array.shape}')


def _check_rgb(rgb: np.ndarray, what: str = 'image') -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f'shape {rgb.shape} {rgb.dtype}' if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ImageEncodingError(f'{what} must be an (H, W, 3) uint8 RGB array, got {desc}')
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageEncodingError(f'{what} has zero size: shape {rgb.shape}')


def image_fields_from_array(array: np.ndarray, encoding: str) -> dict:
    """Build sensor_msgs/Image fields from an array.

    Args:
        array: (H, W, 3) uint8 for rgb8/bgr8, (H, W) uint8 for mono8,
            (H, W) uint16 for 16UC1.
        encoding: one of SUPPORTED_ENCODINGS.

    Returns:
        dict(height, width, encoding, is_bigendian=0, step, data: bytes), rows
        unpadded (step = W * bytes per pixel), 16UC1 written little-endian.
        Splat into the message: ``Image(header=..., **fields)``.
    """
    _check_array(array, encoding)
    dtype, channels = _layout(encoding)
    # '<' pins the wire byte order regardless of the host; no-op for uint8.
    wire = np.ascontiguousarray(array, dtype=dtype.newbyteorder('<'))
    height, width = array.shape[:2]
    return dict(height=int(height), width=int(width), encoding=encoding, is_bigendian=0,
                step=int(width * channels * dtype.itemsize), data=wire.tobytes())


def array_from_image_fields(height: int, width: int, encoding: str, is_bigendian: int,
                            step: int, data) -> np.ndarray:
    """Read sensor_msgs/Image fields into a new, writable array.

    Args:
        height, width: image size in pixels (> 0).
        encoding: one of SUPPORTED_ENCODINGS.
        is_bigendian: byte order of multi-byte pixels (only matters for 16UC1).
        step: bytes per row, >= width * bytes per pixel (extra bytes are
            row padding and are dropped).
        data: bytes-like (bytes, bytearray, memoryview, array.array as the
            message stores it) or a sequence of ints, exactly step * height bytes.

    Returns:
        Array shaped/typed as in the module docstring, native byte order.
    """
    dtype, channels = _layout(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f'{encoding} image has zero or negative size {width}x{height} (WxH)')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageEncodingError(
            f'{encoding} image {width}x{height}: step {step} is smaller than the '
            f'{row_bytes} bytes a row needs ({width} px * {channels * dtype.itemsize} B)'
        )
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # plain list/tuple of ints, e.g. a hand-built message
        buf = np.asarray(data, dtype=np.uint8).ravel()
    if buf.size != step * height:
        raise ImageEncodingError(
            f'{encoding} image {width}x{height} with step {step} needs {step * height} '
            f'data bytes, got {buf.size}'
        )
    # copy() drops row padding and detaches from the read-only message buffer;
    # astype then byte-swaps to native only when the wire order differs.
    rows = buf.reshape(height, step)[:, :row_bytes].copy()
    pixels = rows.view(dtype.newbyteorder('>' if is_bigendian else '<')).astype(dtype, copy=False)
    return pixels.reshape((height, width, channels) if channels > 1 else (height, width))


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a colour/mono image to (H, W, 3) uint8 RGB (may return `array` itself for rgb8).

    16UC1 is depth, not colour, and is rejected.
    """
    if encoding == '16UC1':
        raise ImageEncodingError('16UC1 is a depth encoding and cannot be used as a colour image; '
                                 'colour needs rgb8, bgr8 or mono8')
    _check_array(array, encoding)
    if encoding == 'bgr8':
        return np.ascontiguousarray(array[..., ::-1])
    if encoding == 'mono8':
        return np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG-encode an (H, W, 3) uint8 RGB image at `quality` (1..100)."""
    _check_rgb(rgb)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f'JPEG quality must be in 1..100, got {quality}')
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageEncodingError(f'OpenCV failed to JPEG-encode an image of shape {rgb.shape}')
    return buf.tobytes()


def _decode(data, what: str) -> np.ndarray:
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size == 0:
        raise ImageEncodingError(f'cannot decode {what}: empty data')
    # Always 3-channel 8-bit (grey images are replicated). OpenCV >= 4.10 decodes straight to RGB,
    # saving a full-frame colour conversion per frame; older ones decode to BGR.
    if _IMREAD_COLOR_RGB is not None:
        rgb = cv2.imdecode(buf, _IMREAD_COLOR_RGB)
    else:
        rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        rgb = None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
    if rgb is None:
        raise ImageEncodingError(f'cannot decode {what}: {buf.size} bytes are not a valid image')
    return rgb


_IMREAD_COLOR_RGB = getattr(cv2, 'IMREAD_COLOR_RGB', None)


def decode_jpeg(data) -> np.ndarray:
    """Decode JPEG bytes to an (H, W, 3) uint8 RGB image."""
    return _decode(data, 'JPEG')


def compressed_format_string() -> str:
    """CompressedImage.format we publish: rgb8 source, JPEG of the BGR conversion.

    This follows image_transport's compressed plugin ("<orig encoding>; jpeg
    compressed bgr8"), so standard republishers/viewers decode our frames.
    """
    return 'rgb8; jpeg compressed bgr8'


def decode_compressed(format: str, data) -> np.ndarray:  # noqa: A002 (mirrors the msg field)
    """Decode sensor_msgs/CompressedImage fields to an (H, W, 3) uint8 RGB image.

    Accepts plain codec names ('jpeg', 'jpg', 'png') and image_transport style
    strings ('rgb8; jpeg compressed bgr8', 'mono8; png compressed mono8', ...).
    compressedDepth payloads are rejected (they are depth, not colour).
    """
    fmt = str(format).strip().lower()
    accepted = "'jpeg', 'jpg', 'png' or image_transport style '<enc>; jpeg compressed <enc>'"
    if 'compresseddepth' in fmt:
        raise ImageEncodingError(f'CompressedImage format {format!r} is compressed depth, not colour; '
                                 f'accepted: {accepted}')
    # image_transport: '<original encoding>; <codec> compressed <encoding>'.
    codec_part = fmt.split(';', 1)[1] if ';' in fmt else fmt
    words = codec_part.replace(',', ' ').split()
    if not words or words[0] not in _COMPRESSED_CODECS:
        raise ImageEncodingError(f'unsupported CompressedImage format {format!r}; accepted: {accepted}')
    return _decode(data, f'CompressedImage ({format!r})')


def center_crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Crop the largest centred square from (H, W, 3) uint8 and resize to (size, size, 3) uint8."""
    _check_rgb(rgb)
    if int(size) <= 0:
        raise ValueError(f'crop size must be a positive number of pixels, got {size}')
    size = int(size)
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    # INTER_AREA avoids aliasing when shrinking; linear is better when enlarging.
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(square), (size, size), interpolation=interp)


def check_image_size(array: np.ndarray, expected_width: int, expected_height: int) -> None:
    """Raise ImageEncodingError if `array` (H, W[, C]) is not expected_width x expected_height.

    A 0 expectation accepts any size in that dimension.
    """
    if expected_width < 0 or expected_height < 0:
        raise ValueError(f'expected size must be >= 0 (0 = any), got {expected_width}x{expected_height}')
    if not isinstance(array, np.ndarray) or array.ndim < 2:
        raise ImageEncodingError(f'expected an (H, W[, C]) image array, got {getattr(array, "shape", type(array))}')
    h, w = array.shape[:2]
    if (expected_width and w != expected_width) or (expected_height and h != expected_height):
        want = f'{expected_width or "any"}x{expected_height or "any"}'
        raise ImageEncodingError(f'frame is {w}x{h} (WxH) but the configured size is {want}; '
                                 f'fix the source or set the size to 0 to accept any')
