"""rosbag2 bags without ROS (the `rosbags` library): open with clear errors, find topics, decode CDR.

Shared by the recorder and player (tools/record.py, tools/play.py: rclpy moves the serialized
bytes) and the offline evaluation (tools/evaluate.py: no rclpy at all). rosbags' CDR encoding is
byte-compatible with rclpy's serialize_message, so bags written here play in `ros2 bag play` and
bags from `ros2 bag record` read here.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError

from sparsevideonav_ros import stack

# rosbag2 metadata version written: 8 is what Jazzy writes and what Humble..Kilted read.
BAG_VERSION = 8
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag cannot be used: missing, truncated, not a rosbag2 bag, or without the topics needed."""


@functools.lru_cache(maxsize=1)
def typestore():
    """Message definitions of ROS 2 Jazzy (the distro the PyPI rclpy wheels are)."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def stack_topic(name: str) -> Optional[stack.Topic]:
    """The stack topic an absolute name resolves to in any namespace ('/robot1/odom' -> odom), or None."""
    matches = [t for t in stack.TOPICS.values() if name == "/" + t.name or name.endswith("/" + t.name)]
    return max(matches, key=lambda t: len(t.name)) if matches else None


_NO_TIME = QosTime(0, 0)  # rosbag2's "default" (unset) durations


def offered_qos(profile: str) -> list[Qos]:
    """rosbag2 offered_qos_profiles for a stack QoS profile (ros2 bag play uses them to publish)."""
    reliability = QosReliability.BEST_EFFORT if profile == "sensor_data" else QosReliability.RELIABLE
    durability = QosDurability.TRANSIENT_LOCAL if profile == "latched" else QosDurability.VOLATILE
    depth = {"sensor_data": 5, "reliable": 10, "latched": 1}[profile]
    return [Qos(QosHistory.KEEP_LAST, depth, reliability, durability, _NO_TIME, _NO_TIME, QosLiveliness.AUTOMATIC,
                _NO_TIME, False)]


# -- writing ----------------------------------------------------------------------------------

def open_writer(folder: str | Path, storage: str = "mcap") -> Writer:
    """An open rosbag2 writer for a new bag folder (refuses to overwrite)."""
    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; known: {', '.join(STORAGES)}")
    folder = Path(folder)
    if folder.exists():
        raise BagError(f"bag folder {folder} exists already; not overwriting a recording")
    folder.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(folder, version=BAG_VERSION, storage_plugin=STORAGES[storage])
    try:
        writer.open()
    except WriterError as error:
        raise BagError(f"cannot create bag {folder}: {error}") from error
    return writer


def add_connection(writer: Writer, topic: str, msg_type: str, qos_profile: Optional[str] = None) -> Connection:
    """Register a topic (absolute name) with its message definition and, when known, the offered QoS."""
    if qos_profile is None:
        known = stack_topic(topic)
        qos_profile = known.qos if known is not None and known.msg_type == msg_type else "reliable"
    return writer.add_connection(topic, msg_type, typestore=typestore(), offered_qos_profiles=offered_qos(qos_profile))


def serialize(message: Any, msg_type: str) -> bytes:
    """rosbags message object -> CDR bytes (what rclpy would publish)."""
    return bytes(typestore().serialize_cdr(message, msg_type))


def message_class(msg_type: str):
    """rosbags dataclass for a type name, to build messages without rclpy (tests, tools)."""
    return typestore().types[msg_type]


# -- reading ----------------------------------------------------------------------------------

def _explain(path: Path, error: BaseException) -> str:
    text = str(error)
    if "end magic" in text or "Invalid MCAP footer" in text or "summary offset" in text:
        return (f"{path} is truncated: the MCAP file has no footer, so the recording was not closed (recorder "
                f"killed, power loss or disk full) or the copy is incomplete. Repair it with `ros2 bag reindex` "
                f"or `mcap recover`, or record again.")
    if "seems to be empty" in text:
        return (f"{path} is empty (0 bytes): the recorder stopped before it wrote anything to disk (killed or "
                f"crashed early; recorders keep up to a chunk of messages in memory). Record again.")
    if "File magic is invalid" in text:
        return f"{path} is not an MCAP file (wrong magic bytes); expected a rosbag2 bag."
    if "Profile is not ros2" in text:
        return f"{path} is an MCAP file but not a ROS 2 one (profile other than 'ros2')."
    if "not a database" in text.lower() or "file is encrypted" in text.lower():
        return f"{path} is not a rosbag2 sqlite3 file."
    return f"cannot read bag {path}: {text or type(error).__name__}"


def _storage_file(target: Path) -> Path:
    """The one storage file of a bag folder (what an error is about), else the folder."""
    if target.is_dir():
        files = sorted(target.glob("*.mcap")) + sorted(target.glob("*.db3"))
        if len(files) == 1:
            return files[0]
    return target


def open_bag(path: str | Path) -> Reader:
    """An opened rosbags Reader for a rosbag2 folder, .mcap or .db3 file; BagError says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    target = path
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            files = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
            if not files:
                raise BagError(f"{path} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file in it")
            if len(files) > 1:
                raise BagError(f"{path} has no metadata.yaml and {len(files)} storage files; "
                               f"pass one of them: {', '.join(f.name for f in files)}")
            target = files[0]  # a single storage file carries its own index when it was closed
    elif path.suffix == ".bag":
        raise BagError(f"{path} is a ROS 1 bag; convert it first: rosbags-convert --src {path} --dst <folder>")
    elif path.suffix not in (".mcap", ".db3"):
        raise BagError(f"{path} is not a rosbag2 bag (expected a bag folder, an .mcap or a .db3 file)")
    try:
        reader = Reader(target)
        reader.open()
    except Exception as error:  # ReaderError; sqlite, yaml and struct errors surface as several classes
        raise BagError(_explain(_storage_file(target), error)) from error
    return reader


def describe_topics(reader: Reader) -> str:
    rows = [f"{c.topic} ({c.msgtype}, {c.msgcount} messages)" for c in reader.connections]
    return ", ".join(rows) if rows else "no topics"


def find_connections(reader: Reader, msg_types: Sequence[str], preferred_suffix: str = "",
                     explicit: Optional[str] = None, require_suffix: bool = False,
                     option: str = "") -> list[Connection]:
    """Connections of one topic for a role: ``explicit`` by name, else by type, preferring topics named
    like the stack's (``preferred_suffix`` in any namespace; only those with ``require_suffix``).

    Raises BagError when ``explicit`` is missing or several topics fit equally well (naming ``option``).
    """
    connections = list(reader.connections)
    if explicit:
        chosen = [c for c in connections if c.topic == explicit]
        if not chosen:
            raise BagError(f"topic {explicit} is not in the bag; it has: {describe_topics(reader)}")
        if chosen[0].msgtype not in msg_types:
            raise BagError(f"topic {explicit} is {chosen[0].msgtype}; expected {' or '.join(msg_types)}")
        return chosen
    for msg_type in msg_types:
        candidates = [c for c in connections if c.msgtype == msg_type]
        if preferred_suffix:
            preferred = [c for c in candidates if c.topic.endswith("/" + preferred_suffix)]
            candidates = preferred if (preferred or require_suffix) else candidates
        topics = sorted({c.topic for c in candidates})
        if len(topics) > 1:
            raise BagError(f"several {msg_type} topics in the bag ({', '.join(topics)}); choose one"
                           + (f" with {option}" if option else ""))
        if topics:
            return [c for c in candidates if c.topic == topics[0]]
    return []


def messages(reader: Reader, connections: Iterable[Connection],
             start_ns: Optional[int] = None) -> Iterator[tuple[Connection, int, bytes]]:
    """(connection, bag time ns, CDR bytes) in time order, from ``start_ns``; a corrupt record raises BagError."""
    connections = list(connections)
    if not connections:
        return
    try:
        yield from reader.messages(connections=connections, start=start_ns)
    except BagError:
        raise
    except Exception as error:  # ReaderError, zstd/lz4 errors, short reads
        raise BagError(f"bag {reader.path} is corrupt after a readable part: {error}") from error


def decode(data: bytes, msg_type: str, topic: str = "") -> Any:
    try:
        return typestore().deserialize_cdr(data, msg_type)
    except Exception as error:
        raise BagError(f"cannot decode a {msg_type} message{' on ' + topic if topic else ''}: {error}") from error


def stamp_seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def aligned_start_ns(reader: Reader, path_topic: str, frame_topic: str, rate_hz: float = 4.0,
                     candidates: int = 24, horizon_frames: int = 400) -> Optional[int]:
    """Bag time (ns) of the recorded plan frame to start a replay at, or None (no plans or frames).

    policy_node's 4 FPS grid starts at the first frame it gets, which the recorder may have missed
    (discovery races). Among the first ``candidates`` plan frames in the bag, this picks the earliest
    one from which a fresh grid samples the recorded plan frames that follow (within
    ``horizon_frames``) with the fewest misses: the replayed policy then plans from the same frames.
    """
    from sparsevideonav_ros.core.frame_sampler import FrameSampler

    paths = [c for c in reader.connections if c.topic == path_topic]
    frame_connections = [c for c in reader.connections if c.topic == frame_topic]
    if not paths or not frame_connections:
        return None
    planned = sorted({round(stamp_seconds(decode(d, c.msgtype, path_topic).header.stamp), 6)
                      for c, _, d in messages(reader, paths)})
    if not planned:
        return None
    frames: list[tuple[float, int]] = []  # (stamp rounded to us, bag ns), from the first plan's frame on
    for connection, bag_ns, data in messages(reader, frame_connections):
        stamp = round(stamp_seconds(decode(data, connection.msgtype, frame_topic).header.stamp), 6)
        if stamp >= planned[0]:
            frames.append((stamp, bag_ns))
            if len(frames) >= horizon_frames:
                break
    if not frames:
        return None
    planned_set = set(planned)
    window_end = frames[-1][0]
    best: Optional[tuple[int, int]] = None  # (misses, bag ns)
    for start_stamp, start_ns in [f for f in frames if f[0] in planned_set][:candidates]:
        sampler = FrameSampler(rate_hz)
        picks = {stamp for stamp, _ in frames if stamp >= start_stamp and sampler.offer(stamp)}
        misses = sum(1 for p in planned if start_stamp <= p <= window_end and p not in picks)
        if best is None or misses < best[0]:
            best = (misses, start_ns)
    return None if best is None else best[1]


def aligned_start_offset_s(path: str | Path, path_topic: str, frame_topic: str) -> float:
    """Seconds from the bag's start to aligned_start_ns (0.0 without recorded plans)."""
    reader = open_bag(path)
    try:
        frame_ns = aligned_start_ns(reader, path_topic, frame_topic)
        # whole microseconds, rounded down: the offset never passes the frame itself
        return 0.0 if frame_ns is None else max(0, frame_ns - reader.start_time) // 1000 / 1e6
    finally:
        reader.close()
