// Runs the device tier (wasm-device, built into ./pkg by `cargo xtask`) in a Web Worker, so the
// page stays responsive while the model computes. It only relays calls: every decision is made
// in the module. Protocol: the page posts {id, method, args}; the worker answers with
// {id, event} for streamed events (download progress, ask events), then {id, result} or
// {id, error}.
import init, { Device } from "./pkg/wasm_device.js";

const ready = (async () => {
  await init();
  return Device.open();
})();

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
