"""Streaming ingest: file bytes into GPU-visible staging memory, scanned by DFA_SCAN slots.

``stream`` (GpuStream: arguments, lifetime, what a scan publishes), ``pipeline`` (one call's
chunk pipeline), ``leases`` (what the streams of one megakernel share), ``readers`` (io_uring
or a preadv pool), ``staging`` (page-locked chunk ring), ``dfa`` (pattern tables), ``args``
(argument checks), ``_uring`` (the io_uring extension over csrc/uring.c).
"""
