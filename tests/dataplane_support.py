"""
Former home of the real-socket fixtures, now all in L{tests.support}; these
names stay importable from here for the modules that still import them
from this module.  New code imports from L{tests.support}.
"""

from tests.support import (
    GatewayUnderTest,
    RawServer,
    RecordingResource,
    Upstream,
    _Collector,
    dump,
    raw_exchange,
    raw_upstream,
    serve,
    snapshot_of,
    tenant_objects,
)

__all__ = [
    "GatewayUnderTest",
    "RawServer",
    "RecordingResource",
    "Upstream",
    "_Collector",
    "dump",
    "raw_exchange",
    "raw_upstream",
    "serve",
    "snapshot_of",
    "tenant_objects",
]
