"""The pytest plugin (entry point ``pytest11``): a running FIBO emulator and a client for it.

Fixtures:
- ``fibo_emulator``: a fresh emulator per test (temporary state, seeded account, no delivery delay),
  on a free loopback port;
- ``fibo_client``: a FiboClient of the seeded account pointed at it.

Nothing is imported from the emulator until a fixture is used, so the plugin costs a test session
nothing when the fixtures are not requested.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fibo_soap.client import FiboClient
    from fibo_soap.emulator import Emulator


@pytest.fixture
def fibo_emulator() -> Iterator[Emulator]:
    """A running emulator with fresh state, delivering at once (advance its clock for delays)."""
    from fibo_soap.emulator import run_emulator

    with run_emulator(delivery_delay=0) as emulator:
        yield emulator


@pytest.fixture
def fibo_client(fibo_emulator: Emulator) -> Iterator[FiboClient]:
    """A client of the emulator's seeded account, service type 1, over SOAP 1.1."""
    client: FiboClient = fibo_emulator.client()
    with client:
        yield client
