// The page's handle on the device tier: the API of wasm-device (load, ask, cancel, settings),
// running in a worker. Types come from the .d.ts wasm-bindgen generates in ./pkg.
/** @typedef {import("./pkg/wasm_device").AskRequest} AskRequest */
/** @typedef {import("./pkg/wasm_device").AskEvent} AskEvent */
/** @typedef {import("./pkg/wasm_device").AskResult} AskResult */
/** @typedef {import("./pkg/wasm_device").Settings} Settings */
/** @typedef {import("./pkg/wasm_device").Snapshot} Snapshot */
/** @typedef {import("./pkg/wasm_device").ModelInfo} ModelInfo */
/** @typedef {import("./pkg/wasm_device").Progress} Progress */

export class DeviceClient {
  /** @param {{kernels?: "simd128", threads?: number}} [options] `kernels: "simd128"`: the
   * module built without relaxed SIMD even where the browser has it (the build other browsers
   * get); `threads`: at most this many kernel threads (1: the single-threaded build). */
  constructor(options = {}) {
    const url = new URL("./device-worker.js", import.meta.url);
    if (options.kernels) url.searchParams.set("kernels", options.kernels);
    if (options.threads) url.searchParams.set("threads", String(options.threads));
    this.worker = new Worker(url, { type: "module" });
    this.next = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, onEvent?: Function}>} */
    this.calls = new Map();
    this.worker.onmessage = ({ data }) => {
      const call = this.calls.get(data.id);
      if (!call) return;
      if ("event" in data) {
        call.onEvent?.(data.event);
        return;
      }
      this.calls.delete(data.id);
      if ("error" in data) call.reject(new Error(data.error));
      else call.resolve(data.result);
    };
    this.worker.onerror = (e) => {
      const err = new Error(`the device worker failed: ${e.message ?? "unknown error"}`);
      for (const call of this.calls.values()) call.reject(err);
      this.calls.clear();
    };
  }

  call(method, args = [], onEvent = undefined) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, onEvent });
      this.worker.postMessage({ id, method, args });
    });
  }

  /** @returns {Promise<ModelInfo>} @param {string} url @param {(p: Progress) => void} onProgress */
  load(url, onProgress) {
    return this.call("load", [url], onProgress);
  }

  /**
   * Answers a question: yields the streamed events, then `{type: "done", result}`.
   * @param {AskRequest} request
   * @returns {AsyncGenerator<AskEvent | {type: "done", result: AskResult}>}
   */
  async *ask(request) {
    const queue = [];
    let wake = null;
    let settled = null;
    const push = (item) => {
      queue.push(item);
      wake?.();
    };
    this.call("ask", [request], (event) => push({ event })).then(
      (result) => push({ done: result }),
      (error) => push({ error }),
    );
    while (true) {
      if (queue.length === 0) await new Promise((r) => (wake = r));
      wake = null;
      while (queue.length) {
        settled = queue.shift();
        if (settled.event) yield settled.event;
        else if (settled.error) throw settled.error;
        else return yield { type: "done", result: settled.done };
      }
    }
  }

  cancel() {
    return this.call("cancel");
  }

  /** @param {Partial<Settings>=} update @returns {Promise<Settings>} */
  settings(update) {
    return this.call("settings", [update]);
  }

  /** @returns {Promise<Snapshot>} */
  stats() {
    return this.call("stats");
  }

  reset() {
    return this.call("reset");
  }

  bench(promptTokens, decodeTokens, backend = "cpu") {
    return this.call("bench", [promptTokens, decodeTokens, backend]);
  }

  gpu() {
    return this.call("gpu");
  }
}
