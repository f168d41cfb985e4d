"""
One translator per configuration dialect (the Tenant ConfigMap's
``tenant.yaml``, Gateway API, Ingress), each turning the objects a source
delivered into the one tenant model of L{tenantgw.config.model} plus the
status each object should carry.

Translators are pure: objects in, values out, no I/O and no clock, so that
the whole of a dialect's semantics can be tested without a cluster and a
translation can be repeated for an unchanged input at no risk.  Tenant
policy (host ownership across dialects, ceilings, same-namespace
references) is applied after translation, once, for every dialect alike.
"""
