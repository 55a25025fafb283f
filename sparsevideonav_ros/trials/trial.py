"""A trial of the SparseVideoNav protocol: instruction, task type, scene, trial index and goal.

Stored as versioned JSON beside the bag it describes (``<bag>/trial.json``, or ``<run>/trial.json``
in the run folder holding the bag):

    {"format": "sparsevideonav_ros.trial", "version": 1,
     "instruction": "walk to the wooden door", "task": "ifn", "scene": "corridor", "trial_index": 3,
     "success_radius_m": 1.5,
     "goal": {"frame": "start", "x": 4.0, "y": 0.5, "yaw": null}}

The goal is either relative to the start (``frame: start``: x forward, y left in metres, yaw in
radians, in the robot's body frame where the episode starts) or a pose in the odometry frame
(``frame: odom``), captured while the robot stood at the goal before the run
(``tools/trial capture-goal``). A trial may be defined before its goal is known (``goal: null``);
metrics refuse it until the goal is set.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from sparsevideonav_ros.core import se2

FORMAT = "sparsevideonav_ros.trial"
VERSION = 1
TRIAL_FILE = "trial.json"
TASK_TYPES = {"ifn": "instruction-following navigation", "bvn": "beyond-the-view navigation"}
GOAL_FRAMES = {"start": "relative to the robot's pose at the start (x forward, y left)",
               "odom": "a pose in the odometry frame, captured at the goal before the run"}
DEFAULT_SUCCESS_RADIUS_M = 1.5  # the paper's: the robot stops within 1.5 m of the target


class TrialError(ValueError):
    """A trial definition is missing, unreadable or invalid (the message names the file and the field)."""


@dataclass(frozen=True)
class Goal:
    """Where the trial ends: x, y (metres), optional yaw (radians) in ``frame`` (start | odom)."""

    frame: str
    x: float
    y: float
    yaw: Optional[float] = None
    odom_frame_id: str = ""  # header.frame_id of the captured odometry (odom goals)
    captured_at: str = ""  # ISO 8601 time of the capture (odom goals)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"frame": self.frame, "x": self.x, "y": self.y, "yaw": self.yaw}
        if self.frame == "odom":
            data.update(odom_frame_id=self.odom_frame_id, captured_at=self.captured_at)
        return data

    def in_odom(self, start_pose: np.ndarray) -> np.ndarray:
        """(x, y, yaw) of the goal in the odometry frame, given the start pose (x m, y m, yaw rad);
        yaw is NaN when the goal has none."""
        if self.frame == "odom":
            return np.array([self.x, self.y, math.nan if self.yaw is None else self.yaw])
        relative = np.array([self.x, self.y, 0.0 if self.yaw is None else self.yaw])
        goal = se2.compose(np.asarray(start_pose, dtype=float), relative)
        if self.yaw is None:
            goal[2] = math.nan
        return goal

    def describe(self) -> str:
        yaw = "" if self.yaw is None else f", yaw {self.yaw:.2f} rad"
        where = "from the start (robot frame)" if self.frame == "start" else f"in {self.odom_frame_id or 'odom'}"
        return f"({self.x:.2f} m, {self.y:.2f} m{yaw}) {where}"


@dataclass(frozen=True)
class Trial:
    instruction: str
    task: str  # ifn | bvn
    scene: str
    trial_index: int
    goal: Optional[Goal] = None
    success_radius_m: float = DEFAULT_SUCCESS_RADIUS_M
    notes: str = ""

    def __post_init__(self) -> None:
        check_trial(self)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "instruction": self.instruction, "task": self.task,
                "scene": self.scene, "trial_index": self.trial_index, "success_radius_m": self.success_radius_m,
                "goal": None if self.goal is None else self.goal.to_json(), "notes": self.notes}

    def with_goal(self, goal: Goal) -> "Trial":
        return replace(self, goal=goal)

    def require_goal(self, source: str = "the trial") -> Goal:
        if self.goal is None:
            raise TrialError(f"{source} has no goal yet: run `python -m sparsevideonav_ros.tools.trial capture-goal "
                             f"{source}` while the robot stands at the goal, or define it with --goal X Y [YAW]")
        return self.goal


# -- validation --------------------------------------------------------------------------------

TRIAL_KEYS = ("format", "version", "instruction", "task", "scene", "trial_index", "success_radius_m", "goal", "notes")
REQUIRED_KEYS = ("version", "instruction", "task", "scene", "trial_index")
GOAL_KEYS = ("frame", "x", "y", "yaw", "odom_frame_id", "captured_at")


def _unknown_keys(keys, known, where: str) -> None:
    for key in keys:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"
            raise TrialError(f"{where}: unknown key {key!r}{hint}")


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrialError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_trial(trial: Trial) -> None:
    """Raise TrialError naming the first invalid field."""
    if not isinstance(trial.instruction, str) or not trial.instruction.strip():
        raise TrialError("instruction must be a non-empty string")
    if not isinstance(trial.task, str) or trial.task not in TASK_TYPES:
        raise TrialError(f"task must be one of {', '.join(TASK_TYPES)} "
                         f"({'; '.join(f'{k} = {v}' for k, v in TASK_TYPES.items())}), got {trial.task!r}")
    if not isinstance(trial.scene, str) or not trial.scene.strip():
        raise TrialError("scene must be a non-empty string (e.g. 'corridor')")
    if isinstance(trial.trial_index, bool) or not isinstance(trial.trial_index, int) or trial.trial_index < 0:
        raise TrialError(f"trial_index must be an integer >= 0, got {trial.trial_index!r}")
    radius = _finite(trial.success_radius_m, "success_radius_m")
    if radius <= 0:
        raise TrialError(f"success_radius_m must be > 0 metres, got {radius:g}")
    if not isinstance(trial.notes, str):
        raise TrialError(f"notes must be a string, got {trial.notes!r}")
    if trial.goal is not None:
        goal = trial.goal
        if not isinstance(goal.frame, str) or goal.frame not in GOAL_FRAMES:
            raise TrialError(f"goal.frame must be one of {', '.join(GOAL_FRAMES)} "
                             f"({'; '.join(f'{k}: {v}' for k, v in GOAL_FRAMES.items())}), got {goal.frame!r}")
        _finite(goal.x, "goal.x")
        _finite(goal.y, "goal.y")
        if goal.yaw is not None:
            _finite(goal.yaw, "goal.yaw")


def trial_from_json(data: Any, where: str = "trial") -> Trial:
    """A Trial from parsed JSON; TrialError says which field is wrong."""
    if not isinstance(data, dict):
        raise TrialError(f"{where}: expected a JSON object, got {type(data).__name__}")
    _unknown_keys(data, TRIAL_KEYS, where)
    if data.get("format", FORMAT) != FORMAT:
        raise TrialError(f"{where}: format is {data.get('format')!r}, not {FORMAT!r}: not a trial file")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise TrialError(f"{where}: missing {', '.join(missing)}")
    version = data["version"]
    if version != VERSION:
        raise TrialError(f"{where}: trial format version {version!r}; this tool reads version {VERSION} "
                         f"({'a newer tool wrote it' if isinstance(version, int) and version > VERSION else 'unknown'})")
    goal = data.get("goal")
    if goal is not None:
        if not isinstance(goal, dict):
            raise TrialError(f"{where}: goal must be an object {{frame, x, y[, yaw]}} or null, got {goal!r}")
        _unknown_keys(goal, GOAL_KEYS, f"{where}: goal")
        for key in ("frame", "x", "y"):
            if key not in goal:
                raise TrialError(f"{where}: goal is missing {key!r}")
        goal = Goal(frame=goal["frame"], x=goal["x"], y=goal["y"], yaw=goal.get("yaw"),
                    odom_frame_id=str(goal.get("odom_frame_id", "")), captured_at=str(goal.get("captured_at", "")))
    task = data["task"].lower() if isinstance(data["task"], str) else data["task"]  # IFN/BVN as the paper writes them
    try:
        return Trial(instruction=data["instruction"], task=task, scene=data["scene"], trial_index=data["trial_index"],
                     goal=goal, success_radius_m=data.get("success_radius_m", DEFAULT_SUCCESS_RADIUS_M),
                     notes=data.get("notes") or "")
    except TrialError as error:
        raise TrialError(f"{where}: {error}") from None


def load_trial(path: str | Path) -> Trial:
    path = Path(path)
    if path.is_dir():
        path = path / TRIAL_FILE
    if not path.is_file():
        raise TrialError(f"no trial file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TrialError(f"{path}: not valid JSON: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise TrialError(f"{path}: cannot read: {error}") from error
    return trial_from_json(data, str(path))


def save_trial(trial: Trial, path: str | Path) -> Path:
    """Write ``trial`` to ``path`` (a folder gets trial.json in it); returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / TRIAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trial.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def bag_folder(bag: str | Path) -> Path:
    """The folder a bag lives in: the bag folder itself, or the folder of a bare .mcap/.db3 file."""
    bag = Path(bag)
    return bag if bag.is_dir() else bag.parent


def trial_candidates(bag: str | Path) -> list[Path]:
    """Where a bag's trial may be, in order: <bag>/trial.json, then <run folder>/trial.json."""
    folder = bag_folder(bag)
    return [folder / TRIAL_FILE, folder.parent / TRIAL_FILE]


def find_trial(bag: str | Path) -> Path:
    for candidate in trial_candidates(bag):
        if candidate.is_file():
            return candidate
    raise TrialError(f"no trial for bag {bag}: looked for {' and '.join(str(c) for c in trial_candidates(bag))}; "
                     f"attach one with `python -m sparsevideonav_ros.tools.trial attach <trial.json> {bag}`")
