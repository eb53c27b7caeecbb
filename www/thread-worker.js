// One kernel thread of the device module's threaded build (see wasm-device/src/threads.rs).
// The device worker starts this worker with {url, module, memory}: it instantiates the module
// on the shared memory and says "ready"; later it receives {pointer}, a pool worker to run,
// and runs it until the pool is dropped, then says "free".
self.onmessage = async ({ data }) => {
  try {
    const pkg = await import(data.url);
    await pkg.default({ module_or_path: data.module, memory: data.memory });
    self.onmessage = ({ data }) => {
      pkg.run_thread(data.pointer);
      // Its pool was dropped (the model was replaced): free for the next one.
      self.postMessage({ free: true });
    };
    self.postMessage({ ready: true });
  } catch (err) {
    self.postMessage({ error: String(err?.message ?? err) });
  }
};
