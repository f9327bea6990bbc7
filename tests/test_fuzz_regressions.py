"""Every input a fuzz target ever crashed on, replayed on every ``make test`` (issue 9).

``make fuzz`` (fuzz/run.py) writes what it finds under tests/fuzz_regressions/<target>/; this runs
each file through the same function of fuzz/targets.py that atheris ran, without atheris. The
seeds the fuzzers start from are run too, so that a target that no longer runs at all is caught
here rather than by a fuzzing session that silently finds nothing.

Kept inputs, and what they found:

- ``*/crash-undeclared-namespace-prefix``: a ``soap:`` prefix used but never declared. libxml2
  reports it and lxml still returns a tree whose tags hold a colon, which lxml's own QName then
  refuses with a ValueError: the emulator answered a bare 500 and the client's SOAP screening
  raised ValueError. parse_xml now refuses any document libxml2 reported an error in.
- ``emulator_request/crash-raw-non-utf8-query-string``: a query string with a raw byte that is
  not UTF-8 (h11 passes such bytes on; httptools refuses them with 400). Starlette's
  ``request.url`` decodes the query as UTF-8 and raised UnicodeDecodeError: a bare 500 with a
  traceback in the server log. The emulator now reads the query's bytes and answers ASMX's
  "Invalid character" refusal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import finishes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import seeds  # noqa: E402 - fuzz/ is not a package
import targets  # noqa: E402

REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"
TARGETS: dict[str, Callable[[bytes], None]] = {
    "response": targets.response,
    "soap_answer": targets.soap_answer,
    "request_document": targets.request_document,
    "emulator_request": targets.emulator_request,
}

KEPT = sorted(
    path
    for name in TARGETS
    if (REGRESSIONS / name).is_dir()
    for path in (REGRESSIONS / name).iterdir()
    if path.is_file() and not path.name.startswith(".")
)


def _replay(target: str, data: bytes) -> None:
    _value, error = finishes(lambda: TARGETS[target](data), timeout=30)
    if error is not None:
        raise error


@pytest.mark.parametrize("path", KEPT, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_kept_crash_input_no_longer_crashes(path: Path) -> None:
    _replay(path.parent.name, path.read_bytes())


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_seed_runs_through_its_target(target: str) -> None:
    inputs = list(seeds.SEEDS[target]())
    assert len(inputs) > 20
    for data in inputs:
        _replay(target, data)


def test_the_kept_inputs_are_where_the_runner_writes_them() -> None:
    assert KEPT, "the regression inputs found so far are missing"
    assert {path.parent.name for path in KEPT} <= set(TARGETS)
