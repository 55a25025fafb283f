"""Markdown tables of the graph, generated from stack.py and the config dataclasses.

    python -m sparsevideonav_ros.tools.docs                  print the tables
    python -m sparsevideonav_ros.tools.docs --check README.md   exit 1 if README's tables are stale
    python -m sparsevideonav_ros.tools.docs --write README.md   rewrite README's tables in place

The README holds the generated text between the lines ``<!-- stack-tables:begin -->`` and
``<!-- stack-tables:end -->``; everything outside the markers is left alone. Sections start at
``###`` so the markers belong under a ``##`` heading. Plain Python (no rclpy, no launch), so it
runs anywhere the package imports; the test suite checks that the README is up to date.

Benchmark figures the same way: what a bench printed is saved verbatim as ``docs/bench/<bench>.txt``
(``.venv/bin/python bench/bench_jpeg.py > docs/bench/bench_jpeg.txt``), and ``--write`` copies its
excerpt (BENCH_EXCERPTS: the header naming the machine, then the bench's own result lines) between
``<!-- bench:<bench>:begin -->`` and ``<!-- bench:<bench>:end -->``; ``--check`` fails when a README
block is not the excerpt of its saved output.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from sparsevideonav_ros import stack

BEGIN_MARKER = "<!-- stack-tables:begin -->"
END_MARKER = "<!-- stack-tables:end -->"


class MarkerError(ValueError):
    """The document lacks the begin/end markers (or has them out of order / twice)."""


# -- cell formatting --------------------------------------------------------------------------

def cell(text: Any) -> str:
    """One table cell: single line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: Any) -> str:
    return f"`{text}`" if str(text) != "" else ""


def names(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "—"


def yaml_value(value: Any) -> str:
    """A default as it is written in params/*.yaml and on the command line (-p name:=value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return repr(value)


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise ValueError(f"config field {f.name!r} has no default; every ROS parameter needs one")


def field_description(f: dataclasses.Field) -> str:
    """The description a node declares for the parameter (see nodes/common.declare_config)."""
    description = f.metadata.get("description", "")
    choices = f.metadata.get("choices", ())
    if choices:
        description += f" One of: {', '.join(choices)}."
    return description


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# -- sections ---------------------------------------------------------------------------------

def topic_qos_cell(topic: stack.Topic) -> str:
    """The profile our publishers use, and the profiles our subscribers use when they differ from it."""
    if topic.subscription_profiles == (topic.qos,):
        return topic.qos
    return f"{topic.qos}; subscribed as {' + '.join(topic.subscription_profiles)}"


def topics_section() -> list[str]:
    rows = [[code(t.name), code(t.msg_type), topic_qos_cell(t), cell(names(t.publishers)), cell(names(t.subscribers)),
             cell(t.description)] for t in stack.TOPICS.values()]
    return (["### Topics", "",
             "Names are relative: they resolve inside the launch argument `namespace` (one robot per namespace). "
             "QoS: `sensor_data` = best effort, keep last 5; `reliable` = reliable, keep last 10; "
             "`latched` = reliable + transient local, keep last 1; `best_effort` = best effort, keep last 10. "
             "Inputs anyone may publish are subscribed once per listed profile, so a publisher of any reliability "
             "and durability matches (`ros2 topic pub` on Humble, Jazzy or Kilted, a default rclpy publisher): "
             "a subscription that is reliable never matches a best-effort publisher, and one that is transient "
             "local never matches a volatile publisher. A message that reaches a node through two of them is "
             "handled once.", ""]
            + table(["Topic", "Type", "QoS", "Publishers", "Subscribers", "Description"], rows))


def services_section() -> list[str]:
    rows = [[code(s.name), code(s.srv_type), s.server, cell(s.description)] for s in stack.SERVICES.values()]
    return ["### Services", ""] + table(["Service", "Type", "Server", "Description"], rows)


def launch_arguments_section() -> list[str]:
    lines = ["### Launch arguments", "",
             "`ros2 launch sparsevideonav_ros <file> name:=value ...` and "
             "`python -m sparsevideonav_ros.tools.launch <name> name:=value ...` take the same arguments "
             "and start the same node command lines."]
    for launch_name, nodes in stack.LAUNCH_FILES.items():
        rows = []
        for argument in stack.launch_arguments_for(launch_name):
            sets = ", ".join(f"{node}.{parameter}" for node, parameter in argument.sets if node in nodes)
            rows.append([code(argument.name), cell(code(argument.default) if argument.default else '`""`'), cell(code(sets) if sets else "—"),
                         cell(argument.description)])
        starts = ", ".join(nodes)
        fixed = stack.FIXED_PARAMETERS.get(launch_name, {})
        if fixed:
            starts += " (always " + ", ".join(f"`{node}.{parameter}: {value}`" for node, values in fixed.items()
                                              for parameter, value in values.items()) + ")"
        if any(a.name == "bag" for a in stack.launch_arguments_for(launch_name)):
            starts += "; plays `bag` (`ros2 bag play`; the pip-only runner: tools/play.py) with /clock"
        lines += ["", f"#### {launch_name}.launch.py", "", f"Starts: {starts}.", ""]
        lines += table(["Argument", "Default", "Sets parameter", "Description"], rows)
    return lines


def parameter_rows(config_class: type, prefix: str = "") -> list[list[str]]:
    return [[code(prefix + f.name), cell(code(yaml_value(field_default(f)))), cell(field_description(f))]
            for f in dataclasses.fields(config_class)]


def parameters_section() -> list[str]:
    from sparsevideonav_ros.policies import registry

    lines = ["### Parameters", "",
             "Defaults are the values in `params/*.yaml` (a test keeps them equal to the config dataclasses "
             "in `sparsevideonav_ros/configs.py`); override them with `params_file:=` or `-p name:=value`."]
    for spec in stack.NODES.values():
        lines += ["", f"#### {spec.name} (`params/{spec.params_file}`)", "", f"{cell(spec.description)}", ""]
        lines += table(["Parameter", "Default", "Description"], parameter_rows(spec.config_class))
    for name in registry.known_policies():
        lines += ["", f"#### Policy `{name}` (policy_node, block `{name}:` in `params/policy.yaml`)", "",
                  f"Read only when `policy: {name}`; on the command line: `-p {name}.<parameter>:=value`.", ""]
        lines += table(["Parameter", "Default", "Description"], parameter_rows(registry.config_class(name)))
    return lines


def render() -> str:
    """All tables, the text that sits between the README markers (ends with a newline)."""
    sections = [topics_section(), services_section(), launch_arguments_section(), parameters_section()]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


# -- README section ---------------------------------------------------------------------------

def _marker_span(text: str) -> tuple[int, int]:
    """(start, end) of the text strictly between the marker lines."""
    if text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise MarkerError(f"expected exactly one {BEGIN_MARKER} and one {END_MARKER}")
    begin = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    if end < begin:
        raise MarkerError(f"{END_MARKER} comes before {BEGIN_MARKER}")
    return begin, end


def has_markers(text: str) -> bool:
    try:
        _marker_span(text)
    except MarkerError:
        return False
    return True


def extract_section(text: str) -> str:
    begin, end = _marker_span(text)
    return text[begin:end]


def replace_section(text: str, generated: Optional[str] = None) -> str:
    """``text`` with the part between the markers replaced by the generated tables."""
    generated = render() if generated is None else generated
    begin, end = _marker_span(text)
    return text[:begin] + "\n" + generated.strip("\n") + "\n" + text[end:]


def is_up_to_date(text: str, generated: Optional[str] = None) -> bool:
    generated = render() if generated is None else generated
    return extract_section(text).strip("\n") == generated.strip("\n")


def section_diff(text: str, path: str = "README.md", generated: Optional[str] = None) -> str:
    generated = render() if generated is None else generated
    current = extract_section(text).strip("\n").splitlines(keepends=True)
    wanted = generated.strip("\n").splitlines(keepends=True)
    return "".join(difflib.unified_diff(current, wanted, f"{path} (current)", f"{path} (generated)", lineterm="\n"))


# -- benchmark output ------------------------------------------------------------------------

BENCH_DIR = Path("docs") / "bench"  # relative to the README's folder
# Lines of a bench's header that always go into the README: its command and the machine it ran on.
BENCH_HEADER_PREFIXES = ("$ ", "machine:", "torch ", "dtype:", "NOTE:")
# bench -> (first line of the excerpt, its last line; None: to the end). The first line may be a
# heading whose following lines are markdown (bench_sparsevideonav's summary table): that part is
# pasted as markdown, the rest as a code block.
BENCH_EXCERPTS: dict[str, tuple[Optional[str], Optional[str]]] = {
    "bench_jpeg": (None, None),
    "bench_latency": ("bench_latency:", "stack overhead beyond policy compute:"),
    "bench_sparsevideonav": ("## Summary (markdown)", None),
    "bench_janusvln": (None, None),
    "bench_pose_head": ("3. pose head per plan", None),
}
MARKDOWN_SECTIONS = ("## Summary (markdown)",)


def bench_markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def bench_excerpt(name: str, output: str) -> str:
    """The README block for what bench ``name`` printed: header lines in a code block, then its result."""
    first, last = BENCH_EXCERPTS[name]
    lines = output.rstrip("\n").splitlines()
    start = 0
    if first is not None:
        starts = [i for i, line in enumerate(lines) if line.startswith(first)]
        if not starts:
            raise ValueError(f"{name}: the saved output has no line starting with {first!r}")
        start = starts[-1]
    end = len(lines)
    if last is not None:
        ends = [i for i, line in enumerate(lines) if i >= start and line.startswith(last)]
        if not ends:
            raise ValueError(f"{name}: the saved output has no line starting with {last!r} after {first!r}")
        end = ends[0] + 1
    header = [line for line in lines[:start] if line.startswith(BENCH_HEADER_PREFIXES)]
    if not any(line.startswith("machine:") for line in header + lines[start:end]):
        raise ValueError(f"{name}: the saved output names no machine (a 'machine:' line, bench/_machine.py)")
    body = lines[start:end]
    if first in MARKDOWN_SECTIONS:
        return "```\n" + "\n".join(header) + "\n```\n\n" + "\n".join(body[1:]).strip("\n") + "\n"
    return "```\n" + "\n".join(header + body) + "\n```\n"


def bench_blocks(text: str) -> list[str]:
    """Benches whose markers the document holds."""
    return [m.group(1) for m in re.finditer(r"<!-- bench:(\w+):begin -->", text)]


def replace_bench_blocks(text: str, folder: Path) -> str:
    """``text`` with every bench block replaced by the excerpt of ``folder/docs/bench/<bench>.txt``."""
    for name in bench_blocks(text):
        if name not in BENCH_EXCERPTS:
            raise MarkerError(f"bench block {name!r}: no such bench in BENCH_EXCERPTS")
        begin, end = bench_markers(name)
        if text.count(begin) != 1 or text.count(end) != 1 or text.index(end) < text.index(begin):
            raise MarkerError(f"expected one {begin} followed by one {end}")
        saved = folder / BENCH_DIR / f"{name}.txt"
        excerpt = bench_excerpt(name, saved.read_text(encoding="utf-8"))
        text = text[:text.index(begin) + len(begin)] + "\n" + excerpt + text[text.index(end):]
    return text


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="FILE", type=Path,
                       help=f"exit 1 if FILE's text between {BEGIN_MARKER} and {END_MARKER} is not the generated text")
    group.add_argument("--write", metavar="FILE", type=Path, help="rewrite FILE's text between the markers")
    options = parser.parse_args(argv)
    generated = render()
    path = options.check or options.write
    if path is None:
        sys.stdout.write(generated)
        return 0
    try:
        text = path.read_text(encoding="utf-8")
        benches = replace_bench_blocks(text, path.resolve().parent)
        if options.check:
            stale = []
            if not is_up_to_date(text, generated):
                sys.stderr.write(section_diff(text, str(path), generated))
                stale.append("stack tables")
            if benches != text:
                sys.stderr.write("".join(difflib.unified_diff(text.splitlines(keepends=True),
                                                              benches.splitlines(keepends=True),
                                                              f"{path} (current)", f"{path} (saved bench output)")))
                stale.append(f"bench blocks (vs {BENCH_DIR}/*.txt)")
            if not stale:
                print(f"{path}: stack tables and bench blocks are up to date")
                return 0
            print(f"{path}: {' and '.join(stale)} are stale; run `python -m sparsevideonav_ros.tools.docs --write "
                  f"{path}`", file=sys.stderr)
            return 1
        updated = replace_section(benches, generated)
    except (OSError, MarkerError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2 if options.write else 1
    if updated != text:
        path.write_text(updated, encoding="utf-8")
        print(f"{path}: stack tables and bench blocks rewritten")
    else:
        print(f"{path}: stack tables and bench blocks already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
