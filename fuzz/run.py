"""Run every fuzz target for a bounded time (``make fuzz``); crashes become regression inputs.

    python fuzz/run.py [--time SECONDS] [--target NAME ...]

Each target starts from the seeds of fuzz/seeds.py in a scratch corpus directory (deleted after
the run unless ``--keep``). libFuzzer writes any input that crashes, hangs past ``--timeout`` or
passes the memory limit straight into tests/fuzz_regressions/<target>/, where
tests/test_fuzz_regressions.py replays it on every ``make test``: fix the bug, keep the input.
The exit status is 1 when a target found anything.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE.parent / "tests" / "fuzz_regressions"
TARGETS = ("response", "soap_answer", "request_document", "emulator_request")


def write_seeds(target: str, directory: Path) -> int:
    sys.path.insert(0, str(HERE))
    from seeds import SEEDS

    count = 0
    for count, seed in enumerate(SEEDS[target](), start=1):
        (directory / f"seed-{count:04d}").write_bytes(seed)
    return count


def run(target: str, seconds: int, timeout: int, keep: bool) -> tuple[bool, str]:
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    artifacts = REGRESSIONS / target
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    seeds = write_seeds(target, corpus)
    command = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        str(corpus),
        f"-max_total_time={seconds}",
        f"-timeout={timeout}",
        "-rss_limit_mb=2048",
        "-max_len=16384",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    print(f"== {target}: {seeds} seeds, {seconds} s", flush=True)
    # The command is this interpreter running a file of this directory: nothing untrusted.
    done = subprocess.run(  # noqa: S603
        command, cwd=HERE, capture_output=True, text=True, check=False
    )
    log = done.stderr
    found = sorted(set(artifacts.iterdir()) - before)
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    summary = (
        f"{target}: {runs[-1] if runs else '?'} runs, coverage {coverage[-1] if coverage else '?'}"
        f", corpus {len(list(corpus.iterdir()))} inputs, exit {done.returncode}"
    )
    if found or done.returncode != 0:
        tail = "\n".join(log.splitlines()[-40:])
        summary += "\n" + tail + "".join(f"\n   kept: {path}" for path in found)
    if keep:
        summary += f"\n   corpus: {corpus}"
    else:
        shutil.rmtree(corpus, ignore_errors=True)
    return not found and done.returncode == 0, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=int, default=60, help="seconds per target")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--target", action="append", choices=TARGETS)
    parser.add_argument("--keep", action="store_true", help="keep the grown corpus")
    options = parser.parse_args()
    results = [
        run(t, options.time, options.timeout, options.keep) for t in options.target or TARGETS
    ]
    print()
    for _ok, summary in results:
        print(summary)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
