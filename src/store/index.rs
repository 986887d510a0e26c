//! `index.json`: the images the store knows, as manifest descriptors.

use serde_json::Value;

use super::Store;
use super::error::{Result, StoreError};

impl Store {
    /// Reads `index.json`, checking that it is an object with a
    /// `manifests` array.
    pub(crate) fn read_index(&self) -> Result<Value> {
        let path = self.path("index.json");
        let index = super::read_json_file(&path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            reason: "it is missing".into(),
        })?;
        if !index.get("manifests").is_some_and(Value::is_array) {
            return Err(StoreError::Corrupt {
                path,
                reason: "it has no `manifests` array".into(),
            });
        }
        Ok(index)
    }
}
