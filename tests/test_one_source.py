"""One declaration per fact: every extension reads the same ABI table and host atomics, and
modules that need wire constants do not depend on an unrelated extension for them."""
import subprocess
import sys

import numpy as np

import vyre._wire as wire_ext
from vyre import protocol
from vyre.backends import _cpu


def test_extensions_share_one_abi_table_and_one_set_of_atomics():
    from vyre.ingest import _uring

    assert _cpu.ABI is wire_ext.ABI and _uring.ABI is wire_ext.ABI and protocol.ABI is wire_ext.ABI
    for name in ("atomic_load_u32", "atomic_store_u32", "atomic_cas_u32"):
        assert getattr(_uring, name) is getattr(wire_ext, name)
    assert _cpu.atomic_cas_u32 is wire_ext.atomic_cas_u32


def test_atomic_helpers_on_words():
    a = np.zeros(4, np.uint32)
    assert wire_ext.atomic_cas_u32(a, 1, 0, 5) == 0 and a[1] == 5   # swapped: returns expected
    assert wire_ext.atomic_cas_u32(a, 1, 0, 7) == 5 and a[1] == 5   # refused: returns the value
    wire_ext.atomic_store_u32(a, 3, protocol.U32_MAX)
    assert wire_ext.atomic_load_u32(a, 3) == protocol.U32_MAX
    for bad in (-1, 4):
        try:
            wire_ext.atomic_load_u32(a, bad)
        except IndexError:
            continue
        raise AssertionError(f"index {bad} was accepted")


def test_build_dfa_works_without_the_io_uring_extension():
    # a platform without io_uring (the extension not built) must still build DFA tables
    code = (
        "import sys; sys.modules['vyre.ingest._uring'] = None\n"
        "from vyre.ingest.dfa import build_dfa\n"
        "d = build_dfa([b'ab'])\n"
        "print(d.count_matches(b'xabab'), d.states)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "2" and int(out.stdout.split()[1]) >= 3
