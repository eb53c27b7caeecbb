// The chat page end to end in headless Chromium (Debian's, driven by playwright-core):
// the device model loads (and a reload reads it from the browser's cache), the WebGPU path
// gives the CPU path's picks, a question gets a streamed answer on the device, with β = 1 the
// answer comes from the edge and the hop records show it, with CloudServe it climbs through
// the edge to the cloud, with the edge stopped (or the browser offline) the page still
// answers locally and says why, Stop stops, and the module built without relaxed SIMD (for
// browsers that lack it) and the one-thread build give the same answer as the threaded one.
//
// Run by `cargo xtask test`, which serves the page, edge-host and cloud-host on loopback and
// sets:
//   LADDER_PAGE_URL       the page
//   LADDER_EDGE_URL       a running edge-host (the edge component, offloading to a cloud-host)
//   LADDER_DEAD_EDGE_URL  an address where nothing listens
//   LADDER_SCREENSHOT     where to save a picture of the page once it holds answers from the
//                         device and the edge (optional)
//   CHROMIUM              the browser
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests with \`cargo xtask test\``);
  return value;
};
const PAGE = env("LADDER_PAGE_URL");
const EDGE = env("LADDER_EDGE_URL");
const DEAD = env("LADDER_DEAD_EDGE_URL");

// The flags that work on these machines (no network beyond loopback, root, no GPU), plus
// WebGPU through SwiftShader.
const FLAGS = [
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--enable-unsafe-webgpu",
];

let browser;
let page;
/** The question whose device confidence was the lower of two (set by the β = 1 test). */
let lowQuestion;
/** The device's greedy answer to the first question (set by the streamed-answer test). */
let deviceAnswer;
const problems = [];

before(async () => {
  browser = await chromium.launch({ executablePath: env("CHROMIUM"), headless: true, args: FLAGS });
  const context = await browser.newContext();
  page = await context.newPage();
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    // Requests to the stopped edge fail on purpose; everything else must load.
    const expected = /Failed to load resource: net::ERR_(CONNECTION_REFUSED|INTERNET_DISCONNECTED)/;
    if (msg.type() === "error" && !expected.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on("requestfailed", (r) => {
    if (!r.url().startsWith(DEAD) && !r.url().startsWith(EDGE)) problems.push(`request failed: ${r.url()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
});

after(async () => {
  await browser?.close();
});

/** The last assistant message. */
const lastAnswer = () => page.locator("li.msg.assistant").last();

/** Starts a fresh conversation and sends `text`. */
async function ask(text) {
  await page.click("#new-chat");
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

/** Waits until the last answer is finished; returns its data attributes and texts. */
async function finished() {
  const li = lastAnswer();
  await page.waitForFunction(
    () => [...document.querySelectorAll("li.msg.assistant")].at(-1)?.dataset.state === "done",
    null,
    { timeout: 120_000 },
  );
  const data = await li.evaluate((el) => ({ ...el.dataset }));
  const text = await li.locator(".text").innerText();
  const meta = await li.locator(".meta").innerText();
  const hops = await li.locator(".hop-table tr[data-tier]").evaluateAll((rows) =>
    rows.map((r) => ({ tier: r.dataset.tier, outcome: r.dataset.outcome, text: r.textContent })),
  );
  return { ...data, text, meta, hops };
}

/** Sets the policy and the edge through the settings form, as a user would. */
async function setPolicy({ betaDevice, betaEdge, edgeUrl }) {
  await page.selectOption("#policy-name", "recserve");
  await page.fill("#beta-device", String(betaDevice));
  await page.fill("#beta-edge", String(betaEdge));
  if (edgeUrl !== undefined) await page.fill("#edge-url", edgeUrl);
  await page.click("#apply");
  await page.waitForFunction(() => document.querySelector("#settings-msg").textContent === "applied");
  await page.evaluate(() => (document.querySelector("#settings-msg").textContent = ""));
}

test("the page loads the device model and says where it runs", async () => {
  await page.goto(`${PAGE}?edge=${encodeURIComponent(EDGE)}`);
  await page.waitForSelector("#model-badge[data-state=ok]", { timeout: 180_000 });
  assert.equal(await page.getAttribute("#model-badge", "data-source"), "network");
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, "COOP/COEP headers");
  const note = page.locator("#gpu-note");
  await note.waitFor({ state: "visible" });
  assert.match(await note.innerText(), /CPU/);
  // Chromium has relaxed SIMD, and the page is cross-origin isolated, so the worker loads the
  // threaded build of the module where the machine has more than one core.
  const badge = await page.innerText("#backend-badge");
  assert.match(badge, /relaxed-simd/);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  if (cores > 1) assert.match(badge, new RegExp(`${Math.min(cores, 4)} threads`));
  await page.waitForSelector("#edge-badge[data-state=ok]");
  assert.equal(await page.isEnabled("#input"), true);
});

test("the WebGPU path gives the CPU path's greedy text (SwiftShader here)", async () => {
  // Both paths are fed the CPU's greedy tokens. On SwiftShader the logits were equal to the
  // last bit (measured); the stated tolerance is 1e-3 of the largest logit, and the picks
  // must be the same.
  const adapter = await page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));
  assert.equal(adapter, true, "headless Chromium with --enable-unsafe-webgpu offers an adapter");
  const c = await page.evaluate(() =>
    window.ladder.device.call("compare", ["What is the capital of France?", 6]),
  );
  console.log(`WebGPU on ${c.adapter}: max |Δlogit| ${c.max_abs_gap} (relative ${c.max_rel_gap}), ` +
    `${c.disagreements.length} of ${c.cpu_tokens.length} picks differ; CPU text ${JSON.stringify(c.cpu_text)}`);
  assert.ok(c.adapter.length > 0);
  assert.equal(c.cpu_tokens.length, 6);
  assert.ok(c.max_rel_gap < 1e-3, `relative gap ${c.max_rel_gap}`);
  assert.deepEqual(c.gpu_tokens, c.cpu_tokens, JSON.stringify(c.disagreements));
});

test("a question gets a streamed answer on the device", async () => {
  // β = 0: the threshold is the window's minimum, so the device keeps its answer.
  await setPolicy({ betaDevice: 0, betaEdge: 0 });
  await ask("What is the capital of France?");
  // Tokens arrive while the answer is still being generated.
  await page.waitForFunction(
    () => {
      const li = [...document.querySelectorAll("li.msg.assistant")].at(-1);
      return li?.dataset.state === "streaming" && li.querySelector(".text").textContent.length > 0;
    },
    null,
    { timeout: 60_000 },
  );
  const a = await finished();
  assert.equal(a.answeredBy, "device", a.meta);
  assert.match(a.text, /Paris/);
  assert.deepEqual(a.hops.map((h) => [h.tier, h.outcome]), [["device", "answered"]]);
  assert.match(a.meta, /answered by device/);
  deviceAnswer = a.text;
});

test("with β = 1 the answer comes from the edge and the hop records show it", async () => {
  // β = 1 offloads every answer whose confidence is below the highest in the window. Two
  // answers with β = 0 put two different confidences in the window; then the question whose
  // confidence was the lower one is asked again with β = 1.
  const questions = ["Name a primary colour.", "Write one word that rhymes with cat."];
  const confidences = [];
  for (const q of questions) {
    await ask(q);
    const a = await finished();
    assert.equal(a.answeredBy, "device");
    confidences.push(Number(a.confidence));
  }
  assert.notEqual(confidences[0], confidences[1], "two different confidences");
  lowQuestion = confidences[0] < confidences[1] ? questions[0] : questions[1];

  await setPolicy({ betaDevice: 1, betaEdge: 0 });
  await ask(lowQuestion);
  const a = await finished();
  assert.equal(a.answeredBy, "edge", a.meta);
  assert.deepEqual(
    a.hops.map((h) => [h.tier, h.outcome]),
    [["device", "offloaded"], ["edge", "answered"]],
  );
  // The edge's own model answered (Gemma 3 270M through wasi-nn), with its confidence.
  assert.ok(a.text.trim().length > 0, "the edge's answer has text");
  assert.match(a.hops[1].text, /gemma/i, "the edge's hop record names its model");
  assert.match(a.meta, /answered by edge/);
  assert.match(a.meta, /sent up/);
  assert.match(a.meta, /↑\d/, "bytes sent are shown");
  const rate = await page.locator("#rates tr[data-tier=device] .rate").innerText();
  assert.notEqual(rate, "0%");
  if (process.env.LADDER_SCREENSHOT) {
    await page.screenshot({ path: process.env.LADDER_SCREENSHOT, fullPage: true });
  }
});

test("with CloudServe the question climbs through the edge to the cloud", async () => {
  // The whole ladder in the browser: the device forwards without answering, the edge
  // (edge-host) forwards to the cloud (cloud-host), whose answer streams back down.
  await page.selectOption("#policy-name", "cloudserve");
  await page.click("#apply");
  await page.waitForFunction(() => document.querySelector("#settings-msg").textContent === "applied");
  await page.evaluate(() => (document.querySelector("#settings-msg").textContent = ""));
  await ask("What is the capital of Italy?");
  const a = await finished();
  assert.equal(a.answeredBy, "cloud", a.meta);
  assert.deepEqual(
    a.hops.map((h) => [h.tier, h.outcome]),
    [["device", "forwarded"], ["edge", "forwarded"], ["cloud", "answered"]],
  );
  assert.ok(a.text.trim().length > 0, "the cloud's answer has text");
  assert.match(a.meta, /answered by cloud/);
});

test("with the edge stopped the page still answers on the device and says why", async () => {
  await setPolicy({ betaDevice: 1, betaEdge: 0, edgeUrl: DEAD });
  // Again below the window's highest confidence, so the device wants to offload it.
  await ask(lowQuestion);
  const a = await finished();
  assert.equal(a.answeredBy, "device", a.meta);
  assert.equal(a.hops[0].outcome, "fallback");
  assert.match(a.note, /unreachable/);
  assert.match(a.meta, /unreachable/);
  assert.ok(a.text.length > 0);
  await page.waitForSelector("#edge-badge[data-state=bad]");
});

test("offline, the page answers on the device without trying the edge", async () => {
  await setPolicy({ betaDevice: 1, betaEdge: 0, edgeUrl: EDGE });
  await page.context().setOffline(true);
  try {
    await page.waitForSelector("#net-badge:not([hidden])");
    await ask(lowQuestion);
    const a = await finished();
    assert.equal(a.answeredBy, "device", a.meta);
    assert.deepEqual(a.hops.map((h) => [h.tier, h.outcome]), [["device", "answered"]]);
    assert.match(a.note ?? "", /offline/, JSON.stringify(a));
    assert.match(a.hops[0].text, /no tier above is up/);
  } finally {
    await page.context().setOffline(false);
  }
});

test("Stop ends an answer early", async () => {
  await setPolicy({ betaDevice: 0, betaEdge: 0, edgeUrl: EDGE });
  await ask("Write a long story about a dragon who learns to bake bread.");
  await page.waitForFunction(
    () => {
      const li = [...document.querySelectorAll("li.msg.assistant")].at(-1);
      return li?.dataset.state === "streaming" && li.querySelector(".text").textContent.length > 0;
    },
    null,
    { timeout: 60_000 },
  );
  await page.click("#stop");
  const a = await finished();
  assert.equal(a.finish, "cancelled");
  assert.equal(a.answeredBy, "device");
});

test("a reload reads the model from the browser's cache", async () => {
  await page.reload();
  await page.waitForSelector("#model-badge[data-state=ok]", { timeout: 180_000 });
  assert.equal(await page.getAttribute("#model-badge", "data-source"), "cache");
  // The windows survived the reload (IndexedDB): the panel still counts the earlier answers.
  const seen = Number(await page.locator("#rates tr[data-tier=device] td:nth-child(2)").innerText());
  assert.ok(seen >= 5, `device requests seen after the reload: ${seen}`);
});

/** Opens the page with `query` (another build of the module), checks its badge with `badge`,
 * and checks that it answers the first question as the default build did. */
async function sameAnswerWith(query, badge) {
  assert.ok(deviceAnswer, "the streamed-answer test ran first");
  await page.goto(`${PAGE}?edge=${encodeURIComponent(EDGE)}&${query}`);
  await page.waitForSelector("#model-badge[data-state=ok]", { timeout: 180_000 });
  badge(await page.innerText("#backend-badge"));
  await setPolicy({ betaDevice: 0, betaEdge: 0 });
  await ask("What is the capital of France?");
  const a = await finished();
  assert.equal(a.answeredBy, "device", a.meta);
  assert.equal(a.text, deviceAnswer);
}

test("the simd128 build (for browsers without relaxed SIMD) gives the same answer", async () => {
  await sameAnswerWith("kernels=simd128", (badge) => {
    assert.match(badge, /simd128/);
    assert.doesNotMatch(badge, /relaxed/);
  });
});

test("one thread (the build for pages that are not cross-origin isolated) gives the same answer", async () => {
  await sameAnswerWith("threads=1", (badge) => {
    assert.match(badge, /relaxed-simd/);
    assert.doesNotMatch(badge, /threads/);
  });
});

test("nothing went wrong in the page", () => {
  assert.deepEqual(problems, []);
});
