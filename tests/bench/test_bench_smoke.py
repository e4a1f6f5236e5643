"""Smoke test of the benchmark scripts (they are not run by CI otherwise): the cheapest
one, ``bench/crl_publish.py``, with a tiny size on SQLite, writing its results into a
temporary directory. Checks the figures it writes, not how fast they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_crl_publish_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "EHRCA_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "crl_publish.py"),
            "--db",
            "sqlite",
            "--sizes",
            "200",
            "--runs",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    for figure_id in ("crl.publish.200_s", "crl.publish.current.200_s", "crl.publish.200_rss_mib"):
        figure = data[figure_id]
        assert set(figure) >= {"median", "min", "max", "unit", "command"}
        assert 0 < figure["min"] <= figure["median"] <= figure["max"]
    table = (tmp_path / "latest.md").read_text()
    assert "| `crl.publish.200_s`" in table
