"""
The operator's dashboard at C{/} on the admin endpoint.

One self-contained page (inline CSS and script, nothing fetched from
elsewhere: gateways often run where there is no internet) that polls
C{/api/tenants} and renders it, so the page and the JSON can never disagree.
Every value is inserted as text, never as HTML: tenant configs are written by
tenants, and the operator's browser must not run what they wrote.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

REFRESH_MILLISECONDS = 2000

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tenantgw</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
#summary { color: #555; margin-bottom: 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .4em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
.state { font-weight: 600; padding: .1em .5em; border-radius: .3em; white-space: nowrap; }
.Accepted { background: #d8f5d8; } .Clamped { background: #fff1c2; }
.Rejected, .HostConflict, .CertificateError { background: #ffd6d6; }
.muted { color: #777; } ul { margin: 0; padding-left: 1.1em; }
.err { color: #a00; } .ok { color: #070; } code { font-size: 12px; }
</style>
</head>
<body>
<h1>tenantgw</h1>
<div id="summary">loading&hellip;</div>
<table>
<thead><tr><th>tenant</th><th>state</th><th>hosts</th><th>routes &rarr; endpoints</th>
<th>quota use</th><th>certificate</th><th>messages and last errors</th></tr></thead>
<tbody id="tenants"></tbody>
</table>
<script>
"use strict";
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function list(items) {
  const ul = el("ul");
  for (const item of items) {
    const li = el("li");
    if (item instanceof Node) li.appendChild(item); else li.textContent = item;
    ul.appendChild(li);
  }
  return ul;
}
function rate(r) { return r ? r.requestsPerSecond + "/s burst " + r.burst : "none"; }
function row(t) {
  const tr = el("tr");
  tr.id = "tenant-" + t.namespace;
  tr.appendChild(el("td", t.namespace + (t.generation ? " @" + t.generation : "")));
  const state = el("td");
  state.appendChild(el("span", t.state, "state " + t.state));
  state.appendChild(el("div", t.serving ? "serving" : "not serving", t.serving ? "ok" : "err"));
  tr.appendChild(state);
  const hosts = el("td"); hosts.appendChild(list(t.hosts)); tr.appendChild(hosts);
  const routes = el("td");
  routes.appendChild(list(t.routes.map(r => {
    const eps = r.backends.flatMap(b => b.endpoints);
    const out = r.backends.flatMap(b => b.ejected || []).map(e => e + " (ejected)");
    const all = eps.concat(out);
    return r.name + " " + r.path + " \u2192 " +
      (r.backends.length ? (eps.length ? all.join(", ") : "no ready endpoint" +
        (out.length ? ": " + out.join(", ") : "")) : "redirect");
  })));
  routes.appendChild(el("div", t.readyEndpoints + " ready endpoints",
                        t.readyEndpoints ? "muted" : "err"));
  tr.appendChild(routes);
  const q = t.quota;
  tr.appendChild(el("td", q ? ("rate " + rate(q.rate) + "; per client " + rate(q.perClient) +
    "; in flight " + (q.inFlight === null ? "?" : q.inFlight) +
    (q.maxConcurrentRequests ? "/" + q.maxConcurrentRequests : "")) : "-"));
  tr.appendChild(el("td", t.certificateExpires ? "expires " + t.certificateExpires : "-"));
  const problems = el("td");
  if (t.messages.length) problems.appendChild(list(t.messages));
  if (t.recentErrors.length) problems.appendChild(list(t.recentErrors.slice().reverse().map(e =>
    el("span", e.time + " " + e.route + " " + e.status + (e.reason ? " " + e.reason : "") +
       (e.upstream ? " " + e.upstream : ""), "err"))));
  if (!t.messages.length && !t.recentErrors.length) problems.appendChild(el("span", "-", "muted"));
  tr.appendChild(problems);
  return tr;
}
async function refresh() {
  try {
    const response = await fetch("api/tenants", {cache: "no-store"});
    const doc = await response.json();
    const body = document.getElementById("tenants");
    body.replaceChildren(...doc.tenants.map(row));
    const serving = doc.tenants.filter(t => t.serving).length;
    document.getElementById("summary").textContent = doc.tenants.length + " tenants, " +
      serving + " serving; updated " + new Date().toISOString();
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the gateway: " + e;
  }
}
refresh();
setInterval(refresh, __REFRESH__);
</script>
</body>
</html>
""".replace("__REFRESH__", str(REFRESH_MILLISECONDS))


class DashboardResource(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        # The page runs only its own inline script and talks only to this endpoint.
        request.setHeader(
            b"content-security-policy",
            b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
            b" connect-src 'self'",
        )
        return PAGE.encode("utf-8")
