"""
twistd dropin for tenantgw: makes C{twistd tenantgw} available.

This file lives in a top-level C{twisted/plugins/} directory that has no
C{__init__.py}; Twisted's plugin system finds it through
C{twisted.plugin.pluginPackagePaths}.  It must stay cheap and side-effect free:
it is imported whenever anything lists Twisted plugins (C{twistd --help}), so it
imports neither the reactor nor tenantgw itself.  L{ServiceMaker} imports
C{tenantgw.app.service} (which provides C{Options} and C{makeService}) only when
the C{tenantgw} subcommand is actually used.
"""

from twisted.application.service import ServiceMaker

tenantgw = ServiceMaker(
    "tenantgw",
    "tenantgw.app.service",
    "Multi-tenant reverse-proxy gateway for Kubernetes",
    "tenantgw",
)
