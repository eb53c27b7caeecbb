// Runs the device tier (wasm-device, built into ./pkg by `cargo xtask`) in a Web Worker, so the
// page stays responsive while the model computes. It only relays calls: every decision is made
// in the module. Protocol: the page posts {id, method, args}; the worker answers with
// {id, event} for streamed events (download progress, ask events), then {id, result} or
// {id, error}.
//
// There are three builds of the module: ./pkg/threads (relaxed-SIMD kernels on several
// threads: Web Workers sharing the module's memory, which needs a cross-origin isolated page),
// ./pkg/relaxed (the same kernels on one thread) and ./pkg (simd128 only) for browsers without
// relaxed SIMD, which reject the other two whole. `?kernels=simd128` on the worker's URL asks
// for the last one anyway, `?threads=1` for one thread.

// A module whose one function uses `i8x16.relaxed_swizzle`: it validates only where the
// browser has relaxed SIMD.
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0f, 0x01, 0x0d, 0x00, // its code, no locals:
  0x41, 0x01, 0xfd, 0x0f, // i8x16.splat(1)
  0x41, 0x02, 0xfd, 0x0f, // i8x16.splat(2)
  0xfd, 0x80, 0x02, // i8x16.relaxed_swizzle
  0x0b, // end
]);

const params = new URLSearchParams(self.location.search);
const relaxed = params.get("kernels") !== "simd128" && WebAssembly.validate(RELAXED_PROBE);
// Kernel threads: the cores the browser reports, at most four (the page and the browser need
// some too), where the page is cross-origin isolated (shared memory needs it).
// `?threads=N` caps it; anything but a positive number keeps the default.
const threads = Math.max(1, Math.min(Number(params.get("threads")) || 4, navigator.hardwareConcurrency ?? 1));
const threaded = relaxed && threads > 1 && self.crossOriginIsolated === true;

const ready = (async () => {
  if (threaded) {
    const build = new URL("./pkg/threads/wasm_device.js", import.meta.url).href;
    try {
      const pkg = await import(build);
      await pkg.default();
      await startThreads(pkg, build, threads);
      return await pkg.Device.open();
    } catch (err) {
      // A shared memory can fail to be made (it reserves its maximum): one thread, then.
      console.warn(`the threaded build did not start (${err?.message ?? err}); using one thread`);
    }
  }
  const pkg = await import(relaxed ? "./pkg/relaxed/wasm_device.js" : "./pkg/wasm_device.js");
  await pkg.default();
  return pkg.Device.open();
})();

/** Starts `threads − 1` kernel threads (./thread-worker.js) on this module's memory and
 * hands the module the function that gives them work. A thread that fails to start leaves
 * the model with fewer. */
async function startThreads(pkg, url, threads) {
  const module = pkg.wasm_module();
  const memory = pkg.wasm_memory();
  const started = await Promise.all(
    Array.from({ length: threads - 1 }, () => new Promise((resolve) => {
      const worker = new Worker(new URL("./thread-worker.js", import.meta.url), { type: "module" });
      worker.onmessage = ({ data }) => resolve(data.ready ? worker : null);
      worker.onerror = () => resolve(null);
      worker.postMessage({ url, module, memory });
    })),
  );
  const idle = started.filter(Boolean);
  for (const worker of idle) {
    worker.onmessage = ({ data }) => {
      if (data.free) idle.push(worker);
    };
  }
  pkg.set_threads(idle.length + 1, (pointer) => {
    const worker = idle.pop();
    if (!worker) return false;
    worker.postMessage({ pointer });
    return true;
  });
}

/** @param {number} id */
const emitter = (id) => (event) => self.postMessage({ id, event });

self.onmessage = async ({ data }) => {
  const { id, method, args = [] } = data;
  try {
    const device = await ready;
    let result = null;
    switch (method) {
      case "load":
        result = await device.load(args[0], emitter(id));
        break;
      case "ask":
        result = await device.ask(args[0], emitter(id));
        break;
      case "cancel":
        device.cancel();
        break;
      case "settings":
        result = device.settings(args[0]);
        break;
      case "stats":
        result = device.stats();
        break;
      case "reset":
        result = await device.reset();
        break;
      case "bench":
        result = await device.bench(args[0], args[1], args[2]);
        break;
      case "compare":
        result = await device.compare_backends(args[0], args[1]);
        break;
      case "gpu":
        result = await gpuAdapter();
        break;
      default:
        throw new Error(`the device has no method ${method}`);
    }
    self.postMessage({ id, result });
  } catch (err) {
    self.postMessage({ id, error: String(err?.message ?? err) });
  }
};

/** Whether this browser offers a WebGPU adapter (and which), for the page's note. */
async function gpuAdapter() {
  if (!("gpu" in navigator)) return { available: false, reason: "this browser has no WebGPU" };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: "no WebGPU adapter" };
    const info = adapter.info ?? {};
    return {
      available: true,
      fallback: Boolean(adapter.isFallbackAdapter ?? info.isFallbackAdapter),
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      description: info.description ?? "",
    };
  } catch (err) {
    return { available: false, reason: String(err?.message ?? err) };
  }
}
