// The rig's dashboard: reads the HTTP API with the key the operator gave
// (session storage, or #key=… in the address), draws the last hour's
// hashrate, and follows /v1/events. Every value from the API goes into the
// page as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#1b7c83", "#57606a"];
const STORAGE = "hashrig-key";
let key = null;
let scope = null;
let chart = { points: [], devices: [], last: null };
let timer = null;
// The live stream's, so that signing out ends it.
let streamAbort = null;

function rate(h) {
  if (!(h > 0)) return "0 H/s";
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
  let i = 0;
  while (h >= 1000 && i < units.length - 1) { h /= 1000; i++; }
  return `${h.toFixed(h < 10 ? 2 : h < 100 ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  const parts = [[86400 * 365, "y"], [86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  for (const [size, unit] of parts) {
    if (s >= size) return `${(s / size).toFixed(s / size < 10 ? 1 : 0)} ${unit}`;
  }
  return `${s.toFixed(2)} s`;
}

function number(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

async function api(path, options) {
  const init = Object.assign({ headers: {} }, options || {});
  init.headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, init);
  if (response.status === 401) {
    signOut("The key was refused: sign in again.");
    throw new Error("unauthorized");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showSignin(message) {
  $("board").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("whoami").textContent = "";
}

function signOut(message) {
  sessionStorage.removeItem(STORAGE);
  key = null;
  if (timer) clearInterval(timer);
  timer = null;
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  showSignin(message);
}

async function signIn() {
  let me;
  try {
    const response = await fetch("/v1/whoami", { headers: { Authorization: `Bearer ${key}` } });
    me = await response.json().catch(() => ({}));
    if (!response.ok) {
      signOut(`Sign-in failed: ${me.error || response.statusText}`);
      return;
    }
  } catch (e) {
    showSignin(`Sign-in failed: ${e.message}`);
    return;
  }
  sessionStorage.setItem(STORAGE, key);
  scope = me.scope;
  $("whoami").textContent = `${me.name} (${me.scope})`;
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("controls").hidden = scope !== "control";
  await refresh();
  timer = setInterval(refresh, 5000);
  follow();
}

async function refresh() {
  if (!key) return;
  try {
    const since = chart.last === null ? "" : `?since=${chart.last}`;
    const [summary, devices, pools, history] = await Promise.all([
      api("/v1/summary"), api("/v1/devices"), api("/v1/pools"), api(`/v1/history${since}`),
    ]);
    addHistory(history);
    showSummary(summary);
    showDevices(devices);
    showPools(pools);
    drawChart();
  } catch (e) {
    if (e.message !== "unauthorized") log("error", e.message);
  }
}

function addHistory(history) {
  chart.devices = history.devices;
  chart.points = chart.points.concat(history.points).slice(-history.capacity);
  if (chart.points.length) chart.last = chart.points[chart.points.length - 1].t;
}

function showSummary(s) {
  $("rig-total").textContent = rate(s.hashrate_5s);
  $("shares").textContent = `${s.accepted} accepted, ${s.rejected} rejected, ${s.stale} stale`;
  $("blocks").textContent = `${s.blocks} found, ${s.blocks_accepted} accepted`;
  const e = s.estimates || {};
  $("difficulty").textContent = `share ${number(e.share_difficulty, 4)}, network ${number(e.network_difficulty, 0)}`;
  $("to-share").textContent = duration(e.seconds_to_share);
  $("to-block").textContent = duration(e.seconds_to_block);
  $("cost").textContent = e.kwh_per_day === null || e.kwh_per_day === undefined
    ? "–" : `${number(e.kwh_per_day, 1)} kWh, ${number(e.cost_per_day, 2)}`;
}

function action(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

async function control(path, what) {
  const reason = $("reason").value.trim();
  try {
    await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reason ? { reason } : {}),
    });
    log("control", `${what}${reason ? ` (${reason})` : ""}`);
  } catch (e) {
    log("error", `${what}: ${e.message}`);
  }
  await refresh();
}

function showDevices(devices) {
  const body = $("devices").tBodies[0];
  body.replaceChildren();
  for (const d of devices) {
    const row = body.insertRow();
    row.dataset.device = d.index;
    cell(row, d.index);
    cell(row, d.pci_bus_id ? `${d.name} (${d.pci_bus_id})` : d.name, "name");
    cell(row, d.health_reason ? `${d.state}: ${d.health_reason}` : d.state, `state-${d.state}`);
    cell(row, rate(d.hashrate_5s), "hashrate");
    const s = d.sensors || {};
    cell(row, s.temperature_c === null || s.temperature_c === undefined ? "–" : `${number(s.temperature_c, 0)} °C`);
    cell(row, s.power_w === null || s.power_w === undefined ? "–" : `${number(s.power_w, 0)} W`);
    cell(row, s.fan_percent === null || s.fan_percent === undefined ? "–" : `${number(s.fan_percent, 0)} %`);
    cell(row, `${d.accepted} / ${d.rejected} / ${d.stale}`);
    cell(row, d.hw_errors);
    cell(row, d.throttle_ms > 0 ? `${number(d.throttle_ms, 0)} ms` : "–");
    const buttons = cell(row, "");
    if (scope === "control") {
      const enable = !d.enabled;
      const verb = enable ? "enable" : "disable";
      const button = action(enable ? "Enable" : "Disable",
        () => control(`/v1/devices/${d.index}/${verb}`, `device ${d.index}: ${verb}`));
      button.dataset.action = verb;
      buttons.appendChild(button);
    }
  }
}

function showPools(pools) {
  const body = $("pools").tBodies[0];
  body.replaceChildren();
  if (!pools.length) {
    const row = body.insertRow();
    cell(row, "none: a benchmark mines a built-in job", "muted").colSpan = 7;
  }
  pools.forEach((p, i) => {
    const row = body.insertRow();
    cell(row, i);
    cell(row, p.name);
    const status = p.active ? (p.connected ? "active" : "connecting") : (p.connected ? "connected" : "standby");
    cell(row, status, p.connected ? "pool-alive" : (p.active ? "pool-dead" : ""));
    cell(row, p.latency_ms === null || p.latency_ms === undefined ? "–" : `${number(p.latency_ms, 0)} ms`);
    cell(row, `${p.accepted} / ${p.rejected} / ${p.stale}`);
    cell(row, p.last_reject || p.last_error || "–");
    const buttons = cell(row, "");
    if (scope === "control" && !p.active) {
      const button = action("Switch", () => control(`/v1/pools/${i}/switch`, `switch to pool ${i}`));
      button.dataset.action = "switch";
      buttons.appendChild(button);
    }
  });
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
  if (text !== undefined) element.textContent = text;
  return element;
}

function drawChart() {
  const box = $("chart");
  // Drawn at the element's own width: a stretched viewBox would squash
  // the labels on a phone.
  const [width, height, left, bottom] = [Math.max(300, box.clientWidth || 800), 240, 70, 20];
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.replaceChildren();
  const points = chart.points;
  const newest = points.length ? points[points.length - 1].t : Math.floor(Date.now() / 1000);
  // The last hour, or what there is of it (a minute at least).
  const span = Math.min(3600, Math.max(60, points.length ? newest - points[0].t : 0));
  const oldest = newest - span;
  const top = Math.max(1, ...points.map((p) => p.total)) * 1.1;
  const x = (t) => left + (width - left) * (t - oldest) / span;
  const y = (v) => (height - bottom) * (1 - v / top);
  for (const fraction of [0, 0.5, 1]) {
    const v = top * fraction;
    box.appendChild(svg("line", { class: "grid", x1: left, x2: width, y1: y(v), y2: y(v) }));
    box.appendChild(svg("text", { x: 2, y: Math.max(12, y(v) + 4) }, rate(v)));
  }
  box.appendChild(svg("text", { x: left, y: height - 4 },
    span >= 120 ? `−${Math.round(span / 60)} min` : `−${span} s`));
  box.appendChild(svg("text", { x: width - 30, y: height - 4 }, "now"));
  const legend = $("legend");
  legend.replaceChildren();
  // With one device the total is that device's line.
  const total = chart.devices.length === 1 ? [] : [{ name: "total", color: COLORS[0], value: (p) => p.total }];
  const series = total.concat(
    chart.devices.map((d, i) => ({
      name: `#${d.index} ${d.name}`,
      color: COLORS[(i + 1) % COLORS.length],
      value: (p) => p.devices[i] || 0,
    })));
  series.forEach((s) => {
    const line = svg("polyline", {
      points: points.map((p) => `${x(p.t).toFixed(1)},${y(s.value(p)).toFixed(1)}`).join(" "),
      stroke: s.color,
      "stroke-width": s.name === "total" ? 3 : 1.5,
    });
    line.dataset.series = s.name;
    box.appendChild(line);
    // The newest value as a dot: one point draws no line.
    const last = points[points.length - 1];
    if (last) {
      box.appendChild(svg("circle", {
        cx: x(last.t).toFixed(1), cy: y(s.value(last)).toFixed(1), r: s.name === "total" ? 4 : 3, fill: s.color,
      }));
    }
    const item = document.createElement("span");
    item.style.setProperty("--swatch", s.color);
    item.textContent = s.name;
    legend.appendChild(item);
  });
}

function log(kind, text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${kind}: ${text}`;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

let lastStatusLogged = 0;

function onEvent(kind, data) {
  let d = {};
  try { d = JSON.parse(data); } catch (e) { return; }
  if (kind === "status") {
    $("rig-total").textContent = rate(d.hashrate_5s);
    if (Date.now() - lastStatusLogged > 60000) {
      lastStatusLogged = Date.now();
      log("status", `${rate(d.hashrate_5s)}, ${d.devices_mining} of ${d.devices} devices mining, pool ${d.pool || "none"}`);
    }
  } else if (kind === "control") {
    const what = d.device !== undefined ? `device ${d.device}` : `pool ${d.pool}`;
    log("control", `${d.key}: ${d.action} ${what}`);
  } else if (kind === "pool") {
    log("pool", d.pool ? `${d.pool} ${d.connected ? "connected" : "not connected"}` : "no pool");
  } else if (kind === "device") {
    log("device", `device ${d.device}: ${d.from} → ${d.state}`);
  } else if (kind === "end") {
    log("end", data);
  }
}

// /v1/events through fetch: EventSource cannot send the key.
async function follow() {
  while (key) {
    try {
      streamAbort = new AbortController();
      const response = await fetch("/v1/events", {
        headers: { Authorization: `Bearer ${key}` },
        signal: streamAbort.signal,
      });
      if (!response.ok) throw new Error(response.statusText);
      $("stream-state").textContent = "live";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          onEvent(kind, data.join("\n"));
        }
      }
    } catch (e) {
      // Reconnected below.
    }
    if (!key) break;
    $("stream-state").textContent = "reconnecting…";
    await new Promise((r) => setTimeout(r, 5000));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key = $("signin-key").value.trim();
    $("signin-key").value = "";
    signIn();
  });
  $("signout").addEventListener("click", () => signOut(""));
  window.addEventListener("resize", drawChart);
  const fragment = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fragment) {
    key = fragment;
    // Out of the address bar (and of the tab's history) once read.
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    key = sessionStorage.getItem(STORAGE);
  }
  if (key) signIn(); else showSignin("");
});
