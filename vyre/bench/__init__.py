"""vyre-bench: the microbenchmark harness (docs/bench.md).

Run it as ``vyre-bench`` or ``python -m vyre.bench``. The pieces:

* :mod:`vyre.bench.stats`   -- summary statistics (percentile method, sample stdev);
* :mod:`vyre.bench.runner`  -- warm-up, stopping rule, per-op normalisation, ratios, skips;
* :mod:`vyre.bench.env`     -- environment metadata recorded with each run;
* :mod:`vyre.bench.report`  -- the result document, terminal table, markdown;
* :mod:`vyre.bench.schema`  -- the JSON schema and its validator;
* :mod:`vyre.bench.compare` -- ``vyre-bench compare`` and its flagging rule;
* :mod:`vyre.bench.plots`   -- PNG plots (optional, matplotlib);
* :mod:`vyre.bench.suites`  -- one module per suite.
"""
from vyre.bench.schema import SCHEMA_VERSION  # noqa: F401
