"""Where the time goes on the CSR collection path: ``py-spy`` samples ``ehrca serve``
while ``wrk`` replays collections (as ``bench/issue_http.py`` does), then this script
prints the largest costs, inclusive and self, by function and by area (pkilint,
signing, database, FastAPI, ...).

py-spy is not a project dependency: ``.venv/bin/pip install py-spy`` for a profiling
session (the script says so and stops when it is missing). Not part of ``make bench``.

Run: ``.venv/bin/python bench/profile_http.py --db sqlite --workers 2 --lint off``
(about 30 s; ``--out FILE`` keeps py-spy's raw collapsed stacks).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (
    collect_requests,
    database,
    init_instance,
    make_csrs,
    provision,
    run_wrk,
    serving,
    write_requests,
)

#: Areas by the first matching substring of a frame's file (checked leaf to root).
AREAS: list[tuple[str, str]] = [
    ("pkilint", "pkilint (lint)"),
    ("pyasn1", "pkilint (lint)"),
    ("ca/lint.py", "pkilint (lint)"),
    ("asn1crypto", "asn1crypto (checks, CRL)"),
    ("cryptography", "cryptography (parse, build, sign)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("psycopg", "database driver"),
    ("sqlite3", "database driver"),
    ("pydantic", "pydantic"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("anyio", "anyio thread hop"),
    ("uvicorn", "uvicorn"),
    ("h11", "uvicorn"),
    ("httptools", "uvicorn"),
    ("logging", "logging"),
    ("json", "json"),
    ("ca/", "ehrca ca/"),
    ("issuance/", "ehrca issuance/"),
    ("registration/", "ehrca registration/"),
    ("revocation/", "ehrca revocation/"),
    ("api/", "ehrca api/"),
    ("asyncio", "asyncio"),
    ("threading.py", "thread pool (idle/wait)"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match["func"], match["file"]


def _area(file: str) -> str | None:
    for needle, area in AREAS:
        if needle in file and (not needle.endswith("/") or file.startswith(needle)):
            return area
    return None


def _own_frame(file: str) -> bool:
    return file.startswith(("ca/", "issuance/", "registration/", "revocation/", "api/"))


def summarise_raw(raw: str, top: int = 15) -> str:
    """A text summary of py-spy's collapsed stacks ``raw`` (``frame;frame;... count``)."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    owner: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        # Idle: the event loop waiting in select, pool threads waiting for work.
        leaf_name = frames[-1][0].rsplit(".", 1)[-1]
        idle = leaf_name in ("select", "poll", "wait", "_wait_for_tstate_lock") and not any(
            _own_frame(f) for _, f in frames
        )
        if idle:
            continue
        total += count
        names = {f"{func} ({Path(file).name})" for func, file in frames}
        for name in names:
            inclusive[name] += count
        own = [f"{func} ({file})" for func, file in frames if _own_frame(file)]
        owner[own[-1] if own else "(outside ehrca: server, event loop)"] += count
        leaf_func, leaf_file = frames[-1]
        self_time[f"{leaf_func} ({leaf_file})"] += count
        for _func, file in reversed(frames):
            area = _area(file)
            if area:
                areas[area] += count
                break
        else:
            areas["other"] += count
    if not total:
        return "no samples"
    out = [f"{total} busy samples (idle waits dropped)", "", "By area (leaf frame's package):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in areas.most_common(top)]
    out += ["", "Inclusive (on the stack):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    out += ["", "By the innermost ehrca function on the stack (where the time is spent from):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in owner.most_common(top * 2)]
    out += ["", "Self (leaf):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lint", choices=["on", "off"], default="off")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy (profiling session only)")
    with tempfile.TemporaryDirectory(prefix="ehrca-profile-") as tmp:
        directory = Path(tmp)
        with database(args.db, directory) as url:
            lint = args.lint == "on"
            instance = init_instance(directory, url, lint=lint)
            items = provision(url, locations=300 + args.count)
            csrs = make_csrs(64)
            warm, load = directory / "warm.txt", directory / "load.txt"
            write_requests(warm, collect_requests(items[:300], csrs))
            write_requests(load, collect_requests(items[300:], csrs))
            raw_path = args.out or directory / "raw.txt"
            with serving(instance, workers=args.workers) as process:
                run_wrk(instance.base_url, warm, expected_status=201, seconds=3)
                spy = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(process.pid),
                        "--subprocesses",
                        "--rate",
                        "250",
                        "--duration",
                        str(int(args.seconds)),
                        "--format",
                        "raw",
                        "--output",
                        str(raw_path),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)
                result = run_wrk(
                    instance.base_url,
                    load,
                    expected_status=201,
                    seconds=args.seconds - 1.5,
                    connections=args.connections,
                )
                spy.wait(timeout=args.seconds + 60)
            print(
                f"{args.db} w{args.workers} lint {args.lint}: {result.ok_per_s:.0f}/s, "
                f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, failed {result.bad}"
            )
            print(summarise_raw(raw_path.read_text()))


if __name__ == "__main__":
    main()
