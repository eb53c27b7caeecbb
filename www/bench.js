// `cargo xtask bench device` opens this page: it loads the same GGUF into wasm-device (in its
// worker) and into wllama, then alternates their runs: prefill `prompt` tokens, decode
// `decode` tokens without stopping at an end token, one thread each (and wasm-device's threaded
// build, against its one-thread build). The numbers are what each
// engine reports of its own run; #result gets them as JSON when done. Where the browser offers
// a WebGPU adapter, wasm-device's WebGPU path also runs once, shorter (on a software adapter
// such as SwiftShader that is a check that it runs, not a speed claim).
import { DeviceClient } from "./device.js";

const q = new URLSearchParams(location.search);
const MODEL = new URL(q.get("model") ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf", location.href).href;
const PROMPT = Number(q.get("prompt") ?? 128);
const DECODE = Number(q.get("decode") ?? 64);
const REPS = Number(q.get("reps") ?? 3);
const WLLAMA = q.get("wllama") ?? "wllama/";
const GPU_PROMPT = Number(q.get("gpu_prompt") ?? 16);
const GPU_DECODE = Number(q.get("gpu_decode") ?? 8);

const log = (line) => {
  document.getElementById("log").textContent += `${line}\n`;
};

/** wasm-device's CPU path: the build the browser picks (threaded where it can be), with
 * `threads: 1` the one-thread build, with `kernels: "simd128"` the one browsers without relaxed
 * SIMD get. */
async function ours(options = {}) {
  const device = new DeviceClient(options);
  // The CPU path is what is compared with wllama; the WebGPU run makes its own session.
  await device.call("settings", [{ webgpu: false }]);
  const info = await device.load(MODEL, () => {});
  log(`wasm-device loaded ${info.name} (${info.kernels}, ${info.threads} thread(s)) in ${Math.round(info.load_ms)} ms`);
  return {
    kernels: info.kernels,
    threads: info.threads,
    run: () => device.bench(PROMPT, DECODE),
    webgpu: () => device.bench(GPU_PROMPT, GPU_DECODE, "webgpu"),
    close: () => device.worker.terminate(),
  };
}

async function wllama() {
  const { Wllama } = await import(`./${WLLAMA}esm/index.js`);
  const w = new Wllama({ default: new URL(`${WLLAMA}esm/wasm/wllama.wasm`, location.href).href }, { suppressNativeLog: true });
  const t0 = performance.now();
  await w.loadModelFromUrl(MODEL, { n_threads: 1, n_gpu_layers: 0, n_ctx: 1024, n_batch: 512, useCache: false });
  log(`wllama ${Wllama.getLibllamaVersion?.() ?? ""} loaded in ${Math.round(performance.now() - t0)} ms, ` +
    `threads=${w.getNumThreads()} multithread=${w.isMultithread()}`);
  // A text of about PROMPT tokens; wllama reports how many it really had.
  const text = "The quick brown fox jumps over the lazy dog. ".repeat(Math.ceil(PROMPT / 10));
  return {
    run: async () => {
      const r = await w.createCompletion({ prompt: text, max_tokens: DECODE, temperature: 0, ignore_eos: true, cache_prompt: false });
      const t = r.timings;
      if (!t) throw new Error("wllama returned no timings");
      return {
        prompt_tokens: t.prompt_n, decode_tokens: t.predicted_n, prefill_ms: t.prompt_ms, decode_ms: t.predicted_ms,
        prefill_tok_s: t.prompt_per_second, decode_tok_s: t.predicted_per_second,
      };
    },
    close: () => w.exit(),
  };
}

async function main() {
  const engines = {
    "wasm-device": await ours({ threads: 1 }),
    "wasm-device-simd128": await ours({ kernels: "simd128" }),
    wllama: await wllama(),
  };
  // The threaded build, where the page is cross-origin isolated and the machine has cores.
  const threaded = await ours();
  if (threaded.threads > 1) engines["wasm-device-threads"] = threaded;
  else await threaded.close();
  const runs = Object.fromEntries(Object.keys(engines).map((name) => [name, []]));
  const kernels = Object.fromEntries(Object.entries(engines).map(([name, e]) => [name, e.kernels]));
  const threads = Object.fromEntries(Object.entries(engines).map(([name, e]) => [name, e.threads ?? 1]));
  for (let i = 0; i < REPS; i++) {
    for (const [name, engine] of Object.entries(engines)) {
      const r = await engine.run();
      runs[name].push(r);
      log(`${name} run ${i + 1}: decode ${r.decode_tok_s.toFixed(1)} tok/s (${r.decode_tokens} tokens), ` +
        `prefill ${r.prefill_tok_s.toFixed(1)} tok/s (${r.prompt_tokens} tokens)`);
    }
  }
  const adapter = "gpu" in navigator ? await navigator.gpu.requestAdapter() : null;
  let webgpu = null;
  if (adapter) {
    try {
      webgpu = await engines["wasm-device"].webgpu();
      webgpu.fallback_adapter = Boolean(adapter.isFallbackAdapter ?? adapter.info?.isFallbackAdapter);
      log(`wasm-device on WebGPU: decode ${webgpu.decode_tok_s.toFixed(2)} tok/s (${webgpu.decode_tokens} tokens), ` +
        `prefill ${webgpu.prefill_tok_s.toFixed(2)} tok/s (${webgpu.prompt_tokens} tokens)` +
        `${webgpu.fallback_adapter ? " on a software adapter" : ""}`);
    } catch (err) {
      webgpu = { error: String(err?.message ?? err) };
    }
  }
  for (const engine of Object.values(engines)) await engine.close?.();
  return { runs, kernels, threads, webgpu, prompt: PROMPT, decode: DECODE, webgpu_adapter: Boolean(adapter), user_agent: navigator.userAgent };
}

main().then(
  (result) => {
    const el = document.getElementById("result");
    el.textContent = JSON.stringify(result);
    el.dataset.state = "done";
  },
  (err) => {
    const el = document.getElementById("result");
    el.textContent = JSON.stringify({ error: String(err?.message ?? err) });
    el.dataset.state = "error";
  },
);
