"""
Route plans: what compile made of the tenants' configs, in the form the
data plane runs.

The flow is sources -> translators -> tenant model -> compile -> plans ->
data plane.  Nothing here imports the tenant model (L{tenantgw.config}):
a plan holds bytes already encoded, regular expressions already compiled
and decisions already taken (which timeout bounds an attempt, what share
of requests a refused backend costs), so the data plane never re-reads a
tenant's declaration, and compile is the only place that does.
"""
