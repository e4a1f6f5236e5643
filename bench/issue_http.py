"""Issuance end to end over HTTP: the CSR collection endpoint of a real ``ehrca serve``.

``POST /api/v1/applications/{ref}/service-locations/{n}/certificate`` with
``{download_code, csr}``: bearer-token authentication, application and location
lookup, download-code claim, CSR checks, request and certificate checks, pkilint (lint
on) over the throwaway-signed draft, record-before-sign commit, real signature, commit
of the issued row and audit event; the 201 leaves after the commit (requests arriving
together in one worker share the two commits: ``api/collector.py``,
``issuance/batch.py``; SQLite runs with ``synchronous=FULL``).

For each configuration (database × workers × lint) the script makes a fresh database
(a SQLite file, or a new PostgreSQL schema dropped afterwards), runs ``ehrca init``,
inserts approved applications (20 locations each), one download code per location and
one bearer token per application directly through the ORM, starts ``ehrca serve
--workers N`` on free 127.0.0.1 ports and replays one collection per location with
``wrk`` (``bench/replay.lua``, a separate C process: each request is sent once, every
run is bounded by its request count and by ``--seconds``). Only 201 answers count.

Figures ``issue.http.{sqlite,postgres}.w{1,2}.lint_{on,off}_per_s`` (certificates/s);
``..._ratio``: the same samples over ``limit.csr_to_cert_per_s`` (lint off) or
``limit.csr_to_cert_lint_per_s`` (lint on) from latest.json — ``make bench`` runs
``bench/limits.py`` first, so they come from the same run; ``..._server_cpu_ms``: CPU
time of the server processes per certificate (robust when the machine is shared:
compare with 1000 / limit.csr_to_cert_per_s).

Run: ``.venv/bin/python bench/issue_http.py`` (about 3 minutes; ``--only sqlite.w2.lint_off``
for one configuration).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Figure,
    print_figures,
    read_results,
    summarise,
    this_command,
    unavailable,
    write_results,
)
from bench.service import (
    Unavailable,
    collect_requests,
    database,
    init_instance,
    make_csrs,
    process_tree_cpu_seconds,
    provision,
    run_wrk,
    serving,
    write_requests,
)


@dataclass(frozen=True, slots=True)
class Config:
    """One measured configuration."""

    db: str
    workers: int
    lint: bool

    @property
    def name(self) -> str:
        return f"{self.db}.w{self.workers}.lint_{'on' if self.lint else 'off'}"

    @property
    def figure_id(self) -> str:
        return f"issue.http.{self.name}_per_s"

    @property
    def limit_id(self) -> str:
        return "limit.csr_to_cert_lint_per_s" if self.lint else "limit.csr_to_cert_per_s"


CONFIGS = [
    Config("sqlite", 1, True),
    Config("sqlite", 1, False),
    Config("sqlite", 2, False),
    Config("sqlite", 2, True),
    Config("postgres", 2, True),
    Config("postgres", 2, False),
]


@dataclass(frozen=True, slots=True)
class Options:
    runs: int
    seconds: float
    connections: int
    count_lint_on: int
    count_lint_off: int
    warmup: int


def measure_config(config: Config, options: Options) -> tuple[list[float], list[float], str]:
    """Samples (certificates/s, one per run), the server's CPU milliseconds per
    certificate in each run, and a note for one configuration."""
    count = options.count_lint_on if config.lint else options.count_lint_off
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-") as tmp:
        directory = Path(tmp)
        with database(config.db, directory) as url:
            instance = init_instance(directory, url, lint=config.lint)
            items = provision(url, locations=options.warmup + options.runs * count)
            csrs = make_csrs(64)
            files = []
            slices = [items[: options.warmup]] + [
                items[options.warmup + i * count : options.warmup + (i + 1) * count]
                for i in range(options.runs)
            ]
            for i, chunk in enumerate(slices):
                path = directory / f"requests-{i}.txt"
                write_requests(path, collect_requests(chunk, csrs))
                files.append(path)
            samples: list[float] = []
            cpu_ms: list[float] = []
            notes: list[str] = []
            with serving(instance, workers=config.workers) as process:
                run_wrk(
                    instance.base_url,
                    files[0],
                    expected_status=201,
                    connections=options.connections,
                    seconds=options.seconds,
                )
                for path in files[1:]:
                    cpu_before = process_tree_cpu_seconds(process.pid)
                    result = run_wrk(
                        instance.base_url,
                        path,
                        expected_status=201,
                        connections=options.connections,
                        seconds=options.seconds,
                    )
                    cpu = process_tree_cpu_seconds(process.pid) - cpu_before
                    samples.append(result.ok_per_s)
                    cpu_ms.append(1000 * cpu / max(result.ok, 1))
                    print(
                        f"  {config.name}: {result.ok_per_s:8.1f}/s  ok {result.ok}  "
                        f"failed {result.bad} (last {result.last_bad_status})  "
                        f"p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  "
                        f"server CPU {cpu_ms[-1]:.2f} ms/certificate",
                        flush=True,
                    )
                    if result.bad or result.socket_errors:
                        notes.append(
                            f"{result.bad} non-201 answers (last {result.last_bad_status}), "
                            f"{result.socket_errors} socket errors"
                        )
    note = f"{options.connections} connections, wrk; " + (
        "; ".join(notes) if notes else "no failed requests"
    )
    return samples, cpu_ms, note


def measure(configs: list[Config], options: Options) -> list[Figure]:
    """Every configuration's figure and its ratio to the limit."""
    command = this_command()
    limits = read_results()
    figures: list[Figure] = []
    for config in configs:
        unit = "certificates/s"
        try:
            samples, cpu_ms, note = measure_config(config, options)
        except Unavailable as exc:
            figures.append(unavailable(config.figure_id, unit, command, str(exc)))
            continue
        figures.append(summarise(config.figure_id, samples, unit, command, note))
        figures.append(
            summarise(
                config.figure_id.removesuffix("_per_s") + "_server_cpu_ms",
                cpu_ms,
                "server CPU ms/certificate",
                command,
                "user+system CPU of ehrca serve and its workers per certificate issued: "
                "independent of other load on the machine",
            )
        )
        limit = limits.get(config.limit_id, {}).get("median")
        ratio_id = config.figure_id.removesuffix("_per_s") + "_ratio"
        if isinstance(limit, int | float) and limit > 0:
            ratios = [s / limit for s in samples]
            figures.append(summarise(ratio_id, ratios, f"x {config.limit_id}", command))
            print(
                f"  {config.name}: median {statistics.median(samples):.0f}/s = "
                f"{statistics.median(ratios):.0%} of {config.limit_id} ({limit:.0f}/s)",
                flush=True,
            )
        else:
            print(f"  {config.name}: no {config.limit_id} in latest.json (run bench/limits.py)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="configuration name (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="bound of one run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--count-lint-on", type=int, default=2500, help="requests per run")
    parser.add_argument("--count-lint-off", type=int, default=6000, help="requests per run")
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    configs = [c for c in CONFIGS if not args.only or c.name in args.only]
    options = Options(
        args.runs,
        args.seconds,
        args.connections,
        args.count_lint_on,
        args.count_lint_off,
        args.warmup,
    )
    figures = measure(configs, options)
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()
