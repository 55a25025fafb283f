"""The README's generated parts (tools/docs.py): the stack tables cover every name and are up to
date; the benchmark blocks are excerpts of saved bench output (docs/bench/*.txt) naming the machine.
"""
from __future__ import annotations

import dataclasses
import re

import pytest

from stack_helpers import REPO, all_config_classes
from sparsevideonav_ros import stack
from sparsevideonav_ros.tools import docs


def test_docs_cover_every_name():
    text = docs.render()
    for name in list(stack.TOPICS) + list(stack.SERVICES) + list(stack.LAUNCH_ARGUMENTS):
        assert f"`{name}`" in text, name
    for launch_name in stack.LAUNCH_FILES:
        assert f"#### {launch_name}.launch.py" in text
    for config_class in all_config_classes():
        for f in dataclasses.fields(config_class):
            assert f"| `{f.name}` | " in text, f.name
    widths = set()
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]  # unescaped pipes only
            widths.add(len(cells))
            assert all(c.startswith(" ") or set(c) <= set("-") for c in cells), line
        elif widths:
            assert len(widths) == 1, f"table rows with differing column counts before {line!r}"
            widths = set()
    assert docs.render() == text  # deterministic


def test_docs_check_and_write(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{docs.BEGIN_MARKER}\nold tables\n{docs.END_MARKER}\n\n## After\n",
                      encoding="utf-8")
    assert docs.main(["--check", str(readme)]) == 1
    assert "old tables" in capsys.readouterr().err
    assert docs.main(["--write", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nintro\n\n" + docs.BEGIN_MARKER + "\n")
    assert text.endswith(docs.END_MARKER + "\n\n## After\n")
    assert docs.extract_section(text).strip("\n") == docs.render().strip("\n")
    assert docs.main(["--check", str(readme)]) == 0
    assert docs.main(["--write", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text  # idempotent
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("# nothing here\n", encoding="utf-8")
    assert docs.main(["--check", str(no_markers)]) == 1
    assert docs.main(["--write", str(no_markers)]) == 2
    assert no_markers.read_text(encoding="utf-8") == "# nothing here\n"
    capsys.readouterr()
    assert docs.main([]) == 0
    assert capsys.readouterr().out == docs.render()


def test_readme_tables_are_up_to_date():
    # no README or no markers is a failure, not a skip: the tables would silently go stale
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert docs.has_markers(text), f"README.md has no {docs.BEGIN_MARKER} / {docs.END_MARKER} section"
    assert docs.is_up_to_date(text), (
        "README.md's stack tables are stale; run `python -m sparsevideonav_ros.tools.docs --write README.md`\n"
        + docs.section_diff(text))


# -- benchmark figures: README blocks are excerpts of saved bench output --------------------------

SAVED_LATENCY = """$ .venv/bin/python bench/bench_latency.py
started 4 nodes on ROS_DOMAIN_ID 225; waiting for the first plan...

bench_latency: bringup, policy scripted
machine: Some CPU; 2 cpus; torch CPU capability AVX2; no native bf16 (no AVX512_BF16, no AMX)
hop  median ms
a    1.00
stack overhead beyond policy compute: median 1.00 ms
* footnote
command:   .venv/bin/python bench/bench_latency.py
"""


def test_bench_excerpt_keeps_the_machine_and_the_result_lines():
    excerpt = docs.bench_excerpt("bench_latency", SAVED_LATENCY)
    assert excerpt == ("```\n$ .venv/bin/python bench/bench_latency.py\nbench_latency: bringup, policy scripted\n"
                       "machine: Some CPU; 2 cpus; torch CPU capability AVX2; no native bf16 (no AVX512_BF16, no "
                       "AMX)\nhop  median ms\na    1.00\nstack overhead beyond policy compute: median 1.00 ms\n```\n")
    summary = docs.bench_excerpt("bench_sparsevideonav", "$ cmd\nmachine: X; torch CPU capability AVX512\n"
                                                         "torch 2.13\ndtype: float32 (why)\n## 1. noise\nrow\n"
                                                         "## Summary (markdown)\n`cmd`\n\n| a | b |\n|---|---|\n")
    assert summary == ("```\n$ cmd\nmachine: X; torch CPU capability AVX512\ntorch 2.13\ndtype: float32 (why)\n```\n\n"
                       "`cmd`\n\n| a | b |\n|---|---|\n")
    with pytest.raises(ValueError, match="names no machine"):  # figures without the machine are refused
        docs.bench_excerpt("bench_jpeg", "size  encode ms\n1280x720  2.43\n")
    with pytest.raises(ValueError, match="stack overhead"):
        docs.bench_excerpt("bench_latency", SAVED_LATENCY.replace("stack overhead", "overhead"))


def test_bench_blocks_are_rewritten_from_the_saved_output(tmp_path, capsys):
    (tmp_path / "docs" / "bench").mkdir(parents=True)
    (tmp_path / "docs" / "bench" / "bench_latency.txt").write_text(SAVED_LATENCY, encoding="utf-8")
    begin, end = docs.bench_markers("bench_latency")
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{docs.BEGIN_MARKER}\n{docs.render()}{docs.END_MARKER}\n\n{begin}\n```\nhand-typed 12 ms\n"
                      f"```\n{end}\n", encoding="utf-8")
    assert docs.main(["--check", str(readme)]) == 1
    assert "hand-typed" in capsys.readouterr().err
    assert docs.main(["--write", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "hand-typed" not in text and docs.bench_excerpt("bench_latency", SAVED_LATENCY) in text
    assert docs.main(["--check", str(readme)]) == 0


def test_readme_bench_figures_are_saved_bench_output():
    """Every figure block of the README's performance section is the excerpt of a saved bench run."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert set(docs.bench_blocks(text)) == set(docs.BENCH_EXCERPTS), "a README block per bench"
    assert docs.replace_bench_blocks(text, REPO) == text, (
        "README.md's bench blocks differ from docs/bench/*.txt; run `python -m sparsevideonav_ros.tools.docs "
        "--write README.md`")
    for name in docs.BENCH_EXCERPTS:
        saved = (REPO / docs.BENCH_DIR / f"{name}.txt").read_text(encoding="utf-8")
        assert re.search(r"^machine: .+; torch CPU capability \w+", saved, re.MULTILINE), name
