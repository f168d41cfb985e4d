"""
The operator's dashboard at C{/} on the admin endpoint.

One self-contained page (inline CSS and script, nothing fetched from
elsewhere: gateways often run where there is no internet) that polls
C{/api/tenants} and renders it, so the page and the JSON can never disagree.
Every value is inserted as text, never as HTML: tenant configs are written by
tenants, and the operator's browser must not run what they wrote.
"""

from __future__ import annotations

import base64
import hashlib

from twisted.web.resource import Resource
from twisted.web.server import Request

REFRESH_MILLISECONDS = 2000
# Rows rendered at once; the filter narrows the rest ("show more" adds more).
PAGE_ROWS = 100

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
#summary { color: #555; margin-bottom: .6em; }
#filter { font: inherit; padding: .3em .5em; width: 24em; margin-bottom: .8em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .4em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
.state { font-weight: 600; padding: .1em .5em; border-radius: .3em; white-space: nowrap; }
.Accepted { background: #d8f5d8; } .Clamped { background: #fff1c2; }
.Rejected, .HostConflict, .CertificateError { background: #ffd6d6; }
.object { font-size: 12px; }
.muted { color: #777; } ul { margin: 0; padding-left: 1.1em; }
.err { color: #a00; } .ok { color: #070; } code { font-size: 12px; }
.traffic div { white-space: nowrap; } .ejected { color: #a00; font-weight: 600; }
.cert-warn { background: #fff1c2; } .cert-expired { background: #ffd6d6; font-weight: 600; }
"""

SCRIPT = """
"use strict";
const PAGE_ROWS = __PAGE_ROWS__;
let tenants = [];
let keys = [];
let objects = new Map();  // namespace -> its Ingresses' and Gateway API objects' states
let limit = PAGE_ROWS;
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
function seconds(s) {
  if (s === null || s === undefined) return "-";
  return s < 1 ? (s * 1000).toPrecision(3) + " ms" : s.toPrecision(3) + " s";
}
function perSecond(v) { return v === null || v === undefined ? "-" : v.toFixed(2); }
function traffic(t) {
  const td = el("td", null, "traffic");
  const x = t.traffic;
  td.appendChild(el("div", (x ? perSecond(x.requestsPerSecond) : "0.00") + " req/s", "rps"));
  td.appendChild(el("div", (x && x.errorRatio !== null ? (x.errorRatio * 100).toFixed(1) + "%" :
    "-") + " 5xx", "errors" + (x && x.errorRatio ? " err" : "")));
  td.appendChild(el("div", "p99 " + seconds(x ? x.p99Seconds : null), "p99"));
  td.appendChild(el("div", "429: " + (x ? x.tooManyRequests : 0) + " (" +
    (x ? perSecond(x.tooManyRequestsPerSecond) : "0.00") + "/s)", "r429"));
  return td;
}
function backends(r) {
  if (!r.backends.length) return el("div", r.name + " " + r.path + " \u2192 redirect");
  const total = r.backends.reduce((sum, b) => sum + b.weight, 0);
  const div = el("div", null, "route");
  div.appendChild(el("div", r.name + " " + r.path, "route-name"));
  div.appendChild(list(r.backends.map(b => {
    const span = el("span", null, "backend");
    const share = total ? Math.round(b.weight * 1000 / total) / 10 : 0;
    span.appendChild(el("span", b.service + ":" + b.port + " " + share + "% (weight " + b.weight +
      ") \u2192 ", "weight"));
    span.appendChild(el("span", b.endpoints.length ? b.endpoints.join(", ") : "no ready endpoint",
      b.endpoints.length ? "endpoints" : "endpoints err"));
    for (const e of b.ejected || []) span.appendChild(el("span", " " + e + " (ejected)", "ejected"));
    return span;
  })));
  return div;
}
function certificate(t) {
  const c = t.certificate;
  if (!c) return el("td", "-", "cert");
  const td = el("td", c.relative, "cert cert-" + c.level);
  td.title = t.certificateExpires;
  return td;
}
function row(t) {
  const tr = el("tr");
  tr.id = "tenant-" + t.namespace;
  tr.appendChild(el("td", t.namespace + (t.generation ? " @" + t.generation : "")));
  const state = el("td");
  state.appendChild(el("span", t.state, "state " + t.state));
  state.appendChild(el("div", t.serving ? "serving" : "not serving", t.serving ? "ok" : "err"));
  if (objects.has(t.namespace)) state.appendChild(objectList(t));
  tr.appendChild(state);
  const hosts = el("td"); hosts.appendChild(list(t.hosts)); tr.appendChild(hosts);
  tr.appendChild(traffic(t));
  const routes = el("td");
  routes.appendChild(list(t.routes.map(backends)));
  routes.appendChild(el("div", t.readyEndpoints + " ready endpoints",
                        t.readyEndpoints ? "muted" : "err"));
  tr.appendChild(routes);
  const q = t.quota;
  tr.appendChild(el("td", q ? ("rate " + rate(q.rate) + "; per client " + rate(q.perClient) +
    "; in flight " + (q.inFlight === null ? "?" : q.inFlight) +
    (q.maxConcurrentRequests ? "/" + q.maxConcurrentRequests : "")) : "-"));
  tr.appendChild(certificate(t));
  const problems = el("td");
  if (t.messages.length) problems.appendChild(list(t.messages));
  if (t.recentErrors.length) problems.appendChild(list(t.recentErrors.slice().reverse().map(e =>
    el("span", e.time + " " + e.route + " " + e.status + (e.reason ? " " + e.reason : "") +
       (e.upstream ? " " + e.upstream : ""), "err"))));
  if (!t.messages.length && !t.recentErrors.length) problems.appendChild(el("span", "-", "muted"));
  tr.appendChild(problems);
  return tr;
}
function groupObjects(doc) {
  const found = new Map();
  const add = o => {
    if (!found.has(o.namespace)) found.set(o.namespace, []);
    found.get(o.namespace).push(o);
  };
  for (const o of doc.ingresses || []) add(Object.assign({kind: "Ingress"}, o));
  for (const o of doc.gatewayApi || []) if (o.namespace) add(Object.assign({messages: []}, o));
  return found;
}
function objectList(t) {
  return list((objects.get(t.namespace) || []).map(o => {
    const span = el("span", null, "object");
    span.appendChild(el("span", o.kind + " " + o.name + " "));
    span.appendChild(el("span", o.state,
      "state " + (o.state === "Accepted" ? "Accepted" : "Rejected")));
    for (const m of o.messages || []) span.appendChild(el("div", m, "muted"));
    return span;
  }));
}
function problem(t) {
  const x = t.traffic;
  return t.state !== "Accepted" ||
    (objects.get(t.namespace) || []).some(o => o.state !== "Accepted") || !t.serving || t.messages.length > 0 ||
    t.recentErrors.length > 0 || t.readyEndpoints === 0 || Boolean(x && x.errorRatio) ||
    Boolean(t.certificate && t.certificate.level !== "ok") ||
    t.routes.some(r => r.backends.some(b => (b.ejected || []).length > 0));
}
function key(t) {
  return [t.namespace, t.state, ...t.hosts, ...t.routes.map(r => r.name),
          ...(objects.get(t.namespace) || []).flatMap(o => [o.kind, o.name, o.state]),
          ...t.routes.flatMap(r => r.backends.map(b => b.service))].join(" ").toLowerCase();
}
function render() {
  const started = performance.now();
  const words = document.getElementById("filter").value.toLowerCase().split(/\\s+/)
    .filter(w => w);
  const problemsOnly = document.getElementById("problems").checked;
  const matching = [];
  for (let i = 0; i < tenants.length; i++) {
    if (problemsOnly && !problem(tenants[i])) continue;
    if (words.every(w => keys[i].includes(w))) matching.push(tenants[i]);
  }
  const shown = matching.slice(0, limit);
  document.getElementById("tenants").replaceChildren(...shown.map(row));
  const more = document.getElementById("more");
  more.hidden = matching.length <= shown.length;
  more.textContent = "show " + Math.min(PAGE_ROWS, matching.length - shown.length) + " more";
  const serving = tenants.filter(t => t.serving).length;
  document.getElementById("matches").textContent =
    words.length || problemsOnly || matching.length > shown.length ?
    "showing " + shown.length + " of " + matching.length + " matching" : "";
  document.getElementById("summary").textContent = tenants.length + " tenants, " +
    serving + " serving; updated " + new Date().toISOString();
  window.lastRenderMilliseconds = performance.now() - started;
}
async function refresh() {
  try {
    const response = await fetch("api/tenants", {cache: "no-store"});
    const doc = await response.json();
    tenants = doc.tenants;
    objects = groupObjects(doc);
    keys = tenants.map(key);
    render();
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the gateway: " + e;
  }
}
document.getElementById("filter").addEventListener("input", () => { limit = PAGE_ROWS; render(); });
document.getElementById("problems").checked = location.hash === "#problems";
document.getElementById("problems").addEventListener("change", () => {
  limit = PAGE_ROWS;
  history.replaceState(null, "", document.getElementById("problems").checked ? "#problems" : "#");
  render();
});
document.getElementById("more").addEventListener("click", () => { limit += PAGE_ROWS; render(); });
refresh();
setInterval(refresh, __REFRESH__);
""".replace("__REFRESH__", str(REFRESH_MILLISECONDS)).replace("__PAGE_ROWS__", str(PAGE_ROWS))

PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tenantgw</title>
<style>"""
    + STYLE
    + """</style>
</head>
<body>
<h1>tenantgw</h1>
<div id="summary">loading&hellip;</div>
<input id="filter" type="search" placeholder="filter: tenant, host, state, route, service"
 aria-label="filter tenants" autocomplete="off">
<label><input id="problems" type="checkbox"> problems only</label>
<span id="matches" class="muted"></span>
<table>
<thead><tr><th>tenant</th><th>state</th><th>hosts</th><th>traffic (last 30 s)</th>
<th>routes &rarr; backends (weight) &rarr; endpoints</th>
<th>quota use</th><th>certificate</th><th>messages and last errors</th></tr></thead>
<tbody id="tenants"></tbody>
</table>
<button id="more" type="button" hidden></button>
<script>"""
    + SCRIPT
    + """</script>
</body>
</html>
"""
)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this page's own script and style run (by hash, not 'unsafe-inline'),
# and it talks only to this endpoint.
CSP = (
    f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self'"
)


class DashboardResource(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", CSP.encode("ascii"))
        return PAGE.encode("utf-8")
