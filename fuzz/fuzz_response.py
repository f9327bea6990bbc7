"""atheris entry point: fuzz/targets.py:response under coverage guidance.

    python fuzz/fuzz_response.py [corpus dirs] -max_total_time=60

Run by `make fuzz` through fuzz/run.py; a crash input goes under
tests/fuzz_regressions/response/.
"""

import sys

import atheris

with atheris.instrument_imports(include=["fibo_soap", "zeep", "targets"]):
    import targets

    # What the target imports lazily is imported here, to be instrumented too.
    targets.warm_up()


def main() -> None:
    atheris.Setup(sys.argv, targets.response)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
