//! Arbitrary bytes as a config file: `ConfigStore::open` never panics, a bad
//! file gives a clear error that names it (and the line and field of a
//! parse error), and the file is never changed by a failed open, nor by a
//! successful open of an existing file.

#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use unlocked::config::{ConfigStore, OpenError, PersistErrorKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AppConfig {
    port: u16,
    name: String,
    tags: Vec<String>,
    limits: Option<BTreeMap<String, i64>>,
}

fn default_config() -> AppConfig {
    AppConfig {
        port: 80,
        name: "default".into(),
        tags: Vec::new(),
        limits: None,
    }
}

/// One scratch folder per fuzzing process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("unlocked-fuzz-config-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("app.json");
    let _ = fs::remove_file(dir().join("app.json.bak"));
    fs::write(&path, data).unwrap();
    let store = ConfigStore::builder(default_config())
        .validator(|c: &AppConfig| if c.port != 0 { Ok(()) } else { Err("port 0") })
        .open(&path);
    assert_eq!(fs::read(&path).unwrap(), data, "open changed the file");
    match store {
        Ok(store) => {
            let snap = store.load();
            assert!(snap.version().get() >= 1);
            assert_ne!(snap.port, 0, "an invalid config was accepted");
            // What was accepted reads back the same through serde_json.
            let v: serde_json::Value = serde_json::from_slice(data).unwrap();
            assert_eq!(v["version"].as_u64(), Some(snap.version().get()));
            let parsed: AppConfig = serde_json::from_value(v["config"].clone()).unwrap();
            assert_eq!(parsed, *snap);
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(
                msg.contains("app.json"),
                "error does not name the file: {msg}"
            );
            match &err {
                OpenError::Persist(e) => {
                    assert_eq!(e.kind(), PersistErrorKind::Parse, "{msg}");
                    assert!(e.field().is_some() || e.line().is_some(), "{msg}");
                }
                OpenError::Invalid { .. } => assert!(msg.contains("port 0"), "{msg}"),
                other => panic!("unexpected error {other:?}"),
            }
        }
    }
});
