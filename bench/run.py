"""``make bench``: every benchmark script in one run, within 15 minutes on 2 cores.

Starts a fresh ``bench/results/latest.json``, runs the scripts in order (the limit
first: the issuance figures are ratios to it), each in its own process with a time
budget, then makes sure every figure id of the benchmark issue is present — a script
that failed or ran out of time leaves its figures as null with the reason — and
writes ``bench/results/latest.md`` with the table, the machine and its load (the
machine may be shared: the load average is part of the result).

Traffic goes to 127.0.0.1 only; every load loop is bounded in count and time.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import alias_figure, read_results, results_dir, write_markdown

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOTAL_BUDGET = 15 * 60.0

#: (script, arguments, time budget in seconds, ids it must produce)
SCRIPTS: list[tuple[str, list[str], float, list[str]]] = [
    ("limits.py", [], 60, ["limit.ecdsa_p256_sign_per_s", "limit.csr_to_cert_per_s"]),
    (
        "issue_http.py",
        [],
        240,
        [
            "issue.http.sqlite.w1.lint_on_per_s",
            "issue.http.sqlite.w2.lint_off_per_s",
            "issue.http.sqlite.w2.lint_on_per_s",
            "issue.http.postgres.w2.lint_on_per_s",
        ],
    ),
    (
        "crl_publish.py",
        [],
        200,
        ["crl.publish.10k_s", "crl.publish.100k_s", "crl.publish.1m_s", "crl.publish.1m_rss_mib"],
    ),
    ("ocsp.py", [], 80, ["ocsp.presigned_per_s"]),
    ("mtls.py", [], 60, ["mtls.handshake_per_s", "mtls.whoami_per_s"]),
    (
        "revocation.py",
        [],
        60,
        ["revoke_to_mtls_refusal_ms", "revoke_to_crl_ms", "revoke_to_ocsp_ms"],
    ),
    (
        "peers.py",
        [],
        260,
        [
            "peer.openssl_ca.issue_per_s",
            "peer.openssl_ca.gencrl_1m_s",
            "peer.django_ca.issue_per_s",
            "peer.django_ca.crl_100k_s",
            "peer.cfssl.sign_http_per_s",
            "peer.cfssl.gencrl_1m_s",
        ],
    ),
]


def _null(reason: str, command: str) -> dict[str, object]:
    return {
        "median": None,
        "min": None,
        "max": None,
        "unit": "",
        "command": command,
        "note": reason,
    }


def main() -> int:
    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.json").unlink(missing_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    failures: dict[str, str] = {}
    for script, args, budget, _ids in SCRIPTS:
        path = BENCH / script
        command = f".venv/bin/python bench/{script}"
        remaining = TOTAL_BUDGET - (time.monotonic() - started) - 10
        if not path.exists():
            failures[script] = f"{command} does not exist yet"
            print(f"== {script}: missing, its figures are null", flush=True)
            continue
        timeout = min(budget, remaining)
        if timeout <= 5:
            failures[script] = "not run: the 15-minute budget of make bench was spent"
            continue
        print(f"== {script} (budget {timeout:.0f} s)", flush=True)
        begin = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(path), *args], cwd=ROOT, timeout=timeout, check=False
            )
            if done.returncode != 0:
                failures[script] = f"{command} exited with {done.returncode}"
        except subprocess.TimeoutExpired:
            failures[script] = f"{command} ran out of its {timeout:.0f} s budget"
        print(f"== {script}: {time.monotonic() - begin:.0f} s", flush=True)
    data = read_results()
    for script, _args, _budget, ids in SCRIPTS:
        for figure_id in ids:
            if figure_id not in data and (alias := alias_figure(data, figure_id)) is not None:
                data[figure_id] = alias
            if figure_id not in data:
                reason = failures.get(script, f"bench/{script} did not produce it")
                data[figure_id] = _null(reason, f".venv/bin/python bench/{script}")
    (results / "latest.json").write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    preamble = (
        f"# Benchmark results (`make bench`)\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit `{commit or '?'}` "
        f"plus working tree; {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"`make bench` took {elapsed / 60:.1f} min. Load average before "
        f"{load_before[0]:.1f}, after {load_after[0]:.1f} (the machine may be shared, "
        "so absolute rates move with it; ratios measured in the same run move less). "
        "Each figure: median, min and max over its runs.\n"
    )
    if failures:
        preamble += (
            "\nNot measured or incomplete: "
            + "; ".join(f"`{k}`: {v}" for k, v in failures.items())
            + ".\n"
        )
    write_markdown(data, preamble)
    print(f"make bench: {elapsed:.0f} s; results in {results / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
