"""The local FIBO service: real state, every protocol, faults on demand.

``with run_emulator() as emu:`` runs it in-process on a free loopback port; ``serve()`` runs it in
the foreground (``fibo-sms emulator``). Needs the ``emulator`` extra (starlette, uvicorn).
"""

from fibo_soap.emulator.faults import Fault, FaultKind
from fibo_soap.emulator.server import Emulator, run_emulator, serve
from fibo_soap.emulator.service import REFUSED_SUFFIX, final_status

__all__ = [
    "REFUSED_SUFFIX",
    "Emulator",
    "Fault",
    "FaultKind",
    "final_status",
    "run_emulator",
    "serve",
]
