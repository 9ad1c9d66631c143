// vichain dashboard: polls the node's JSON API and redraws. No dependencies; all
// text from the chain goes through textContent, never innerHTML.
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const state = { blocks: [], status: null, failures: 0 };

// The API serves wire views: reputation in millionths, statuses by proto name.
const REPUTATION_ONE = 1e6;
const jobStatus = (s) => String(s || "").replace(/^JOB_STATUS_/, "").toLowerCase();

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(body.error || `${path}: HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function short(s, n = 10) {
  if (!s) return "";
  return s.length > 2 * n + 1 ? `${s.slice(0, n)}…${s.slice(-n)}` : s;
}

function setText(id, text) {
  const e = $(id);
  if (e.textContent !== String(text)) e.textContent = String(text);
}

function showError(msg) {
  const e = $("error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

// ---- status and blocks ----

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function intervals(blocks) {
  // blocks are oldest first
  const out = [];
  for (let i = 1; i < blocks.length; i++) {
    if (blocks[i].height === blocks[i - 1].height + 1) {
      out.push({ height: blocks[i].height, s: (blocks[i].time_ns - blocks[i - 1].time_ns) / 1e9 });
    }
  }
  return out;
}

function renderStatus(s) {
  setText("chain-id", s.chain_id);
  setText("height", s.height);
  setText("app-hash", short(s.app_hash, 12));
  $("app-hash").title = s.app_hash;
  setText("block-time", s.block_time);
  setText("mode", s.mode);
  setText("version", s.version);
  setText("mempool", s.mempool_txs === null ? "n/a" : s.mempool_txs);
  setText("worker-count", s.workers);
  setText("model-count", s.models);
  $("height").setAttribute("data-height", s.height);
  const age = Math.max(0, Date.now() / 1000 - s.block_time_ns / 1e9);
  setText("block-age", `${age.toFixed(1)} s ago`);
  const typical = median(intervals(state.blocks).map((i) => i.s)) || 1;
  const badge = $("chain-state");
  let st = "producing";
  if (age > Math.max(10, 5 * typical)) st = "stalled";
  else if (age > Math.max(3, 2.5 * typical)) st = "slow";
  badge.setAttribute("data-state", st);
  badge.textContent = st;
}

// ---- charts (plain canvas) ----

function chart(canvasId, points, series) {
  const c = $(canvasId);
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || c.width, h = c.clientHeight || c.height;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 38, r: 8, t: 8, b: 18 };
  const iw = w - pad.l - pad.r, ih = h - pad.t - pad.b;
  g.font = "10px system-ui, sans-serif";
  g.fillStyle = "#6b7385";
  c.setAttribute("data-points", points.length);
  if (!points.length) { g.fillText("waiting for blocks…", pad.l + 4, pad.t + 14); return; }
  let max = 0, any = false;
  for (const s of series) for (const p of points) { const v = s.value(p); if (v !== null && v !== undefined) any = true; max = Math.max(max, v || 0); }
  if (!any) { g.fillText("no data yet", pad.l + 4, pad.t + 14); }
  max = max > 0 ? max * 1.15 : 1;
  // axes and labels
  g.strokeStyle = "#dfe2e8";
  g.beginPath(); g.moveTo(pad.l, pad.t); g.lineTo(pad.l, pad.t + ih); g.lineTo(pad.l + iw, pad.t + ih); g.stroke();
  g.fillText(max < 10 ? max.toFixed(2) : Math.round(max), 2, pad.t + 8);
  g.fillText("0", 2, pad.t + ih);
  g.fillText(points[0].height, pad.l, h - 4);
  const last = String(points[points.length - 1].height);
  g.fillText(last, pad.l + iw - g.measureText(last).width, h - 4);
  const x = (i) => pad.l + (points.length === 1 ? iw / 2 : (i * iw) / (points.length - 1));
  const y = (v) => pad.t + ih - (v / max) * ih;
  for (const s of series) {
    g.strokeStyle = g.fillStyle = s.color;
    if (s.kind === "bar") {
      const bw = Math.max(1, iw / points.length - 1);
      points.forEach((p, i) => {
        const v = s.value(p) || 0;
        if (v > 0) g.fillRect(x(i) - bw / 2, y(v), bw, pad.t + ih - y(v));
      });
    } else {
      g.lineWidth = 1.5;
      g.beginPath();
      let started = false;
      points.forEach((p, i) => {
        const v = s.value(p);
        if (v === null || v === undefined) return;
        if (!started) { g.moveTo(x(i), y(v)); started = true; } else g.lineTo(x(i), y(v));
      });
      g.stroke();
    }
  }
}

function renderCharts() {
  const blocks = state.blocks; // oldest first
  const gaps = new Map(intervals(blocks).map((i) => [i.height, i.s]));
  chart("blocks-chart", blocks, [
    { kind: "bar", color: "#9db7ea", value: (b) => b.txs },
    { kind: "line", color: "#c77700", value: (b) => gaps.get(b.height) ?? null },
  ]);
  chart("jobs-chart", blocks, [
    { kind: "bar", color: "#9db7ea", value: (b) => b.jobs_submitted },
    { kind: "line", color: "#1e8e3e", value: (b) => b.jobs_finalized },
  ]);
  chart("latency-chart", blocks, [
    { kind: "line", color: "#3367d6", value: (b) => (b.jobs_finalized ? b.job_latency_seconds_sum / b.jobs_finalized : null) },
  ]);
}

// ---- tables ----

function attestationCell(a) {
  if (!a) return el("span", { class: "muted" }, "none");
  const kind = a.simulated && a.kind !== "simulated" ? `${a.kind} (simulated)` : a.kind;
  const tags = [el("span", { class: a.simulated ? "tag sim" : "tag", title: `TCB ${a.tcb_status}` }, kind)];
  tags.push(el("span", { class: a.current ? "tag ok" : "tag bad" }, a.current ? "current" : "expired"));
  return el("span", {}, ...tags);
}

function fillTable(tableId, emptyId, rows) {
  const tbody = $(tableId).querySelector("tbody");
  tbody.replaceChildren(...rows);
  $(emptyId).hidden = rows.length > 0;
}

function renderWorkers(workers) {
  fillTable("workers", "workers-empty", workers.map((w) => el("tr", { "data-operator": w.operator, "data-peer-id": w.peer_id },
    el("td", { class: "mono", title: w.peer_id }, short(w.peer_id, 8)),
    el("td", { class: "mono", title: w.operator }, short(w.operator, 8)),
    el("td", { class: "wrap" }, w.serves.map((s) => `${s.model_id}:${s.shard_index}`).join(", ")),
    el("td", {}, w.stake),
    el("td", {}, (w.reputation / REPUTATION_ONE).toFixed(3)),
    el("td", { class: "attestation" }, attestationCell(w.attestation)),
    el("td", {}, w.attestation ? w.attestation.expiry_height : "-"),
    el("td", {}, w.registered_height),
    el("td", { class: "last-seen" }, w.last_seen_height),
  )));
}

function renderJobs(jobs) {
  fillTable("jobs", "jobs-empty", jobs.map((j) => {
    const v = j.verification;
    return el("tr", { "data-job-id": j.id, "data-status": jobStatus(j.status) },
      el("td", {}, el("a", { href: `#/jobs/${j.id}` }, j.id)),
      el("td", {}, j.model_id),
      el("td", { class: "status" }, jobStatus(j.status)),
      el("td", {}, j.submitted_height),
      el("td", {}, j.k),
      el("td", { class: "proof" }, v.proof_verified ? el("span", { class: "tag ok" }, "verified") : el("span", { class: "muted" }, "none")),
      el("td", { class: "agreed", title: (j.agreed || []).join("\n") }, j.agreed && j.agreed.length ? `${j.agreed.length}/${j.k} ${j.outcome}` : (j.outcome || "-")),
      el("td", {}, v.prover_attestation ? attestationCell(v.prover_attestation) : el("span", { class: "muted" }, "-")),
    );
  }));
}

function renderValidators(v) {
  const section = $("validators-section");
  section.hidden = v.mode !== "cometbft";
  if (section.hidden) return;
  const st = v.status;
  setText("comet-sync", st
    ? `CometBFT ${st.version} · node ${short(st.node_id, 6)} · ${st.catching_up ? "catching up" : "in sync"} at ${st.latest_block_height}`
    : `CometBFT unreachable${v.error ? ": " + v.error : ""}`);
  fillTableRows("validators", v.validators.map((x) => el("tr", { "data-address": x.address, "data-missed": x.missed_blocks },
    el("td", { class: "mono", title: x.pub_key }, x.address + (st && st.validator_address === x.address ? " (this node)" : "")),
    el("td", {}, x.voting_power),
    el("td", {}, x.proposer_priority),
    el("td", {}, x.last_signed_height === null ? "-" : x.last_signed_height),
    el("td", { class: x.missed_blocks > 0 ? "bad" : "" }, `${x.missed_blocks} / ${x.window}`),
  )));
  setText("peers", `${v.peers.length} peer(s): ` + v.peers.map((p) => `${p.moniker} (${short(p.node_id, 6)}, ${p.outbound ? "out" : "in"})`).join(", "));
}

function fillTableRows(tableId, rows) {
  $(tableId).querySelector("tbody").replaceChildren(...rows);
}

// ---- job detail view ----

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, v === null || v === "" ? "-" : Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

async function renderDetail(id) {
  setText("job-id", id);
  const dl = $("job-fields");
  try {
    const job = await getJson(`/api/jobs/${encodeURIComponent(id)}`);
    dl.setAttribute("data-status", jobStatus(job.status));
    dl.replaceChildren(...flatten(job).flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
  } catch (e) {
    dl.removeAttribute("data-status");
    dl.replaceChildren(el("dt", {}, "error"), el("dd", { "data-field": "error" }, e.message));
  }
}

function route() {
  const m = location.hash.match(/^#\/jobs\/([0-9]{1,20})$/);
  $("overview").hidden = !!m;
  $("job-detail").hidden = !m;
  return m ? m[1] : null;
}

// ---- polling ----

async function tick() {
  try {
    const [status, blocks] = await Promise.all([getJson("/api/status"), getJson("/api/blocks?limit=120")]);
    state.blocks = blocks.blocks.slice().reverse();
    state.status = status;
    renderStatus(status);
    const detail = route();
    if (detail) {
      await renderDetail(detail);
    } else {
      renderCharts();
      const [workers, jobs, validators] = await Promise.all([getJson("/api/workers"), getJson("/api/jobs?limit=50"), getJson("/api/validators")]);
      renderWorkers(workers.workers);
      renderJobs(jobs.jobs);
      renderValidators(validators);
    }
    state.failures = 0;
    showError(null);
  } catch (e) {
    state.failures++;
    showError(`cannot reach the node: ${e.message}`);
    const badge = $("chain-state");
    badge.setAttribute("data-state", "unreachable");
    badge.textContent = "unreachable";
  }
  document.body.setAttribute("data-updated", Date.now());
  setTimeout(tick, POLL_MS);
}

window.addEventListener("hashchange", () => { const id = route(); if (id) renderDetail(id); });
route();
tick();
