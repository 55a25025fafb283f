"""rosbag2 bags without ROS (the `rosbags` library): open with clear errors, find topics, decode CDR.

Shared by the recorder and player (tools/record.py, tools/play.py: rclpy moves the serialized
bytes) and the offline evaluation (tools/evaluate.py: no rclpy at all). rosbags' CDR encoding is
byte-compatible with rclpy's serialize_message, so bags written here play in `ros2 bag play` and
bags from `ros2 bag record` read here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer, WriterError

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


def write_bag(folder: str | Path, records: Iterable[tuple[int, str, str, bytes]], storage: str = "mcap") -> Path:
    """(bag time ns, topic, msg type, CDR bytes) records, in any order -> a closed bag at ``folder``; each
    topic's connection is made at its first message, as a recorder does (tests, synthetic recordings)."""
    writer = open_writer(folder, storage)
    connections: dict[str, Connection] = {}
    try:
        for bag_ns, topic, msg_type, data in sorted(records, key=lambda record: record[0]):
            if topic not in connections:
                connections[topic] = add_connection(writer, topic, msg_type)
            writer.write(connections[topic], bag_ns, data)
    finally:
        writer.close()
    return Path(folder)


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


@dataclass(frozen=True)
class RecordedGrid:
    """Where the recorded policy's 4 FPS sampling grid was: replays and evaluations start there."""

    start_ns: int  # bag time of the frame the first recorded plan was made from
    start_stamp: float  # that frame's stamp (s)
    anchor_stamp: float  # FrameSampler.anchor_at this to pick the recorded plans' frames
    matched: int  # recorded plan frames the anchored grid picks (of those within ALIGN_FRAMES frames)
    plans: int  # recorded plan frames within ALIGN_FRAMES frames
    offset_s: float  # start_ns in seconds into the bag, whole microseconds rounded down


ALIGN_FRAMES = 400  # frames (from the first plan's) used to find the grid: ~25 s at 15 FPS


def recorded_grid(reader: Reader, path_topic: str, frame_topic: str, rate_hz: float = 4.0) -> Optional[RecordedGrid]:
    """The recorded policy's sampling grid, from the stamps of its plans (None: no plans or frames).

    policy_node's grid starts at the first frame it got, which the recorder may have missed (discovery
    races); the plans' stamps say which frames it picked, and core.frame_sampler.infer_grid_anchor
    where a grid that picks them lies.
    """
    from sparsevideonav_ros.core.frame_sampler import infer_grid_anchor

    paths = [c for c in reader.connections if c.topic == path_topic]
    frame_connections = [c for c in reader.connections if c.topic == frame_topic]
    if not paths or not frame_connections:
        return None
    planned = sorted({stamp_seconds(decode(d, c.msgtype, path_topic).header.stamp) for c, _, d in messages(reader, paths)})
    if not planned:
        return None
    frames: list[tuple[float, int]] = []  # (stamp, bag ns) from the first plan's frame on
    for connection, bag_ns, data in messages(reader, frame_connections):
        stamp = stamp_seconds(decode(data, connection.msgtype, frame_topic).header.stamp)
        if frames or stamp >= planned[0] - 5e-7:
            frames.append((stamp, bag_ns))
            if len(frames) >= ALIGN_FRAMES:
                break
    # plans made before the recorder got its first frame (discovery) say nothing about the frames here
    recorded = {round(f[0], 6) for f in frames}
    planned = [p for p in planned if round(p, 6) in recorded or p > frames[-1][0] + 5e-7] if frames else []
    planned = [p for p in planned if p >= frames[0][0] - 5e-7]
    if not planned:
        return None
    frames = [f for f in frames if f[0] >= planned[0] - 5e-7]
    anchor, matched = infer_grid_anchor([f[0] for f in frames], planned, rate_hz)
    in_window = sum(1 for p in planned if p <= frames[-1][0] + 5e-7)
    return RecordedGrid(start_ns=frames[0][1], start_stamp=frames[0][0], anchor_stamp=anchor, matched=matched,
                        plans=in_window, offset_s=offset_s(reader.start_time, frames[0][1]))


def recorded_grid_of(path: str | Path, path_topic: str, frame_topic: str) -> Optional[RecordedGrid]:
    reader = open_bag(path)
    try:
        return recorded_grid(reader, path_topic, frame_topic)
    finally:
        reader.close()


def offset_s(reader_start_ns: int, bag_ns: int) -> float:
    """Seconds into a bag, in whole microseconds rounded down (an offset never passes its message)."""
    return max(0, bag_ns - reader_start_ns) // 1000 / 1e6


def last_text_before(path: str | Path, topic: str, offset_s: float) -> str:
    """The last std_msgs/String on ``topic`` recorded before ``offset_s`` into the bag ('' if none)."""
    reader = open_bag(path)
    try:
        connections = [c for c in reader.connections if c.topic == topic and c.msgtype == "std_msgs/msg/String"]
        end_ns = reader.start_time + int(round(offset_s * 1e9))
        text = ""
        for connection, bag_ns, data in messages(reader, connections):
            if bag_ns >= end_ns:
                break
            text = decode(data, connection.msgtype, topic).data
        return text
    finally:
        reader.close()
