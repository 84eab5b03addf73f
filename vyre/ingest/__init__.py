"""Streaming ingest: file bytes into GPU-visible staging memory, scanned by DFA_SCAN slots.

``stream`` (GpuStream), ``readers`` (io_uring or a preadv pool), ``staging`` (page-locked
chunk ring), ``dfa`` (pattern tables), ``_uring`` (the io_uring extension over csrc/uring.c).
"""
