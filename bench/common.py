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
    """One measured figure; ``median``/``min``/``max`` are ``None`` when it could not be
    measured here, and ``note`` then says why (it may also qualify a measured figure)."""

    id: str
    median: float | None
    min: float | None
    max: float | None
    unit: str
    command: str
    note: str | None = None


def summarise(
    id_: str, samples: list[float], unit: str, command: str, note: str | None = None
) -> Figure:
    """A :class:`Figure` from raw samples (at least one)."""
    if not samples:
        raise ValueError(f"{id_}: no samples")
    return Figure(id_, statistics.median(samples), min(samples), max(samples), unit, command, note)


def unavailable(id_: str, unit: str, command: str, reason: str) -> Figure:
    """A figure that could not be measured on this machine, with the reason."""
    return Figure(id_, None, None, None, unit, command, reason)


def rate(fn: Callable[[], object], *, seconds: float = 1.0, max_calls: int = 1_000_000) -> float:
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


def results_dir() -> Path:
    """Where results go: ``EHRCA_BENCH_RESULTS`` (the smoke test points it at a temporary
    directory) or ``bench/results``."""
    override = os.environ.get("EHRCA_BENCH_RESULTS")
    return Path(override) if override else RESULTS


def read_results() -> dict[str, dict[str, object]]:
    """The figures in latest.json so far (``{}`` if there is none)."""
    path = results_dir() / "latest.json"
    if not path.exists():
        return {}
    data: dict[str, dict[str, object]] = json.loads(path.read_text())
    return data


#: Figure ids of the issue that a script writes under other names: the issue's id is
#: filled from the script's figures (the slowest of several), with a note saying so.
ALIASES: dict[str, list[str]] = {
    "revoke_to_mtls_refusal_ms": ["revocation.mtls_new_ms", "revocation.mtls_keepalive_ms"],
    "revoke_to_crl_ms": ["revocation.crl_ms"],
    "revoke_to_ocsp_ms": ["revocation.ocsp_ms"],
}


def alias_figure(data: dict[str, dict[str, object]], figure_id: str) -> dict[str, object] | None:
    """The issue's figure ``figure_id`` filled from the figures it is an alias of
    (:data:`ALIASES`): the slowest one, with a note naming it; ``None`` if none exists."""
    found = [(name, data[name]) for name in ALIASES.get(figure_id, []) if name in data]
    found = [(n, f) for n, f in found if isinstance(f.get("median"), int | float)]
    if not found:
        return None
    name, figure = max(found, key=lambda item: float(item[1]["median"]))  # type: ignore[arg-type]
    note = f"copied from `{name}`" + (
        f" (the slowest of {', '.join(f'`{n}`' for n, _ in found)})" if len(found) > 1 else ""
    )
    if figure.get("note"):
        note += f": {figure['note']}"
    return {**figure, "note": note}


def write_results(figures: list[Figure]) -> None:
    """Merge ``figures`` into latest.json and rewrite latest.md.

    Figures of :data:`ALIASES` whose sources are among ``figures`` are re-derived, so an
    alias never keeps an older run's value. latest.md keeps its preamble (what
    ``make bench`` wrote: date, commit, load) and gains a line saying which figures a
    later single-script run replaced, and when.
    """
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    data = read_results()
    for figure in figures:
        entry = asdict(figure)
        entry.pop("id")
        if entry["note"] is None:
            entry.pop("note")
        data[figure.id] = entry
    changed = {figure.id for figure in figures}
    for alias_id, sources in ALIASES.items():
        if changed.intersection(sources) and (alias := alias_figure(data, alias_id)) is not None:
            data[alias_id] = alias
            changed.add(alias_id)
    (directory / "latest.json").write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
    markdown = directory / "latest.md"
    preamble = ""
    if markdown.exists():
        preamble = markdown.read_text().split("| figure | median |", 1)[0].rstrip("\n")
    if preamble:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        preamble += (
            f"\n\n{when}: `{this_command()}` re-measured "
            + ", ".join(f"`{name}`" for name in sorted(changed))
            + " (the other figures are from the run above).\n"
        )
    write_markdown(data, preamble)


def write_markdown(data: dict[str, dict[str, object]], preamble: str = "") -> None:
    """Rewrite latest.md from ``data`` (the table, then the notes of qualified figures)."""
    lines = [preamble] if preamble else []
    lines += [
        "| figure | median | min | max | unit | command |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    notes: list[str] = []
    for key, value in sorted(data.items()):
        mark = ""
        if value.get("note"):
            notes.append(f"{len(notes) + 1}. `{key}`: {value['note']}")
            mark = f" [{len(notes)}]"
        lines.append(
            f"| `{key}`{mark} | {_fmt(value['median'])} | {_fmt(value['min'])} "
            f"| {_fmt(value['max'])} | {value['unit']} | `{value['command']}` |"
        )
    if notes:
        lines += ["", "Notes:", "", *notes]
    (results_dir() / "latest.md").write_text("\n".join(lines) + "\n")


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
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
        print(
            f"{f.id:48s} median {_fmt(f.median):>12s}  min {_fmt(f.min):>12s}  "
            f"max {_fmt(f.max):>12s}  {f.unit}" + (f"  ({f.note})" if f.note else ""),
            flush=True,
        )
