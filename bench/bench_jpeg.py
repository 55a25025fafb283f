"""JPEG encode/decode cost and size for camera frames (what camera_node publishes).

Run: .venv/bin/python bench/bench_jpeg.py   (well under a minute)

Frames come from SyntheticSource (textured floor, grain, door), which
compresses roughly like a real indoor scene; a flat test image would flatter
JPEG.  Times are medians over RUNS calls on different frames, in ms.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import cv2  # noqa: E402

from _machine import command_line, cpu_line  # noqa: E402
from sparsevideonav_ros.core.images import decode_jpeg, encode_jpeg  # noqa: E402
from sparsevideonav_ros.sources.synthetic import SyntheticSource  # noqa: E402

RUNS, QUALITY = 30, 85
FPS = 15.0  # camera_node default rate, for the bandwidth columns
SIZES = ((1280, 720), (1920, 1080))


def main() -> None:
    print(command_line())
    print(cpu_line())
    print(f'OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, JPEG quality {QUALITY}, '
          f'median of {RUNS} frames')
    print(f'{"size":>10} {"raw rgb8 KiB":>13} {"jpeg KiB":>9} {"ratio":>6} {"encode ms":>10} {"decode ms":>10} {f"MiB/s raw/jpeg @{FPS:g}fps":>24}')
    for w, h in SIZES:
        src = SyntheticSource(w, h, fps=FPS)
        # Spread over one door approach so sizes cover near and far door.
        frames = [src.render(i * 7) for i in range(RUNS)]
        enc_t, dec_t, sizes = [], [], []
        encode_jpeg(frames[0], QUALITY)  # warm-up (codec init, allocations)
        for rgb in frames:
            t0 = time.perf_counter()
            data = encode_jpeg(rgb, QUALITY)
            t1 = time.perf_counter()
            decode_jpeg(data)
            t2 = time.perf_counter()
            enc_t.append(t1 - t0), dec_t.append(t2 - t1), sizes.append(len(data))
        raw, jpg = w * h * 3, statistics.median(sizes)
        print(f'{w}x{h:<5} {raw / 1024:>13.0f} {jpg / 1024:>9.1f} {raw / jpg:>6.1f} '
              f'{1e3 * statistics.median(enc_t):>10.2f} {1e3 * statistics.median(dec_t):>10.2f} '
              f'{FPS * raw / 2**20:>15.1f} / {FPS * jpg / 2**20:.2f}')


if __name__ == '__main__':
    main()
