"""Tests for sparsevideonav_ros.core.images (message field <-> array conversion, JPEG)."""

import array as pyarray

import cv2
import numpy as np
import pytest

from sparsevideonav_ros.core import images as im
from sparsevideonav_ros.core.images import ImageEncodingError


def _sample(encoding, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    if encoding in ('rgb8', 'bgr8'):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if encoding == 'mono8':
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    return rng.integers(0, 65536, (h, w), dtype=np.uint16)


def _smooth_rgb(h=120, w=160):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([255 * x / w, 255 * y / h, 128 + 60 * np.sin(x / 15) * np.cos(y / 20)], -1).astype(np.uint8)


@pytest.mark.parametrize('encoding', im.SUPPORTED_ENCODINGS)
def test_round_trip_every_encoding(encoding):
    arr = _sample(encoding)
    fields = im.image_fields_from_array(arr, encoding)
    bpp = 2 if encoding == '16UC1' else (3 if arr.ndim == 3 else 1)
    assert fields['height'] == 5 and fields['width'] == 7 and fields['encoding'] == encoding
    assert fields['is_bigendian'] == 0 and fields['step'] == 7 * bpp and len(fields['data']) == 35 * bpp
    back = im.array_from_image_fields(**fields)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    back[0, 0] = 0  # must be a writable copy, not a view of the message bytes


def test_16uc1_is_little_endian_on_the_wire():
    fields = im.image_fields_from_array(np.array([[0x0102]], np.uint16), '16UC1')
    assert fields['data'] == b'\x02\x01'


@pytest.mark.parametrize('encoding', im.SUPPORTED_ENCODINGS)
def test_padded_rows(encoding):
    arr = _sample(encoding, h=4, w=5, seed=1)
    row = np.frombuffer(im.image_fields_from_array(arr, encoding)['data'], np.uint8).reshape(4, -1)
    pad = 3
    data = np.concatenate([row, np.full((4, pad), 0xEE, np.uint8)], axis=1).tobytes()
    back = im.array_from_image_fields(4, 5, encoding, 0, row.shape[1] + pad, data)
    np.testing.assert_array_equal(back, arr)


def test_big_endian_16uc1_with_padding():
    depth = np.array([[1, 258, 65535], [1000, 0, 4660]], np.uint16)
    rows = depth.astype('>u2').view(np.uint8).reshape(2, 6)
    data = np.concatenate([rows, np.zeros((2, 2), np.uint8)], axis=1).tobytes()
    back = im.array_from_image_fields(2, 3, '16UC1', 1, 8, data)
    assert back.dtype == np.uint16 and back.dtype.isnative
    np.testing.assert_array_equal(back, depth)


@pytest.mark.parametrize('data_kind', [bytes, bytearray, memoryview, list, 'array'])
def test_data_container_types(data_kind):
    arr = _sample('rgb8')
    raw = im.image_fields_from_array(arr, 'rgb8')['data']
    data = pyarray.array('B', raw) if data_kind == 'array' else data_kind(raw)
    np.testing.assert_array_equal(im.array_from_image_fields(5, 7, 'rgb8', 0, 21, data), arr)


def test_unknown_encoding_is_named():
    with pytest.raises(ImageEncodingError, match=r"'yuv422'.*rgb8, bgr8, mono8, 16UC1"):
        im.array_from_image_fields(2, 2, 'yuv422', 0, 4, bytes(8))
    with pytest.raises(ImageEncodingError, match='32FC1'):
        im.image_fields_from_array(np.zeros((2, 2), np.float32), '32FC1')


def test_wrong_data_length_names_sizes():
    with pytest.raises(ImageEncodingError, match=r'rgb8 image 4x3 with step 12 needs 36 data bytes, got 35'):
        im.array_from_image_fields(3, 4, 'rgb8', 0, 12, bytes(35))
    with pytest.raises(ImageEncodingError, match='needs 36 data bytes, got 40'):
        im.array_from_image_fields(3, 4, 'rgb8', 0, 12, bytes(40))


def test_step_too_small_and_zero_size():
    with pytest.raises(ImageEncodingError, match='step 7 is smaller than the 8 bytes'):
        im.array_from_image_fields(2, 4, '16UC1', 0, 7, bytes(14))
    with pytest.raises(ImageEncodingError, match='zero or negative size 0x3'):
        im.array_from_image_fields(3, 0, 'mono8', 0, 0, b'')
    with pytest.raises(ImageEncodingError, match='zero size'):
        im.image_fields_from_array(np.zeros((0, 4, 3), np.uint8), 'rgb8')


@pytest.mark.parametrize('arr, encoding, msg', [
    (np.zeros((4, 4), np.uint8), 'rgb8', r'\(H, W, 3\) uint8, got shape \(4, 4\) uint8'),
    (np.zeros((4, 4, 3), np.float32), 'bgr8', 'got shape'),
    (np.zeros((4, 4, 3), np.uint8), 'mono8', r'\(H, W\) uint8'),
    (np.zeros((4, 4), np.uint8), '16UC1', r'\(H, W\) uint16, got shape \(4, 4\) uint8'),
    ([[1, 2]], 'mono8', 'numpy array'),
])
def test_bad_dtype_or_shape(arr, encoding, msg):
    with pytest.raises(ImageEncodingError, match=msg):
        im.image_fields_from_array(arr, encoding)


def test_to_rgb():
    rgb = _sample('rgb8')
    assert im.to_rgb(rgb, 'rgb8') is rgb
    np.testing.assert_array_equal(im.to_rgb(np.ascontiguousarray(rgb[..., ::-1]), 'bgr8'), rgb)
    mono = _sample('mono8')
    out = im.to_rgb(mono, 'mono8')
    assert out.shape == (5, 7, 3) and all((out[..., c] == mono).all() for c in range(3))
    with pytest.raises(ImageEncodingError, match='depth'):
        im.to_rgb(_sample('16UC1'), '16UC1')
    with pytest.raises(ImageEncodingError):
        im.to_rgb(mono, 'rgb8')


def test_jpeg_round_trip_small_error():
    rgb = _smooth_rgb()
    data = im.encode_jpeg(rgb, quality=85)
    assert data[:3] == b'\xff\xd8\xff' and len(data) < rgb.nbytes / 5
    back = im.decode_jpeg(data)
    assert back.shape == rgb.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb).mean() < 3
    # Channel order survives: a pure red image stays red (catches a missing BGR<->RGB swap).
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    r, g, b = im.decode_jpeg(im.encode_jpeg(red))[16, 16]
    assert r > 240 and g < 15 and b < 15


def test_jpeg_bad_input():
    with pytest.raises(ImageEncodingError, match=r'\(H, W, 3\) uint8'):
        im.encode_jpeg(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match='quality'):
        im.encode_jpeg(np.zeros((4, 4, 3), np.uint8), quality=0)
    with pytest.raises(ImageEncodingError, match='not a valid image'):
        im.decode_jpeg(b'definitely not a jpeg')
    with pytest.raises(ImageEncodingError, match='empty'):
        im.decode_jpeg(b'')


def test_compressed_formats():
    rgb = _smooth_rgb()
    jpeg = im.encode_jpeg(rgb)
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    png = png.tobytes()
    assert im.compressed_format_string() == 'rgb8; jpeg compressed bgr8'
    for fmt in ('jpeg', 'JPEG', 'jpg', im.compressed_format_string(), 'bgr8; jpeg compressed bgr8'):
        assert np.abs(im.decode_compressed(fmt, jpeg).astype(int) - rgb).mean() < 3
    for fmt in ('png', 'rgb8; png compressed bgr8'):
        np.testing.assert_array_equal(im.decode_compressed(fmt, png), rgb)  # lossless
    ok, mono_png = cv2.imencode('.png', rgb[..., 1])
    out = im.decode_compressed('mono8; png compressed mono8', mono_png.tobytes())
    assert out.shape == rgb.shape and (out[..., 0] == rgb[..., 1]).all()


@pytest.mark.parametrize('fmt', ['', 'tiff', 'h264', 'rgb8; theora compressed', '16UC1; compressedDepth png'])
def test_unknown_compressed_formats(fmt):
    with pytest.raises(ImageEncodingError, match='accepted'):
        im.decode_compressed(fmt, im.encode_jpeg(_smooth_rgb(16, 16)))


def test_undecodable_compressed_data():
    with pytest.raises(ImageEncodingError, match='not a valid image'):
        im.decode_compressed('jpeg', b'\xff\xd8\xff' + bytes(100))


def test_center_crop_resize():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, 50:150] = 200  # exactly the centred square
    out = im.center_crop_resize(rgb, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and (out == 200).all()
    tall = _sample('rgb8', h=90, w=30)
    np.testing.assert_array_equal(im.center_crop_resize(tall, 30), tall[30:60])
    assert im.center_crop_resize(tall, 224).shape == (224, 224, 3)  # upscaling works too
    with pytest.raises(ValueError, match='positive'):
        im.center_crop_resize(rgb, 0)
    with pytest.raises(ImageEncodingError):
        im.center_crop_resize(rgb[..., 0], 32)


def test_check_image_size():
    frame = np.zeros((480, 640, 3), np.uint8)
    im.check_image_size(frame, 640, 480)
    im.check_image_size(frame, 0, 0)
    im.check_image_size(frame, 640, 0)
    im.check_image_size(frame[..., 0], 0, 480)
    with pytest.raises(ImageEncodingError, match=r'frame is 640x480 \(WxH\) but the configured size is 1280x720'):
        im.check_image_size(frame, 1280, 720)
    with pytest.raises(ImageEncodingError, match='anyx720'):
        im.check_image_size(frame, 0, 720)
    with pytest.raises(ValueError, match='>= 0'):
        im.check_image_size(frame, -1, 0)


def test_real_ros_messages_round_trip():
    """The fields fit the real message classes, and what the classes store reads back."""
    import sensor_msgs.msg as msg_mod  # a required dependency: missing means a broken install, not a skip
    for encoding in im.SUPPORTED_ENCODINGS:
        arr = _sample(encoding, h=6, w=9, seed=2)
        msg = msg_mod.Image(**im.image_fields_from_array(arr, encoding))
        msg.header.frame_id = 'camera_optical'
        back = im.array_from_image_fields(msg.height, msg.width, msg.encoding, msg.is_bigendian,
                                          msg.step, msg.data)
        np.testing.assert_array_equal(back, arr)

    rgb = _smooth_rgb()
    cmsg = msg_mod.CompressedImage(format=im.compressed_format_string(), data=im.encode_jpeg(rgb))
    back = im.decode_compressed(cmsg.format, cmsg.data)
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 3
