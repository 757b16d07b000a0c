"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
// One colour per chart (dashboard-colours.json), so each can be told apart on a screenshot.
let COLOURS = null;
const HEIGHT = 260;
const amount = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const percent = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });

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

function titled(element, text) {
  node(element, "title", {}, text);
  return element;
}

// Starts a chart afresh; an empty one says so instead of showing a bare frame.
function canvas(svg, count) {
  svg.replaceChildren();
  if (count === 0) {
    node(svg, "text", { x: 12, y: 24, class: "empty" }, "nothing in this period");
  }
  return svg.clientWidth || 400;
}

// Horizontal bars, one row per labelled value, largest first.
function barsAcross(svg, items, colour) {
  const width = canvas(svg, items.length);
  const sorted = [...items].sort((a, b) => b.value - a.value);
  const left = 110, right = 80, top = 10;
  const row = Math.min(32, (HEIGHT - 2 * top) / Math.max(1, sorted.length));
  const max = Math.max(1, ...sorted.map((i) => i.value));
  sorted.forEach((item, n) => {
    const y = top + n * row;
    const length = ((width - left - right) * Math.max(0, item.value)) / max;
    node(svg, "text", { x: left - 6, y: y + row / 2 + 4, "text-anchor": "end" },
      item.label.slice(0, 16));
    titled(node(svg, "rect", {
      class: "bar", x: left, y: y + 3, width: Math.max(1, length), height: row - 6,
      fill: colour,
    }), `${item.label}: ${item.value}`);
    node(svg, "text", { x: left + length + 6, y: y + row / 2 + 4 }, amount.format(item.value));
  });
}

// Vertical bars in the order given, for buckets that have an order of their own.
function barsUp(svg, items, colour) {
  const width = canvas(svg, items.length);
  const bottom = 30, top = 24, step = width / Math.max(1, items.length);
  const max = Math.max(1, ...items.map((i) => i.value));
  items.forEach((item, n) => {
    const h = ((HEIGHT - bottom - top) * Math.max(0, item.value)) / max;
    const x = n * step + step * 0.15, y = HEIGHT - bottom - h;
    titled(node(svg, "rect", {
      class: "bar", x, y, width: step * 0.7, height: Math.max(1, h), fill: colour,
    }), `${item.label}: ${item.value}`);
    const middle = { x: n * step + step / 2, "text-anchor": "middle" };
    node(svg, "text", { ...middle, y: y - 6 }, amount.format(item.value));
    node(svg, "text", { ...middle, y: HEIGHT - bottom + 16 }, item.label);
  });
}

function polyline(points) {
  return points.map((p, n) => `${n ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

// A vertical scale from 0 (or the lowest value, if below it) to the highest value.
function scale(values, width) {
  const left = 70, right = width - 36, top = 16, bottom = HEIGHT - 36;
  const low = Math.min(0, ...values), high = Math.max(1, ...values);
  const y = (value) => top + ((high - value) * (bottom - top)) / (high - low);
  const ticks = low < 0 ? [high, 0, low] : [high, high / 2, 0];
  return { left, right, y, ticks };
}

function gridLines(svg, { left, right, y, ticks }) {
  for (const value of ticks) {
    node(svg, "line", { x1: left, x2: right, y1: y(value), y2: y(value), stroke: "#e4e4e4" });
    node(svg, "text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" },
      amount.format(value));
  }
  node(svg, "line", { x1: left, x2: right, y1: y(0), y2: y(0), stroke: "#888" });
}

// History as a filled line, the forecast as a dashed line carrying on from its last point.
function trendLine(svg, points) {
  const width = canvas(svg, points.length);
  if (!points.length) return;
  const axis = scale(points.map((p) => p.value), width);
  gridLines(svg, axis);
  const step = (axis.right - axis.left) / Math.max(1, points.length - 1);
  const at = points.map((p, n) => ({ ...p, x: axis.left + n * step, y: axis.y(p.value) }));
  const actual = at.filter((p) => !p.forecast);
  const ahead = at.filter((p) => p.forecast);
  if (actual.length) {
    const first = actual[0], last = actual[actual.length - 1], base = axis.y(0);
    node(svg, "path", {
      class: "actual-area", fill: COLOURS["actual-area"],
      d: `${polyline(actual)} L${last.x},${base} L${first.x},${base} Z`,
    });
    node(svg, "path", {
      class: "actual", d: polyline(actual), fill: "none", stroke: COLOURS.actual,
      "stroke-width": 3,
    });
  }
  if (ahead.length) {
    node(svg, "path", {
      class: "forecast", d: polyline(actual.slice(-1).concat(ahead)), fill: "none",
      stroke: COLOURS.forecast, "stroke-width": 3, "stroke-dasharray": "8 5",
    });
  }
  trendPoints(svg, at);
}

// A dot per point, with its value on hover, and the month under every few of them.
function trendPoints(svg, at) {
  const every = Math.ceil(at.length / 12);
  at.forEach((p, n) => {
    titled(node(svg, "circle", {
      class: p.forecast ? "forecast-point" : "actual-point", cx: p.x, cy: p.y, r: 5,
      fill: p.forecast ? COLOURS.forecast : COLOURS.actual,
    }), `${p.label}: ${p.value}${p.forecast ? " (forecast)" : ""}`);
    if (n % every === 0) {
      node(svg, "text", { x: p.x, y: HEIGHT - 12, "text-anchor": "middle" }, p.label);
    }
  });
}

function tile(name, value) {
  const div = document.createElement("div");
  div.className = "tile";
  div.append(name);
  const b = document.createElement("b");
  b.textContent = value;
  div.prepend(b);
  $("kpis").appendChild(div);
}

const RATES = ["return_rate", "conversion_rate", "collection_rate"];
const KPIS = ["revenue", "orders", "average_order_value", "units_per_order", "return_rate",
  "conversion_rate", "new_customers", "returning_customers",
  "average_customer_lifetime_value", "days_sales_outstanding", "collection_rate"];

function showKpis(kpis) {
  $("kpis").replaceChildren();
  for (const name of KPIS) {
    const value = kpis[name];
    const shown = value === null ? "–" : RATES.includes(name) ? percent.format(value) : value;
    tile(name.replaceAll("_", " "), shown);
  }
}

const AGES = { current: "not yet due", d1_30: "1–30 days", d31_60: "31–60 days",
  d61_90: "61–90 days", over_90: "over 90 days" };

async function show(event) {
  if (event) event.preventDefault();
  sessionStorage.setItem("salesbook-token", $("token").value);
  $("error").textContent = "";
  const range = { from: $("from").value, to: $("to").value };
  try {
    COLOURS ??= await (await fetch("dashboard-colours.json")).json();
    const [kpis, trend, top, channels, regions, ageing] = await Promise.all([
      api("kpis", range),
      api("trend", { ...range, metric: "revenue", interval: "month", forecast: 3 }),
      api("top", { ...range, dimension: "product", limit: 10 }),
      api("sales", { ...range, group_by: "channel" }),
      api("sales", { ...range, group_by: "region" }),
      api("ar-ageing", { as_of: range.to }),
    ]);
    $("asof").textContent = `as of ${kpis.as_of || "no events yet"}`;
    showKpis(kpis);
    $("method").textContent = "Solid line: actual revenue. Dashed line: forecast by "
      + (trend.method || "no method") + ".";
    trendLine($("trend"), trend.points.map((p) => ({
      label: p.bucket.slice(0, 7), value: Number(p.value), forecast: p.forecast })));
    const byRevenue = (rows) =>
      rows.map((r) => ({ label: r.key || "none", value: Number(r.revenue) }));
    barsAcross($("products"), byRevenue(top.rows), COLOURS.products);
    barsAcross($("channels"), byRevenue(channels.rows), COLOURS.channels);
    barsAcross($("regions"), byRevenue(regions.rows), COLOURS.regions);
    $("ageing-date").textContent = `Open amounts by days past due at the end of ${range.to}.`;
    barsUp($("ageing"), Object.entries(AGES).map(([bucket, label]) => ({
      label, value: Number(ageing.totals[bucket]) })), COLOURS.ageing);
    document.body.dataset.shown = "charts";
  } catch (error) {
    $("error").textContent = String(error.message || error);
    document.body.dataset.shown = "error";
  }
}

// A token in the address fragment is taken once, then dropped from the address.
function fromAddress() {
  const given = new URLSearchParams(location.hash.slice(1));
  for (const name of ["from", "to"]) if (given.get(name)) $(name).value = given.get(name);
  if (given.get("token")) {
    sessionStorage.setItem("salesbook-token", given.get("token"));
    given.delete("token");
    const rest = given.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
}

const today = new Date();
$("to").value = today.toISOString().slice(0, 10);
$("from").value = new Date(today.getFullYear(), 0, 1, 12).toISOString().slice(0, 10);
fromAddress();
$("token").value = sessionStorage.getItem("salesbook-token") || "";
$("controls").addEventListener("submit", show);
if ($("token").value) show();
