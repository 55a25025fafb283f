"""On-disk cache of imagined sparse futures: generated once per sample, read every epoch.

Imagining one future costs the whole 4-step video backbone; the action head trains for many epochs on
the same futures (the backbone is frozen), so each sample's future latents are generated once and kept.

Layout::

    <root>/<key>/manifest.json                     what the key stands for (model identity, sampler, seed, ...)
    <root>/<key>/shard-r<rank>-<n>.safetensors      samples written by one process, ``shard_size`` at a time

``key`` is a digest of everything the futures depend on (``cache_spec``): the weights (file sizes and
the first and last MiB of every weight file: a re-trained or re-downloaded model gets a new key, a copied
one keeps its key), the sampler and its steps, the seed, the dtype and the planning grid; relabelling
adds the pose-head settings (its labels and decoded frames are part of the cache then). A sample is
identified by (episode id, planning frame index, episode fingerprint): instruction, stamps, the source's
resolved path and file sizes, the camera intrinsics and the pixels of three frames (episode_fingerprint).
An episode edited under the same id, or another collection's episode of the same name, is generated again
(its entry sits next to the old one), not silently reused.

Tensors of a shard (safetensors, n samples):
    future_latents     (n, 16, 8, h, w) model dtype: the 8 generated future latents (reference excluded)
    text/<digest>      (L, text_dim): the instruction's umT5 embeddings, real tokens only (one per instruction)
    relabel_actions    (n, 8, 3) float32, relabel caches only: dx m, dy m, dtheta rad per 0.25 s; NaN = refused
    decoded_frames     (n, 1 + k, S, S, 3) uint8, relabel caches only: decoded T and the k imagined instants
and its metadata ``samples``: a JSON list of [episode_id, frame, fingerprint, text digest, tokens, refusal].

Crash safety: a shard is written to ``<name>.tmp``, fsynced and renamed (os.replace is atomic on one file
system), so a killed run leaves complete shards and at most a stray .tmp (removed by the next writer of that
rank); a restarted run indexes the complete shards and generates only what is missing. A shard that cannot
be read all the same (a disk fault) is skipped with a line on stderr (``FutureCache.skipped``): its samples
count as missing and are generated again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

CACHE_FORMAT = "sparsevideonav-future-cache"
CACHE_VERSION = 2  # 2: fingerprints with source and frames, noise seeded per sample
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^shard-r(\d+)-(\d+)\.safetensors$")
_EDGE_BYTES = 1 << 20  # bytes read at each end of a weight file for its identity


class CacheError(ValueError):
    """A cache folder that belongs to other settings, or a shard that cannot be read."""


# -- identity ---------------------------------------------------------------------------------------

def weights_digest(folders: Iterable[Path]) -> str:
    """Digest of the weight files under ``folders``: relative path, size, first and last MiB of each file.

    Cheap on multi-GB checkpoints (2 MiB read per file) and independent of mtimes (a copy keeps it). Hidden
    files and folders (.git, .cache of a Hub download) are left out: they change without the weights."""
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder).expanduser()
        files = [folder] if folder.is_file() else sorted(
            p for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        for path in files:
            size = path.stat().st_size
            digest.update(f"{path.relative_to(folder) if path != folder else path.name}\0{size}\0".encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(_EDGE_BYTES))
                if size > 2 * _EDGE_BYTES:
                    handle.seek(size - _EDGE_BYTES)
                    digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()[:24]


def cache_key(spec: dict) -> str:
    """16 hex digits naming the cache folder of ``spec`` (a JSON-serialisable dict)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _source_identity(source: str) -> str:
    """Where an episode comes from, as a resolved path (``<dataset>#<index>`` keeps its index), plus the sizes
    of the files there (cheap: no content read). Two collections with an episode of the same name (walk_0001
    in two folders) differ here; an edited folder mostly changes a file size too."""
    path_text, sep, suffix = str(source).partition("#")
    path = Path(path_text).expanduser()
    if not path.exists():
        return str(source)
    parts = [str(path.resolve()) + sep + suffix]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        try:
            parts.append(f"{file.relative_to(path) if file != path else file.name}:{file.stat().st_size}")
        except OSError:
            continue
    return "\n".join(parts)


def episode_fingerprint(episode) -> str:
    """What identifies an episode's content for the cache, cheaply: instruction, frame count and stamps (ms),
    the source (resolved path and its files' sizes), the camera's intrinsics and mount (relabelling reads them) and the
    pixels of the first, middle and last frame (decoded: three frames read, not the episode).

    An episode edited under the same id (another instruction, other frames, another collection's walk_0001)
    gets another fingerprint, so its futures are generated again instead of being reused."""
    digest = hashlib.sha1()
    stamps = np.round(np.asarray(episode.stamps_s, dtype=float) * 1000.0).astype(np.int64)
    digest.update(episode.instruction.encode() + b"\0" + stamps.tobytes())
    digest.update(b"\0" + _source_identity(episode.source).encode() + b"\0")
    matrix = episode.camera.intrinsics() if episode.camera is not None else None
    digest.update(b"" if matrix is None else np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    if episode.camera is not None:  # relabelling scales and projects through the recorded mount
        digest.update(f"mount:{episode.camera.mount_height_m}:{episode.camera.mount_pitch_down_deg}".encode())
    count = len(episode.frames)
    for index in sorted({0, count // 2, count - 1} if count else set()):
        frame = np.ascontiguousarray(np.asarray(episode.frames[index]))
        digest.update(f"{index}:{frame.shape}:{frame.dtype}".encode() + frame.tobytes())
    return digest.hexdigest()[:16]


def episode_fingerprints(episodes) -> dict[str, str]:
    """{episode_id: episode_fingerprint} (compute once per run: three frames are decoded per episode)."""
    return {episode.episode_id: episode_fingerprint(episode) for episode in episodes}


def text_digest(instruction: str) -> str:
    return hashlib.sha1(instruction.encode()).hexdigest()[:16]


# -- records ----------------------------------------------------------------------------------------

@dataclass
class CachedSample:
    """One generated sample, as written (tensors on the CPU)."""

    episode_id: str
    frame: int  # index of the planning frame T in its episode
    fingerprint: str
    instruction: str
    future_latents: torch.Tensor  # (16, 8, h, w)
    text_embeds: torch.Tensor  # (L, text_dim) real tokens only
    relabel_actions: Optional[torch.Tensor] = None  # (8, 3) float32, NaN when refused
    decoded_frames: Optional[torch.Tensor] = None  # (1 + k, S, S, 3) uint8
    refusal: str = ""  # why the pose head refused (relabel)


@dataclass(frozen=True)
class Entry:
    """Where one cached sample lies."""

    shard: Path
    row: int
    episode_id: str
    frame: int
    fingerprint: str
    text: str  # digest: tensor "text/<digest>" of the same shard
    tokens: int
    refusal: str


@dataclass
class FutureCache:
    """The cache folder of one spec (see the module docstring). ``root``/``cache_key(spec)``."""

    root: Path
    spec: dict
    folder: Path = field(init=False)
    skipped: list = field(init=False, default_factory=list)  # (shard, why) unreadable shards index() left out

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        self.folder = self.root / cache_key(self.spec)

    @property
    def relabel(self) -> bool:
        return bool(self.spec.get("relabel"))

    def prepare(self, backbone: Optional[dict] = None) -> None:
        """Create the folder and its manifest, or check an existing manifest is for this spec.

        backbone: facts of the model the futures come from (text width, latent grid, ...), kept in the
        manifest so that training needs no model load; not part of the key (the weights digest is)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        found = json.loads(manifest.read_text()) if manifest.is_file() else None
        if found is not None:
            if found.get("spec") != self.spec:
                raise CacheError(f"{manifest} was written for other settings: {found.get('spec')} (expected "
                                 f"{self.spec}); its key collides, remove the folder")
            if backbone is None or found.get("backbone") == backbone:
                return
        content = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": self.folder.name, "spec": self.spec,
                   "backbone": backbone if backbone is not None else (found or {}).get("backbone")}
        # host and pid: processes of several nodes may share the cache folder (a network file system)
        temporary = manifest.with_name(f"{MANIFEST}.{socket.gethostname()}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(content, indent=2, sort_keys=True))
        os.replace(temporary, manifest)

    def backbone(self) -> Optional[dict]:
        """The backbone facts of the manifest (None before the first generation)."""
        manifest = self.folder / MANIFEST
        return json.loads(manifest.read_text()).get("backbone") if manifest.is_file() else None

    def shards(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if SHARD_PATTERN.match(p.name))

    def index(self) -> dict[tuple[str, int, str], Entry]:
        """(episode_id, frame, episode fingerprint) -> Entry for every complete shard (headers only: no tensor is
        read). Keyed by the fingerprint too: an edited episode's regenerated future sits next to the old one's."""
        out: dict[tuple[str, int, str], Entry] = {}
        self.skipped = []
        for shard in self.shards():
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    records = json.loads(handle.metadata()["samples"])
            except Exception as error:  # a shard renamed into place is complete (fsynced): a disk fault, a foreign file
                why = f"{type(error).__name__}: {error}"
                self.skipped.append((shard, why))
                sys.stderr.write(f"future cache: skipping unreadable shard {shard} ({why}); its samples are "
                                 f"generated again\n")
                continue
            for row, (episode_id, frame, fingerprint, digest, tokens, refusal) in enumerate(records):
                # two ranks never write the same sample; a repeated one (an old run's) keeps the first shard
                out.setdefault((episode_id, int(frame), fingerprint),
                               Entry(shard, row, episode_id, int(frame), fingerprint, digest, int(tokens), refusal))
        return out

    def writer(self, rank: int, shard_size: int) -> "ShardWriter":
        self.prepare()
        return ShardWriter(self, rank, shard_size)


class ShardWriter:
    """Buffers samples of one process and writes them ``shard_size`` at a time (write-then-rename)."""

    def __init__(self, cache: FutureCache, rank: int, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.cache, self.rank, self.shard_size = cache, int(rank), int(shard_size)
        self.pending: list[CachedSample] = []
        for stray in cache.folder.glob(f"shard-r{self.rank}-*.tmp"):  # a torn write of this rank's last run
            stray.unlink()
        numbers = [int(m.group(2)) for m in map(SHARD_PATTERN.match, (p.name for p in cache.shards()))
                   if m and int(m.group(1)) == self.rank]
        self.next_number = max(numbers, default=-1) + 1
        self.written = 0

    def add(self, sample: CachedSample) -> None:
        self.pending.append(sample)
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> Optional[Path]:
        if not self.pending:
            return None
        samples, self.pending = self.pending, []
        tensors = {"future_latents": torch.stack([s.future_latents for s in samples]).contiguous()}
        for sample in samples:
            tensors.setdefault(f"text/{text_digest(sample.instruction)}", sample.text_embeds.contiguous())
        if self.cache.relabel:
            tensors["relabel_actions"] = torch.stack([s.relabel_actions.float() for s in samples]).contiguous()
            tensors["decoded_frames"] = torch.stack([s.decoded_frames for s in samples]).contiguous()
        records = [[s.episode_id, s.frame, s.fingerprint, text_digest(s.instruction), int(s.text_embeds.shape[0]),
                    s.refusal] for s in samples]
        name = f"shard-r{self.rank}-{self.next_number:06d}.safetensors"
        final = self.cache.folder / name
        temporary = final.with_name(name + ".tmp")
        save_file(tensors, str(temporary), metadata={"samples": json.dumps(records), "key": self.cache.folder.name})
        with open(temporary, "rb") as handle:  # on disk before the rename: a crash never leaves a torn shard
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        self.next_number += 1
        self.written += len(samples)
        return final


class ShardReader:
    """Reads rows of cached shards lazily (memory-mapped by safetensors); keeps recent shards open."""

    def __init__(self, max_open: int = 16) -> None:
        self.max_open = max_open
        self._open: dict[Path, object] = {}

    def _handle(self, shard: Path):
        handle = self._open.pop(shard, None)
        if handle is None:
            handle = safe_open(str(shard), framework="pt")
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open)))
        self._open[shard] = handle  # most recent last
        return handle

    def row(self, entry: Entry, name: str) -> torch.Tensor:
        return self._handle(entry.shard).get_slice(name)[entry.row]

    def text(self, entry: Entry) -> torch.Tensor:
        return self._handle(entry.shard).get_tensor(f"text/{entry.text}")

    def __getstate__(self) -> dict:  # DataLoader workers open their own handles
        return {"max_open": self.max_open, "_open": {}}
