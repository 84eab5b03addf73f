"""The CUDA backend: the persistent megakernel on an NVIDIA GPU through PyCUDA.

``backend`` holds :class:`CudaBackend` (launch, pause/relaunch, stop), ``host`` the page-locked
registration of host memory, ``probe`` whether a GPU and PyCUDA are present. Importing this
package does not import PyCUDA; that happens when a backend starts.
"""
from vyre.backends.cuda.backend import (CudaBackend, DeviceBuffer, device_address, host_zeros,
                                        quiesced, register_host, release_host)

__all__ = ["CudaBackend", "DeviceBuffer", "device_address", "host_zeros", "quiesced",
           "register_host", "release_host"]
