// The chat page. It shows what the device tier (wasm-device, in a worker) reports; every
// number here (confidence, threshold, rates, the decision) comes from the module, which gets it
// from the shared `offload` crate. The page computes none of them.
import { DeviceClient } from "./device.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "ladder-settings-v1";

const state = {
  /** @type {{role: string, content: string}[]} */
  history: [],
  busy: false,
  ready: false,
  edgeUrl: "",
};

// `?kernels=simd128`: the module without relaxed SIMD, as browsers without it get;
// `?threads=N`: at most N kernel threads (1: one, as on a page that is not cross-origin isolated).
const query = new URLSearchParams(location.search);
const device = new DeviceClient({
  kernels: query.get("kernels") === "simd128" ? "simd128" : undefined,
  threads: Number(query.get("threads")) || undefined,
});
/** Shows where the model runs (set once the adapter probe is done, in `main`). */
let gpuNote = (_info) => {};

function fmtBytes(n) {
  if (n == null) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
const fmtNum = (x, d = 3) => (x == null ? "–" : Number(x).toFixed(d));
const fmtMs = (ms) => (ms == null ? "–" : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
const fmtRate = (r) => (r == null ? "–" : `${Math.round(r * 100)}%`);

function badge(el, text, kind) {
  el.textContent = text;
  el.className = `badge ${kind ?? ""}`;
  el.dataset.state = kind ?? "";
}

function showError(message) {
  const el = $("error");
  el.hidden = !message;
  el.textContent = message ?? "";
}

async function config() {
  let cfg = { model_url: "models/SmolLM2-135M-Instruct.Q4_1.gguf", edge_url: "" };
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) cfg = { ...cfg, ...(await r.json()) };
  } catch {
    // No config.json: the defaults above.
  }
  const q = new URLSearchParams(location.search);
  if (q.has("model")) cfg.model_url = q.get("model");
  if (q.has("edge")) cfg.edge_url = q.get("edge");
  return cfg;
}

// ---- settings -------------------------------------------------------------------------------

function policyFromForm() {
  const name = $("policy-name").value;
  const num = (id) => Number($(id).value);
  switch (name) {
    case "recserve":
      return { name, beta: { device: num("beta-device"), edge: num("beta-edge") }, k: num("window-k") };
    case "casserve":
      return { name, thresholds: { device: num("thr-device"), edge: num("thr-edge") } };
    case "colserve":
      return { name, probability: { device: num("prob-device"), edge: num("prob-edge") } };
    default:
      return { name };
  }
}

function showPolicyFields() {
  const name = $("policy-name").value;
  for (const fs of document.querySelectorAll("fieldset[data-for]")) fs.hidden = fs.dataset.for !== name;
}

function fillForm(s) {
  const p = s.policy;
  $("policy-name").value = p.name;
  const pair = (v) => (typeof v === "number" ? { device: v, edge: v } : v);
  if (p.name === "recserve") {
    const b = pair(p.beta ?? 0.3);
    $("beta-device").value = b.device;
    $("beta-edge").value = b.edge;
    $("window-k").value = p.k ?? 10000;
  } else if (p.name === "casserve") {
    const t = pair(p.thresholds);
    $("thr-device").value = t.device;
    $("thr-edge").value = t.edge;
  } else if (p.name === "colserve") {
    const t = pair(p.probability);
    $("prob-device").value = t.device;
    $("prob-edge").value = t.edge;
  }
  if ($("beta-device").value === "") {
    $("beta-device").value = 0.3;
    $("beta-edge").value = 0.3;
    $("window-k").value = 10000;
  }
  $("max-tokens").value = s.max_tokens;
  $("edge-url").value = s.edge_url;
  state.edgeUrl = s.edge_url;
  showPolicyFields();
}

async function applySettings(update, { save = true } = {}) {
  const s = await device.settings(update);
  if (save) localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
  fillForm(s);
  await refreshStats();
  return s;
}

// ---- the offload panel ----------------------------------------------------------------------

async function refreshStats() {
  const snap = await device.stats();
  const rows = ["device", "edge", "cloud"].map((tier) => {
    const t = snap.stats[tier];
    const threshold = tier === "device" ? snap.device_threshold ?? t.last_threshold : t.last_threshold;
    return `<tr data-tier="${tier}"><td class="tier-${tier}">${tier}</td><td>${t.seen}</td><td>${t.offloaded}</td>` +
      `<td class="rate">${fmtRate(snap.offload_rate[tier])}</td><td>${fmtNum(t.last_confidence)}</td>` +
      `<td class="threshold">${fmtNum(threshold)}</td></tr>`;
  });
  $("rates").innerHTML = rows.join("");
  const b = snap.stats.bytes;
  $("link-bytes").textContent =
    `device→edge link: ${fmtBytes(b.sent)} sent, ${fmtBytes(b.received)} received; ` +
    `device window: ${snap.device_window_len} confidences; fallbacks: ${snap.stats.fallbacks}`;
}

// ---- messages -------------------------------------------------------------------------------

function addMessage(role) {
  const li = $("message-template").content.firstElementChild.cloneNode(true);
  li.classList.add(role);
  li.querySelector(".who").textContent = role === "user" ? "you" : "answer";
  $("log").append(li);
  return li;
}

function scrollDown() {
  const log = $("log");
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
}

function reasonText(hop) {
  const r = hop.decision?.reason;
  if (!r) return hop.outcome;
  switch (r.kind) {
    case "threshold":
      return `${fmtNum(r.confidence)} ${r.confidence >= r.threshold ? "≥" : "<"} ${fmtNum(r.threshold)}`;
    case "no_threshold_yet":
      return `no threshold yet (window ${r.window_len})`;
    case "top_tier":
      return "top tier";
    case "coin_flip":
      return `coin ${fmtNum(r.draw, 2)} vs p ${fmtNum(r.probability, 2)}`;
    case "single_tier":
      return `single tier: ${r.serving}`;
    case "no_tier_above":
      return `no tier above is up (${reasonText({ decision: { reason: r.because } })})`;
    case "skipped_down":
      return `${r.wanted} is down (${reasonText({ decision: { reason: r.because } })})`;
    default:
      return r.kind;
  }
}

function hopTable(hops) {
  const head = "<tr><th>tier</th><th>model</th><th>outcome</th><th>confidence vs threshold</th><th>time</th><th>bytes up/down</th></tr>";
  const rows = hops.map((h) => {
    const t = h.timings ?? {};
    const bytes = h.bytes ? `${fmtBytes(h.bytes.sent)} / ${fmtBytes(h.bytes.received)}` : "–";
    const err = h.error ? `<br><span class="note">${escapeHtml(h.error)}</span>` : "";
    return `<tr data-tier="${h.tier}" data-outcome="${h.outcome}"><td class="tier-${h.tier}">${h.tier}</td>` +
      `<td>${escapeHtml(h.model)}</td><td>${h.outcome}${err}</td><td>${escapeHtml(reasonText(h))}</td>` +
      `<td>${fmtMs(t.total_ms)}</td><td>${bytes}</td></tr>`;
  });
  return `<table>${head}${rows.join("")}</table>`;
}

function escapeHtml(s) {
  return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function renderResult(li, result) {
  const deviceHop = result.offload.hops.find((h) => h.tier === "device");
  const meta = li.querySelector(".meta");
  const parts = [
    `<span>answered by <span class="tier tier-${result.answered_by}">${result.answered_by}</span></span>`,
  ];
  if (deviceHop?.confidence != null || deviceHop?.decision) {
    parts.push(`<span>device: ${escapeHtml(reasonText(deviceHop))}${result.answered_by !== "device" ? " → sent up" : ""}</span>`);
  }
  const answerHop = result.offload.hops.findLast((h) => h.tier === result.answered_by);
  if (answerHop && answerHop.tier !== "device" && (answerHop.confidence != null || answerHop.decision)) {
    parts.push(`<span>${answerHop.tier}: ${escapeHtml(reasonText(answerHop))}</span>`);
  }
  parts.push(`<span>${fmtMs(result.latency_ms)}</span>`);
  parts.push(`<span>↑${fmtBytes(result.bytes.sent)} ↓${fmtBytes(result.bytes.received)}</span>`);
  if (result.note) parts.push(`<span class="note">${escapeHtml(result.note)}</span>`);
  meta.innerHTML = parts.join("");
  const details = li.querySelector(".hops");
  details.hidden = false;
  details.querySelector(".hop-table").innerHTML = hopTable(result.offload.hops);
  li.dataset.answeredBy = result.answered_by;
  if (deviceHop?.confidence != null) li.dataset.confidence = String(deviceHop.confidence);
  li.dataset.finish = result.finish_reason;
  if (result.note) li.dataset.note = result.note;
}

async function send(text) {
  if (state.busy || !state.ready || !text.trim()) return;
  state.busy = true;
  setComposer();
  showError(null);
  const user = addMessage("user");
  user.querySelector(".text").textContent = text;
  state.history.push({ role: "user", content: text });
  const li = addMessage("assistant");
  li.classList.add("streaming");
  li.dataset.state = "streaming";
  const textEl = li.querySelector(".text");
  const meta = li.querySelector(".meta");
  meta.textContent = "thinking on this device…";
  scrollDown();
  let upstreamStarted = false;
  try {
    for await (const ev of device.ask({ messages: state.history })) {
      switch (ev.type) {
        case "started":
          meta.textContent = `device: ${ev.prompt_tokens} prompt tokens (${ev.cached_tokens} cached)`;
          break;
        case "token":
          if (ev.source === "upstream" && !upstreamStarted) {
            upstreamStarted = true;
            textEl.classList.remove("draft");
            textEl.textContent = "";
          }
          textEl.textContent += ev.text;
          scrollDown();
          break;
        case "decision":
          if (ev.hop.decision?.action === "offload") {
            meta.textContent = `device not confident (${reasonText(ev.hop)}): asking the tier above…`;
            textEl.classList.add("draft");
          } else {
            meta.textContent = `device: ${reasonText(ev.hop)}`;
          }
          break;
        case "upstream":
          badge($("edge-badge"), `edge: asking ${ev.url.replace(/\/v1\/.*$/, "")}`, "warn");
          break;
        case "fallback":
          meta.textContent = `${ev.error}: keeping the device's answer`;
          break;
        case "backend":
          // The GPU was lost mid-answer; the CPU took the conversation over.
          gpuNote({ backend: ev.backend, adapter: null, backend_note: ev.note });
          break;
        case "done": {
          const r = ev.result;
          textEl.classList.remove("draft");
          textEl.textContent = r.text;
          renderResult(li, r);
          state.history.push({ role: "assistant", content: r.text });
          if (r.offload.hops.some((h) => h.tier === "device" && h.outcome === "fallback" && h.error?.includes("unreachable"))) {
            badge($("edge-badge"), "edge: unreachable", "bad");
          } else if (r.answered_by !== "device") {
            badge($("edge-badge"), "edge: ok", "ok");
          } else if ($("edge-badge").dataset.state === "warn") {
            badge($("edge-badge"), state.edgeUrl ? "edge: ready" : "edge: none", state.edgeUrl ? "ok" : "");
          }
          break;
        }
      }
    }
  } catch (err) {
    showError(String(err.message ?? err));
    li.dataset.error = String(err.message ?? err);
    meta.textContent = `failed: ${err.message ?? err}`;
    state.history.pop();
  } finally {
    li.classList.remove("streaming");
    li.dataset.state = "done";
    state.busy = false;
    setComposer();
    await refreshStats().catch(() => {});
    $("input").focus();
  }
}

function setComposer() {
  $("input").disabled = !state.ready;
  $("send").disabled = !state.ready || state.busy;
  $("stop").disabled = !state.busy;
}

// ---- start ----------------------------------------------------------------------------------

async function probeEdge(url) {
  if (!url) {
    badge($("edge-badge"), "edge: none (device only)", "");
    return;
  }
  try {
    const r = await fetch(`${url.replace(/\/$/, "")}/v1/models`, { signal: AbortSignal.timeout(3000) });
    badge($("edge-badge"), r.ok ? "edge: ready" : `edge: HTTP ${r.status}`, r.ok ? "ok" : "bad");
  } catch {
    badge($("edge-badge"), "edge: unreachable (answers stay on this device)", "bad");
  }
}

function onNetwork() {
  const off = !navigator.onLine;
  const b = $("net-badge");
  b.hidden = !off;
  badge(b, "offline: answers stay on this device", off ? "bad" : "");
}

async function main() {
  const cfg = await config();
  // WebGPU runs the model where the adapter is a real GPU; a software adapter (SwiftShader)
  // is slower than the CPU path, so there the CPU stays the default (the setting overrides).
  const gpu = await device.gpu();
  gpuNote = (info) => {
    const note = $("gpu-note");
    if (info.backend === "webgpu") {
      badge($("backend-badge"), `WebGPU · ${info.adapter || "adapter"}`, "ok");
      note.textContent = `The model runs on WebGPU (${info.adapter || "adapter"}).`;
    } else {
      const threads = info.threads > 1 ? ` · ${info.threads} threads` : "";
      badge($("backend-badge"), `CPU · wasm ${info.kernels || "simd128"}${threads}`, "ok");
      note.textContent = info.backend_note
        ? `No WebGPU: ${info.backend_note}.`
        : gpu.available
          ? `WebGPU adapter found (${gpu.fallback ? "software fallback, slower than the CPU" : gpu.vendor || "hardware"}); ` +
            "the model runs on the CPU (WebAssembly SIMD) as the settings ask."
          : `No WebGPU (${gpu.reason}): the model runs on the CPU (WebAssembly SIMD).`;
    }
    note.hidden = false;
    note.dataset.gpu = gpu.available ? "adapter" : "none";
    note.dataset.backend = info.backend;
  };

  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "null");
  } catch {
    saved = null;
  }
  const update = { ...(saved ?? {}) };
  if (update.webgpu === undefined) update.webgpu = gpu.available && !gpu.fallback;
  if (cfg.edge_url && !(saved?.edge_url)) update.edge_url = cfg.edge_url;
  if (new URLSearchParams(location.search).has("edge")) update.edge_url = cfg.edge_url;
  try {
    await applySettings(update, { save: false });
  } catch (err) {
    // Saved settings from an older version: start from the defaults.
    localStorage.removeItem(SETTINGS_KEY);
    await applySettings({ edge_url: cfg.edge_url }, { save: false });
    showError(`saved settings were not accepted (${err.message}); using the defaults`);
  }
  probeEdge(state.edgeUrl);
  onNetwork();
  addEventListener("online", onNetwork);
  addEventListener("offline", onNetwork);

  const banner = $("download");
  banner.hidden = false;
  badge($("model-badge"), "model: downloading", "warn");
  try {
    const info = await device.load(cfg.model_url, (p) => {
      const frac = p.total ? p.loaded / p.total : 0;
      $("download-progress").value = frac;
      $("download-text").textContent =
        `${p.source === "cache" ? "Reading the model from this browser's cache" : "Downloading the model"}: ` +
        `${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ""}`;
    });
    banner.hidden = true;
    gpuNote(info);
    badge($("model-badge"), `model: ${info.name} (${info.source === "cache" ? "from cache" : "downloaded"}, ${fmtMs(info.load_ms)})`, "ok");
    $("model-badge").dataset.source = info.source;
    state.ready = true;
    setComposer();
    $("input").focus();
  } catch (err) {
    banner.hidden = true;
    badge($("model-badge"), "model: failed to load", "bad");
    showError(String(err.message ?? err));
  }
}

// ---- wiring ---------------------------------------------------------------------------------

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && state.busy) device.cancel();
});
$("stop").addEventListener("click", () => device.cancel());
$("new-chat").addEventListener("click", () => {
  if (state.busy) return;
  state.history = [];
  $("log").replaceChildren();
  $("input").focus();
});
$("policy-name").addEventListener("change", showPolicyFields);
$("settings").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const update = { policy: policyFromForm(), max_tokens: Number($("max-tokens").value), edge_url: $("edge-url").value.trim() };
    await applySettings(update);
    $("settings-msg").textContent = "applied";
    probeEdge(state.edgeUrl);
  } catch (err) {
    $("settings-msg").textContent = String(err.message ?? err);
  }
});
$("reset").addEventListener("click", async () => {
  await device.reset();
  await refreshStats();
  $("settings-msg").textContent = "windows and counts forgotten";
});
$("panel-toggle").addEventListener("click", () => {
  const open = $("panel").classList.toggle("open");
  $("panel-toggle").setAttribute("aria-expanded", String(open));
});

// For tests and the console: the page's device handle and state.
window.ladder = { device, state, send, applySettings };
main();
