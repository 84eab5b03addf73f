"""The CUDA backend: the persistent megakernel on an NVIDIA GPU through PyCUDA.

``backend`` holds :class:`CudaBackend` (launch, pause/relaunch, leaving the GPU when idle,
stop), ``residency`` the process-wide pause/relaunch machine, ``memory`` mapped host memory and
device addresses of foreign arrays, ``streams`` ordering with CuPy / PyTorch streams, ``host``
the page-locked registration of host memory, ``probe`` whether a GPU and PyCUDA are present.
Importing this package does not import PyCUDA; that happens when a backend starts.
"""
from vyre.backends.cuda.backend import CudaBackend
from vyre.backends.cuda.memory import (
                                       DeviceBuffer,
                                       device_address,
                                       host_zeros,
                                       register_host,
                                       release_host,
)
from vyre.backends.cuda.residency import quiesced

__all__ = ["CudaBackend", "DeviceBuffer", "device_address", "host_zeros", "quiesced",
           "register_host", "release_host"]
