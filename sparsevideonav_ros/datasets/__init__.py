"""Training data: one episode interface (episodes.py) and adapters from each source to it.

    from sparsevideonav_ros.datasets import open_episodes
    episodes = open_episodes(["bags/run1", "osmo/walks", "exports/lerobot"])   # adapter per source: auto

An adapter is one module (listed in ADAPTERS, imported only when used) with two functions:

    detect(path: Path) -> bool                                  is this source mine? (cheap: look, don't read)
    read(path: Path, instruction: str = "") -> list[Episode]   its episodes (frames lazy), EpisodeError if bad

Adding a source (e.g. the authors' released dataset, docs/datasets.md) is a new module plus one line in
ADAPTERS; "auto" then asks its detect() too. No rclpy, no torch here.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from sparsevideonav_ros.datasets.episodes import CameraModel, Episode, EpisodeError, validate_all

# name -> module; "auto" asks each detect() in this order (the first that claims a source reads it)
ADAPTERS: dict[str, str] = {
    "bag": "sparsevideonav_ros.datasets.bag",  # rosbag2 folder / .mcap / .db3 recorded with record:=true
    "lerobot": "sparsevideonav_ros.datasets.lerobot_v3",  # LeRobotDataset v3.0 folder (meta/info.json)
    "folder": "sparsevideonav_ros.datasets.folder",  # a plain folder per episode (handheld Osmo collections)
}


def adapter_names() -> list[str]:
    return list(ADAPTERS)


def get_adapter(name: str):
    """The adapter module called ``name``; ValueError listing the known ones for another name."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter {name!r}; known: {', '.join(['auto', *ADAPTERS])}")
    return importlib.import_module(ADAPTERS[name])


def detect(path: str | Path) -> str:
    """Name of the adapter that reads ``path``, or '' when none claims it."""
    path = Path(path)
    for name in ADAPTERS:
        if get_adapter(name).detect(path):
            return name
    return ""


def _read_auto(path: Path, instruction: str) -> list[Episode]:
    name = detect(path)
    if name:
        return get_adapter(name).read(path, instruction=instruction)
    if not path.exists():
        raise EpisodeError(f"{path}: no such file or folder")
    # a folder of sources (several episode folders, several bags, ...): each child that an adapter claims
    children = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else []
    claimed = [(child, detect(child)) for child in children]
    claimed = [(child, name) for child, name in claimed if name]
    if not claimed:
        raise EpisodeError(f"{path}: not a dataset source any adapter reads ({', '.join(ADAPTERS)}); "
                           f"see docs/datasets.md for the layouts")
    episodes: list[Episode] = []
    for child, name in claimed:
        episodes.extend(get_adapter(name).read(child, instruction=instruction))
    return episodes


def open_episodes(sources: Sequence[str | Path], adapter: str = "auto", instruction: str = "") -> list[Episode]:
    """Episodes of every source, in order; frames stay lazy (read on access).

    sources: bag folders / .mcap / .db3 files, LeRobot v3 folders, plain episode folders or folders of them.
    adapter: "auto" (detect per source) or one of ADAPTERS for all of them.
    instruction: fills every episode that recorded none (a recorded instruction wins).
    Nothing is validated here beyond what reading needs: call episodes.validate_all() (before any model loads).
    Raises EpisodeError (unreadable source) or ValueError (unknown adapter).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if adapter != "auto":
        module = get_adapter(adapter)
    episodes: list[Episode] = []
    for source in sources:
        path = Path(source)
        read = _read_auto(path, instruction) if adapter == "auto" else module.read(path, instruction=instruction)
        episodes.extend(read)
    for episode in episodes:
        if instruction and not (episode.instruction or "").strip():
            episode.instruction = instruction
            episode.metadata["instruction_source"] = "given"  # not recorded: open_episodes(instruction=...)
    return episodes


__all__ = ["ADAPTERS", "CameraModel", "Episode", "EpisodeError", "validate_all", "adapter_names", "get_adapter", "detect", "open_episodes"]
