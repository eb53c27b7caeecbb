//! `wasi:keyvalue@0.2.0-draft2` (`store` and `atomics`), persisted: each store label is one JSON
//! file under the state directory, rewritten atomically (write a temporary file, then rename) on
//! every change, and read back when the host starts. So what a component keeps there (the edge
//! tier's sliding windows) survives across requests, instances and host restarts.
//!
//! A component may open only the labels its manifest lists in `key_value_stores`; any other
//! label is `access-denied`. Compare-and-swap (`atomics.cas` + `swap`) compares the value the
//! component read with the current one under the store's lock, so concurrent read-modify-write
//! cycles (two requests updating the same window) never lose an update.

use crate::error::HostError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../edge-fn/wit",
        world: "ladder:edge/platform",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

pub use bindings::wasi::config::store as config_store;
use bindings::wasi::keyvalue::{atomics, store};

/// Values are kept as given; the file stores UTF-8 values as text and others as hex.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredValue {
    Text(String),
    Hex(String),
}

impl StoredValue {
    fn encode(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => StoredValue::Text(text.to_string()),
            Err(_) => StoredValue::Hex(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    fn decode(self) -> Option<Vec<u8>> {
        match self {
            StoredValue::Text(t) => Some(t.into_bytes()),
            StoredValue::Hex(h) => (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
                .collect(),
        }
    }
}

/// One labelled store: its data and the file it is persisted to.
struct StoreData {
    label: String,
    file: PathBuf,
    data: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl StoreData {
    fn open(label: &str, dir: &Path) -> Result<Self, HostError> {
        let file = dir.join(format!("{}.json", sanitize(label)));
        let data = match std::fs::read_to_string(&file) {
            Ok(text) => {
                let stored: BTreeMap<String, StoredValue> =
                    serde_json::from_str(&text).map_err(|e| HostError::KeyValue {
                        label: label.to_string(),
                        message: format!("{} is not a key-value file: {e}", file.display()),
                    })?;
                stored
                    .into_iter()
                    .map(|(k, v)| {
                        v.decode()
                            .map(|v| (k.clone(), v))
                            .ok_or_else(|| HostError::KeyValue {
                                label: label.to_string(),
                                message: format!(
                                    "{}: key {k:?} has a bad hex value",
                                    file.display()
                                ),
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(HostError::Io {
                    what: file.display().to_string(),
                    source,
                });
            }
        };
        Ok(StoreData {
            label: label.to_string(),
            file,
            data: Mutex::new(data),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written (every change is one
        // insert or remove), so a poisoned lock is still consistent.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the whole store to its file (temporary file + rename, so a crash leaves either the
    /// old or the new contents).
    fn persist(&self, data: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let stored: BTreeMap<&String, StoredValue> = data
            .iter()
            .map(|(k, v)| (k, StoredValue::encode(v)))
            .collect();
        let text = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.file))
            .map_err(|e| format!("cannot persist {}: {e}", self.file.display()))
    }
}

/// File names for labels: letters, digits, `-` and `_` kept, everything else `_`.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every store the application declares, shared by all requests.
#[derive(Clone, Default)]
pub struct KeyValueStores {
    stores: Arc<HashMap<String, Arc<StoreData>>>,
}

impl KeyValueStores {
    /// Opens (or creates) the stores `labels` under `dir`.
    pub fn open<'a>(
        dir: &Path,
        labels: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, HostError> {
        let mut stores = HashMap::new();
        for label in labels {
            if stores.contains_key(label) {
                continue;
            }
            std::fs::create_dir_all(dir).map_err(|source| HostError::Io {
                what: format!("key-value directory {}", dir.display()),
                source,
            })?;
            stores.insert(label.to_string(), Arc::new(StoreData::open(label, dir)?));
        }
        Ok(KeyValueStores {
            stores: Arc::new(stores),
        })
    }

    /// The stores one component may open.
    pub fn for_component(&self, labels: &[String]) -> ComponentStores {
        ComponentStores {
            stores: labels
                .iter()
                .filter_map(|l| self.stores.get(l).cloned())
                .collect(),
        }
    }
}

/// The stores a component's manifest entry grants it.
#[derive(Clone, Default)]
pub struct ComponentStores {
    stores: Vec<Arc<StoreData>>,
}

/// An open bucket (a store handle in the component's resource table).
pub struct Bucket(Arc<StoreData>);

/// A compare-and-swap handle: the value the component read, to be compared on `swap`.
pub struct Cas {
    store: Arc<StoreData>,
    key: String,
    seen: Option<Vec<u8>>,
}

/// What the `wasi:keyvalue` and `wasi:config` host traits are implemented on.
pub struct PlatformView<'a> {
    pub table: &'a mut ResourceTable,
    pub stores: &'a ComponentStores,
    pub config: &'a BTreeMap<String, String>,
}

pub struct HasPlatform;

impl HasData for HasPlatform {
    type Data<'a> = PlatformView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics}` and `wasi:config/store` to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> PlatformView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasPlatform>(linker, get)?;
    atomics::add_to_linker::<T, HasPlatform>(linker, get)?;
    config_store::add_to_linker::<T, HasPlatform>(linker, get)?;
    Ok(())
}

fn store_error(message: String) -> store::Error {
    tracing::warn!("key-value: {message}");
    store::Error::Other(message)
}

impl store::Host for PlatformView<'_> {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let Some(data) = self.stores.stores.iter().find(|s| s.label == identifier) else {
            tracing::warn!(
                "key-value: the component opened store `{identifier}`, which its \
                 key_value_stores do not list"
            );
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(Ok(self.table.push(Bucket(Arc::clone(data)))?))
    }
}

impl store::HostBucket for PlatformView<'_> {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let b = self.table.get(&bucket)?;
        Ok(Ok(b.0.lock().get(&key).cloned()))
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let b = &self.table.get(&bucket)?.0;
        let mut data = b.lock();
        let old = data.insert(key.clone(), value);
        if let Err(e) = b.persist(&data) {
            // Keep memory and file in step: undo the change that could not be written.
            match old {
                Some(old) => data.insert(key, old),
                None => data.remove(&key),
            };
            return Ok(Err(store_error(e)));
        }
        Ok(Ok(()))
    }

    fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let b = &self.table.get(&bucket)?.0;
        let mut data = b.lock();
        if let Some(old) = data.remove(&key)
            && let Err(e) = b.persist(&data)
        {
            data.insert(key, old);
            return Ok(Err(store_error(e)));
        }
        Ok(Ok(()))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let b = self.table.get(&bucket)?;
        Ok(Ok(b.0.lock().contains_key(&key)))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        const PAGE: usize = 1000;
        let b = self.table.get(&bucket)?;
        let data = b.0.lock();
        let mut keys: Vec<String> = match &cursor {
            Some(after) => data
                .range::<String, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(k, _)| k.clone())
                .take(PAGE + 1)
                .collect(),
            None => data.keys().take(PAGE + 1).cloned().collect(),
        };
        let cursor = (keys.len() > PAGE).then(|| {
            keys.truncate(PAGE);
            keys.last().cloned().unwrap_or_default()
        });
        Ok(Ok(store::KeyResponse { keys, cursor }))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for PlatformView<'_> {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let b = &self.table.get(&bucket)?.0;
        let mut data = b.lock();
        let current = match data.get(&key) {
            None => 0,
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(n) => n,
                None => {
                    return Ok(Err(store::Error::Other(format!(
                        "key {key:?} does not hold a decimal integer"
                    ))));
                }
            },
        };
        let next = current.saturating_add(delta);
        let old = data.insert(key.clone(), next.to_string().into_bytes());
        if let Err(e) = b.persist(&data) {
            match old {
                Some(old) => data.insert(key, old),
                None => data.remove(&key),
            };
            return Ok(Err(store_error(e)));
        }
        Ok(Ok(next))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        let mut data = cas.store.lock();
        let current = data.get(&cas.key).cloned();
        if current != cas.seen {
            drop(data);
            let retry = self.table.push(Cas {
                store: cas.store,
                key: cas.key,
                seen: current,
            })?;
            return Ok(Err(atomics::CasError::CasFailed(retry)));
        }
        let old = data.insert(cas.key.clone(), value);
        if let Err(e) = cas.store.persist(&data) {
            match old {
                Some(old) => data.insert(cas.key, old),
                None => data.remove(&cas.key),
            };
            return Ok(Err(atomics::CasError::StoreError(store_error(e))));
        }
        Ok(Ok(()))
    }
}

impl atomics::HostCas for PlatformView<'_> {
    fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let store = Arc::clone(&self.table.get(&bucket)?.0);
        let seen = store.lock().get(&key).cloned();
        Ok(Ok(self.table.push(Cas { store, key, seen })?))
    }

    fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl config_store::Host for PlatformView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_store::Error>> {
        Ok(Ok(self.config.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config_store::Error>> {
        Ok(Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let stores = KeyValueStores::open(dir.path(), ["default", "a/b"]).unwrap();
        let s = &stores.stores["default"];
        let mut data = s.lock();
        data.insert("text".into(), b"{\"x\":1}".to_vec());
        data.insert("bytes".into(), vec![0, 255, 16]);
        s.persist(&data).unwrap();
        drop(data);
        assert_eq!(stores.stores["a/b"].file, dir.path().join("a_b.json"));
        let again = KeyValueStores::open(dir.path(), ["default"]).unwrap();
        let data = again.stores["default"].lock();
        assert_eq!(data["text"], b"{\"x\":1}");
        assert_eq!(data["bytes"], vec![0, 255, 16]);
    }

    #[test]
    fn a_corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.json"), "not json").unwrap();
        let err = KeyValueStores::open(dir.path(), ["default"]).err().unwrap();
        assert!(err.to_string().contains("not a key-value file"), "{err}");
    }
}
