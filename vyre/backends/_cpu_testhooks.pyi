"""Type stubs of vyre.backends._cpu_testhooks: vyre.backends._cpu built with -DVYRE_TEST_HOOKS=1."""
from vyre.backends._cpu import *  # noqa: F401,F403
from vyre.backends._cpu import CpuWorkers as CpuWorkers
from vyre.backends._cpu import atomic_cas_u32 as atomic_cas_u32
