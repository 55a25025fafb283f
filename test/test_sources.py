"""Tests for sparsevideonav_ros.sources (synthetic, video file, image folder, factory)."""

import time

import cv2
import numpy as np
import pytest

from sparsevideonav_ros.sources.base import Frame, FrameSource, SourceError
from sparsevideonav_ros.sources.factory import SOURCE_KINDS, make_source
from sparsevideonav_ros.sources.file import ImageFolderSource, VideoFileSource, write_video
from sparsevideonav_ros.sources.synthetic import SyntheticSource


def _frames(n, w=96, h=64):
    with SyntheticSource(w, h, fps=10.0) as src:
        return [src.read().rgb for _ in range(n)]


def test_frame_validates_rgb():
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        Frame(np.zeros((4, 4), np.uint8), None, 0)


def test_synthetic_shape_and_determinism():
    with SyntheticSource(320, 240, fps=15.0, seed=1) as a, SyntheticSource(320, 240, fps=15.0, seed=1) as b:
        fa, fb = [a.read() for _ in range(5)], [b.read() for _ in range(5)]
    assert isinstance(a, FrameSource) and (a.width, a.height, a.nominal_fps) == (320, 240, 15.0)
    for i, (x, y) in enumerate(zip(fa, fb)):
        assert x.rgb.shape == (240, 320, 3) and x.rgb.dtype == np.uint8
        assert x.index == i and x.stamp is None
        np.testing.assert_array_equal(x.rgb, y.rgb)
    assert not np.array_equal(fa[0].rgb, fa[4].rgb)  # the scene moves
    np.testing.assert_array_equal(SyntheticSource(320, 240, seed=1).render(3), fa[3].rgb)
    assert not np.array_equal(SyntheticSource(320, 240, seed=2).render(0), fa[0].rgb)


def test_synthetic_door_grows_and_reopen_restarts():
    src = SyntheticSource(160, 120, fps=10.0)
    # The door is the only strongly saturated thing in the scene.
    def door_px(rgb):
        rgb = rgb.astype(int)
        return int(((rgb.max(-1) - rgb.min(-1)) > 80).sum())
    assert door_px(src.render(0)) < door_px(src.render(60)) < door_px(src.render(120))
    with src:
        first = src.read().rgb
        src.read()
    with src:
        np.testing.assert_array_equal(src.read().rgb, first)


def test_synthetic_is_cheap_and_validates():
    src = SyntheticSource()
    src.render(0)
    t0 = time.perf_counter()
    for i in range(20):
        src.render(i)
    assert (time.perf_counter() - t0) / 20 < 0.02  # ~2 ms typical; generous bound for slow CI
    with pytest.raises(SourceError, match='before open'):
        SyntheticSource().read()
    with pytest.raises(ValueError, match='fps'):
        SyntheticSource(fps=0)
    with pytest.raises(ValueError, match='16x16'):
        SyntheticSource(8, 8)


def test_write_and_read_video(tmp_path):
    path = tmp_path / 'clip.mp4'
    frames = _frames(12)
    assert write_video(path, frames, fps=10.0) == 12
    with VideoFileSource(path) as src:
        assert (src.width, src.height, src.nominal_fps) == (96, 64, 10.0)
        assert src.frame_count == 12
        got = list(src)
    assert [f.index for f in got] == list(range(12))
    assert all(f.rgb.shape == (64, 96, 3) and f.stamp is None for f in got)
    # Lossy codec: close, and not channel-swapped (a swap would give a large error).
    err = np.mean([np.abs(g.rgb.astype(int) - f).mean() for g, f in zip(got, frames)])
    assert err < 12
    with pytest.raises(SourceError, match='before open'):
        src.read()


def test_video_loop(tmp_path):
    path = tmp_path / 'clip.mp4'
    write_video(path, (Frame(rgb, None, i) for i, rgb in enumerate(_frames(5))), fps=5.0)
    with VideoFileSource(path, loop=True) as src:
        got = [src.read() for _ in range(13)]
    assert [f.index for f in got] == list(range(13))
    np.testing.assert_array_equal(got[0].rgb, got[5].rgb)
    np.testing.assert_array_equal(got[2].rgb, got[12].rgb)


def test_video_errors(tmp_path):
    missing = tmp_path / 'nope.mp4'
    with pytest.raises(SourceError, match=f'not found: {missing}'):
        VideoFileSource(missing).open()
    junk = tmp_path / 'junk.mp4'
    junk.write_bytes(b'this is not a video' * 100)
    with pytest.raises(SourceError, match=str(junk)):
        VideoFileSource(junk).open()
    with pytest.raises(SourceError, match='does not exist'):
        write_video(tmp_path / 'no_dir' / 'x.mp4', _frames(1), fps=5)
    with pytest.raises(ValueError, match='no frames'):
        write_video(tmp_path / 'empty.mp4', [], fps=5)
    with pytest.raises(ValueError, match='frame 1 is'):
        write_video(tmp_path / 'mixed.mp4', [np.zeros((64, 96, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)], fps=5)
    with pytest.raises(ValueError, match='fps'):
        write_video(tmp_path / 'x.mp4', _frames(1), fps=0)


def _write_images(folder, names, w=40, h=30):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        img = np.full((h, w, 3), 0, np.uint8)
        img[..., 2] = 10 * i  # OpenCV writes BGR: channel 2 is red
        assert cv2.imwrite(str(folder / name), img)


def test_image_folder_order_and_loop(tmp_path):
    # Natural order (2 before 10); mixed suffixes and case; non-images ignored.
    names = ['frame1.png', 'frame2.JPG', 'frame10.png', 'frame11.jpeg']
    _write_images(tmp_path / 'imgs', names)
    (tmp_path / 'imgs' / 'notes.txt').write_text('ignored')
    with ImageFolderSource(tmp_path / 'imgs', fps=4.0) as src:
        assert (src.width, src.height, src.nominal_fps) == (40, 30, 4.0)
        assert [p.name for p in src.files] == names
        got = list(src)
    assert [f.index for f in got] == [0, 1, 2, 3]
    assert [int(f.rgb[0, 0, 0]) for f in got] == [0, 10, 20, 30]  # red channel, in order
    with ImageFolderSource(tmp_path / 'imgs', fps=4.0, loop=True) as src:
        reds = [int(src.read().rgb[0, 0, 0]) for _ in range(6)]
    assert reds == [0, 10, 20, 30, 0, 10]


def test_image_folder_errors(tmp_path):
    with pytest.raises(SourceError, match='not found'):
        ImageFolderSource(tmp_path / 'missing', fps=5).open()
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SourceError, match='no .png/.jpg/.jpeg files'):
        ImageFolderSource(tmp_path / 'empty', fps=5).open()
    with pytest.raises(ValueError, match='fps'):
        ImageFolderSource(tmp_path, fps=0)
    _write_images(tmp_path / 'mixed', ['a.png'])
    _write_images(tmp_path / 'mixed', ['b.png'], w=20)
    with ImageFolderSource(tmp_path / 'mixed', fps=5) as src:
        src.read()
        with pytest.raises(SourceError, match='b.png is 20x30'):
            src.read()
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'x.png').write_bytes(b'not a png')
    with pytest.raises(SourceError, match='cannot read image'):
        ImageFolderSource(tmp_path / 'bad', fps=5).open()


def test_factory(tmp_path):
    src = make_source('synthetic', width=64, height=48, fps=5.0)
    assert isinstance(src, SyntheticSource) and (src.width, src.height) == (64, 48)
    assert isinstance(make_source('video', path=tmp_path / 'x.mp4', loop=True), VideoFileSource)
    assert isinstance(make_source('image_folder', path=tmp_path, fps=3.0), ImageFolderSource)
    assert set(SOURCE_KINDS) >= {'synthetic', 'video', 'image_folder'}
    with pytest.raises(ValueError, match=r"unknown frame source kind 'webcam'; known: image_folder, realsense, synthetic, uvc, video"):
        make_source('webcam')
    with pytest.raises(ValueError, match=r"bad arguments for frame source 'synthetic'.*accepted parameters: width, height, fps, seed"):
        make_source('synthetic', resolution=5)
    with pytest.raises(ValueError, match="'image_folder'"):
        make_source('image_folder', path=tmp_path)  # fps is required
