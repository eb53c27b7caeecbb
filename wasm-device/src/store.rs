//! The device's state that outlives the page (the sliding windows and the statistics), kept in
//! IndexedDB as JSON under one key. `offload` owns what the JSON means; this only stores it.

use crate::browser::{self, js_error, wait};
use crate::error::Result;
use js_sys::Promise;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

const DB: &str = "ladder-device";
const STORE: &str = "state";

/// A promise settled by an IndexedDB request.
fn settled(request: &IdbRequest) -> Promise {
    Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    })
}

async fn open() -> Result<IdbDatabase> {
    let request = browser::indexed_db()?
        .open_with_u32(DB, 1)
        .map_err(js_error)?;
    let upgrade = Closure::<dyn FnMut(Event)>::new(|event: Event| {
        let db = event
            .target()
            .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
            .and_then(|r| r.result().ok())
            .map(JsValue::unchecked_into::<IdbDatabase>);
        if let Some(db) = db {
            // Fails only if the store exists, which a version-1 upgrade never sees.
            let _ = db.create_object_store(STORE);
        }
    });
    request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let result = wait(settled(&request)).await;
    request.set_onupgradeneeded(None);
    drop(upgrade);
    result?;
    Ok(request.result().map_err(js_error)?.unchecked_into())
}

/// The text stored under `key`, if any.
pub async fn get(key: &str) -> Result<Option<String>> {
    let db = open().await?;
    let store = db
        .transaction_with_str(STORE)
        .and_then(|t| t.object_store(STORE))
        .map_err(js_error)?;
    let request = store.get(&JsValue::from_str(key)).map_err(js_error)?;
    wait(settled(&request)).await?;
    let value = request.result().map_err(js_error)?;
    db.close();
    Ok(value.as_string())
}

/// Stores `text` under `key`.
pub async fn put(key: &str, text: &str) -> Result<()> {
    let db = open().await?;
    let store = db
        .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)
        .and_then(|t| t.object_store(STORE))
        .map_err(js_error)?;
    let request = store
        .put_with_key(&JsValue::from_str(text), &JsValue::from_str(key))
        .map_err(js_error)?;
    wait(settled(&request)).await?;
    db.close();
    Ok(())
}
