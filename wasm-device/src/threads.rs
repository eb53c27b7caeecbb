//! Kernel threads in the browser. The module's threaded build (shared memory, the `atomics`
//! target feature; `cargo xtask` builds it into `pkg/threads/`) runs `llm`'s kernel pool on Web
//! Workers that share its memory. A worker cannot be started and waited for at once (the
//! browser starts it only when the starting thread returns to its event loop), so the page's
//! worker script starts them first, each instantiating this module on the shared memory, and
//! then hands over a function that gives one a pool worker to run ([`set_threads`]); the pool
//! calls it through `llm`'s spawner when the model loads. Other builds have one thread.

#[cfg(target_feature = "atomics")]
mod imp {
    use js_sys::Function;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wasm_bindgen::prelude::*;

    static THREADS: AtomicUsize = AtomicUsize::new(1);

    thread_local! {
        /// The page's `(pointer) => boolean`: posts the pointer to an idle started worker.
        static START: RefCell<Option<Function>> = const { RefCell::new(None) };
    }

    /// Kernel threads in all (this one included) for the models loaded after this call:
    /// `start(pointer)` gives a started Web Worker the pool worker at `pointer` to run (by
    /// calling [`run_thread`] with it) and returns whether one took it.
    #[wasm_bindgen]
    pub fn set_threads(threads: usize, start: Function) {
        START.with(|s| *s.borrow_mut() = Some(start));
        THREADS.store(threads.max(1), Ordering::Relaxed);
        llm::kernels::pool::set_thread_spawner(spawn);
    }

    pub fn count() -> usize {
        THREADS.load(Ordering::Relaxed)
    }

    type Work = Box<dyn FnOnce() + Send>;

    fn spawn(work: Work) -> bool {
        let pointer = Box::into_raw(Box::new(work));
        let taken = START.with(|s| {
            s.borrow().as_ref().is_some_and(|start| {
                start
                    .call1(&JsValue::NULL, &JsValue::from(pointer as usize as u32))
                    .is_ok_and(|r| r.as_bool() == Some(true))
            })
        });
        if !taken {
            // SAFETY: no worker took the pointer, so it is still this thread's box.
            drop(unsafe { Box::from_raw(pointer) });
        }
        taken
    }

    /// Runs the pool worker at `pointer` (from a `start` call of [`set_threads`]) on this Web
    /// Worker; returns when its pool is dropped.
    #[wasm_bindgen]
    pub fn run_thread(pointer: u32) {
        // SAFETY: the pointer came from `spawn`, which gave it to exactly one worker.
        let work = unsafe { Box::from_raw(pointer as usize as *mut Work) };
        work();
    }

    /// This module, for the Web Workers to instantiate on [`wasm_memory`].
    #[wasm_bindgen]
    pub fn wasm_module() -> JsValue {
        wasm_bindgen::module()
    }

    /// This module's shared memory.
    #[wasm_bindgen]
    pub fn wasm_memory() -> JsValue {
        wasm_bindgen::memory()
    }
}

/// Kernel threads in all that a model loaded now gets (1 without the threaded build).
pub fn count() -> usize {
    #[cfg(target_feature = "atomics")]
    return imp::count();
    #[cfg(not(target_feature = "atomics"))]
    1
}
