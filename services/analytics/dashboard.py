"""The dashboard page and its script, served by the analytics service itself (no CDN: it must
work on a shop's machine with no internet). Both are static and hold no figures; the script
fetches every figure from the API with the bearer token the user enters."""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Salesbook analytics</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 form { display: flex; gap: .75rem; align-items: end; flex-wrap: wrap; }
 label { display: flex; flex-direction: column; font-size: .8rem; }
 #kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr));
         gap: .5rem; margin: 1rem 0; }
 .tile { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .75rem; }
 .tile b { display: block; font-size: 1.2rem; }
 .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(26rem, 1fr));
           gap: 1rem; }
 svg { width: 100%; height: 240px; border: 1px solid #eee; }
 #error { color: #b00; }
</style>
</head>
<body>
<h1>Sales analytics</h1>
<form id="controls">
 <label>Bearer token <input id="token" type="password" size="30" required></label>
 <label>From <input id="from" type="date" required></label>
 <label>To <input id="to" type="date" required></label>
 <button type="submit">Show</button>
 <span id="asof"></span>
</form>
<p id="error"></p>
<div id="kpis"></div>
<div class="charts">
 <section><h2>Revenue per month, with forecast</h2><svg id="trend"></svg></section>
 <section><h2>Top products by revenue</h2><svg id="products"></svg></section>
 <section><h2>Sales per channel</h2><svg id="channels"></svg></section>
 <section><h2>Receivables by age, today</h2><svg id="ageing"></svg></section>
</div>
<script src="dashboard.js"></script>
</body>
</html>
"""

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";

async function api(path, params) {
  const query = new URLSearchParams(params).toString();
  const answer = await fetch(`${path}?${query}`, {
    headers: { Authorization: `Bearer ${$("token").value}` },
  });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.detail || answer.statusText);
  return body;
}

function node(parent, name, attributes, text) {
  const element = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
  if (text !== undefined) element.textContent = text;
  parent.appendChild(element);
  return element;
}

// Bars for labelled values; forecast bars are drawn hollow.
function bars(svg, items) {
  svg.replaceChildren();
  const width = svg.clientWidth || 400, height = 240, bottom = 40, top = 10;
  const max = Math.max(1, ...items.map((i) => Math.abs(i.value)));
  const step = width / Math.max(1, items.length);
  items.forEach((item, n) => {
    const h = ((height - bottom - top) * Math.max(0, item.value)) / max;
    node(svg, "rect", {
      x: n * step + 4, y: height - bottom - h, width: Math.max(2, step - 8), height: h,
      fill: item.forecast ? "none" : "#4a7bd0", stroke: "#4a7bd0",
    }).appendChild(document.createElementNS(NS, "title")).textContent =
      `${item.label}: ${item.value}`;
    node(svg, "text", {
      x: n * step + step / 2, y: height - bottom + 14, "text-anchor": "middle",
      "font-size": 10,
    }, item.label.slice(0, 10));
  });
}

function tile(name, value) {
  const div = document.createElement("div");
  div.className = "tile";
  div.append(name);
  const b = document.createElement("b");
  b.textContent = value === null ? "–" : value;
  div.prepend(b);
  $("kpis").appendChild(div);
}

async function show(event) {
  if (event) event.preventDefault();
  sessionStorage.setItem("salesbook-token", $("token").value);
  $("error").textContent = "";
  const range = { from: $("from").value, to: $("to").value };
  try {
    const [kpis, trend, top, channels, ageing] = await Promise.all([
      api("kpis", range),
      api("trend", { ...range, metric: "revenue", interval: "month", forecast: 3 }),
      api("top", { ...range, dimension: "product", limit: 10 }),
      api("sales", { ...range, group_by: "channel" }),
      api("ar-ageing", {}),
    ]);
    $("asof").textContent = `as of ${kpis.as_of || "no events yet"}`;
    $("kpis").replaceChildren();
    for (const name of ["revenue", "orders", "average_order_value", "units_per_order",
      "return_rate", "conversion_rate", "new_customers", "returning_customers",
      "average_customer_lifetime_value", "days_sales_outstanding", "collection_rate"]) {
      tile(name.replaceAll("_", " "), kpis[name]);
    }
    bars($("trend"), trend.points.map((p) => ({
      label: p.bucket.slice(0, 7), value: Number(p.value), forecast: p.forecast })));
    const byRevenue = (rows) =>
      rows.map((r) => ({ label: r.key || "none", value: Number(r.revenue) }));
    bars($("products"), byRevenue(top.rows));
    bars($("channels"), byRevenue(channels.rows));
    const totals = ageing.totals || {};
    bars($("ageing"), ["current", "d1_30", "d31_60", "d61_90", "over_90"].map((b) => ({
      label: b, value: Number(totals[b] || 0) })));
  } catch (error) {
    $("error").textContent = String(error.message || error);
  }
}

const today = new Date();
$("to").value = today.toISOString().slice(0, 10);
$("from").value = new Date(today.getFullYear(), 0, 1, 12).toISOString().slice(0, 10);
$("token").value = sessionStorage.getItem("salesbook-token") || "";
$("controls").addEventListener("submit", show);
if ($("token").value) show();
"""
