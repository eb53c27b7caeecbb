//! Guest bindings for what the component imports besides spin-sdk's: `wasi:keyvalue`,
//! `wasi:config` and (in the default build) `wasi:nn`, generated from the WIT kept in `wit/`.

#[cfg(not(feature = "in-wasm"))]
spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    path: "wit",
    world: "ladder:edge/platform-nn",
    generate_all,
});

#[cfg(feature = "in-wasm")]
spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    path: "wit",
    world: "ladder:edge/platform",
    generate_all,
});
