"""Shared benchmark plumbing: repeated timing with medians, and the results files.

Every figure is a median over several runs with its min and max (the machine is
shared and noisy), a unit, and the command that reproduces it. Results merge into
``bench/results/latest.json`` (``{id: {median, min, max, unit, command}}``) and a
Markdown table ``bench/results/latest.md``, which the README links to.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure."""

    id: str
    median: float
    min: float
    max: float
    unit: str
    command: str


def summarise(id_: str, samples: list[float], unit: str, command: str) -> Figure:
    """A :class:`Figure` from raw samples (at least one)."""
    if not samples:
        raise ValueError(f"{id_}: no samples")
    return Figure(id_, statistics.median(samples), min(samples), max(samples), unit, command)


def rate(
    fn: Callable[[], object], *, seconds: float = 1.0, max_calls: int = 1_000_000
) -> float:
    """Calls of ``fn`` per second over about ``seconds`` (bounded by ``max_calls``)."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while calls < max_calls:
        fn()
        calls += 1
        if calls % 16 == 0 and time.perf_counter() >= deadline:
            break
    return calls / (time.perf_counter() - start)


def repeat(measure: Callable[[], float], runs: int) -> list[float]:
    """``runs`` samples of ``measure()``."""
    return [measure() for _ in range(runs)]


def this_command() -> str:
    """The command line that ran this script, for the results table."""
    return " ".join([".venv/bin/python", *[os.path.relpath(sys.argv[0]), *sys.argv[1:]]])


def write_results(figures: list[Figure]) -> None:
    """Merge ``figures`` into latest.json and rewrite latest.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    data: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
    for figure in figures:
        entry = asdict(figure)
        entry.pop("id")
        data[figure.id] = entry
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
    lines = [
        "| figure | median | min | max | unit | command |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for key, value in sorted(data.items()):
        lines.append(
            f"| `{key}` | {_fmt(value['median'])} | {_fmt(value['min'])} | {_fmt(value['max'])} "
            f"| {value['unit']} | `{value['command']}` |"
        )
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")


def _fmt(value: object) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def print_figures(figures: list[Figure]) -> None:
    """Print a plain table of ``figures``."""
    for f in figures:
        print(f"{f.id:48s} median {_fmt(f.median):>12s}  min {_fmt(f.min):>12s}  max {_fmt(f.max):>12s}  {f.unit}")
