"""atheris entry point: fuzz/targets.py:emulator_request under coverage guidance.

    python fuzz/fuzz_emulator_request.py [corpus dirs] -max_total_time=60

Run by `make fuzz` through fuzz/run.py; a crash input goes under
tests/fuzz_regressions/emulator_request/.
"""

import sys

import atheris

with atheris.instrument_imports(include=["fibo_soap", "targets", "starlette"]):
    import targets

    # What the target imports lazily is imported here, to be instrumented too.
    targets.warm_up()
    targets._app()


def main() -> None:
    atheris.Setup(sys.argv, targets.emulator_request)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
