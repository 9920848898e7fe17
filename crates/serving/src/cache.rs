//! The seed's model caching: an LRU cache of answers, keyed by the canonical input.
//!
//! A model version has its own cache, so the key is the input alone: the batch's values in
//! column order, each written with a type tag (numbers by their bits, text with its length),
//! so two requests share an entry exactly when the engine would see the same rows. Entries
//! expire after a time to live; large requests are not cached (their key would cost more than
//! it saves).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use lru::LruCache;
use shipyard_runtime::Output;

/// Requests with more rows than this are not cached.
pub const MAX_CACHED_ROWS: usize = 64;

/// An answer and when it was stored.
type Entry = (Instant, Arc<Output>);

/// An LRU cache of model answers with a time to live.
pub struct PredictionCache {
    entries: Mutex<LruCache<Vec<u8>, Entry>>,
    ttl: Duration,
}

impl PredictionCache {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> PredictionCache {
        PredictionCache { entries: Mutex::new(LruCache::new(capacity)), ttl }
    }

    /// The key of `batch`, or `None` when it is too large to cache.
    pub fn key(batch: &RecordBatch) -> Option<Vec<u8>> {
        if batch.num_rows() > MAX_CACHED_ROWS {
            return None;
        }
        let mut key = Vec::with_capacity(batch.num_rows() * batch.num_columns() * 9 + 8);
        key.extend_from_slice(&(batch.num_rows() as u64).to_le_bytes());
        for column in batch.columns() {
            match column.data_type() {
                DataType::Float64 => {
                    let values = column.as_primitive::<Float64Type>();
                    for i in 0..values.len() {
                        if values.is_null(i) {
                            key.push(0);
                        } else {
                            key.push(1);
                            key.extend_from_slice(&values.value(i).to_bits().to_le_bytes());
                        }
                    }
                }
                DataType::Utf8 => {
                    let values = column.as_string::<i32>();
                    for i in 0..values.len() {
                        if values.is_null(i) {
                            key.push(0);
                        } else {
                            let s = values.value(i);
                            key.push(2);
                            key.extend_from_slice(&(s.len() as u64).to_le_bytes());
                            key.extend_from_slice(s.as_bytes());
                        }
                    }
                }
                DataType::Boolean => {
                    let values = column.as_boolean();
                    for i in 0..values.len() {
                        key.push(if values.is_null(i) { 0 } else { 3 + u8::from(values.value(i)) });
                    }
                }
                // The server builds only the three types above.
                _ => return None,
            }
        }
        Some(key)
    }

    /// The cached answer for `key`, if fresh.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Output>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((at, output)) if at.elapsed() < self.ttl => Some(output.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: Vec<u8>, output: Arc<Output>) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).put(key, (Instant::now(), output));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn batch(x: f64, s: Option<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![x])), Arc::new(StringArray::from(vec![s]))])
            .unwrap()
    }

    #[test]
    fn equal_inputs_share_a_key_and_different_ones_do_not() {
        assert_eq!(PredictionCache::key(&batch(1.0, Some("a"))), PredictionCache::key(&batch(1.0, Some("a"))));
        assert_ne!(PredictionCache::key(&batch(1.0, Some("a"))), PredictionCache::key(&batch(1.0, None)));
        assert_ne!(PredictionCache::key(&batch(1.0, Some(""))), PredictionCache::key(&batch(1.0, None)));
        assert_ne!(PredictionCache::key(&batch(1.0, Some("a"))), PredictionCache::key(&batch(2.0, Some("a"))));
    }

    #[test]
    fn entries_expire_and_are_evicted() {
        let output = Arc::new(Output::Values { columns: 1, values: vec![1.0], graph: None });
        let cache = PredictionCache::new(NonZeroUsize::new(1).unwrap(), Duration::from_secs(60));
        cache.insert(b"a".to_vec(), output.clone());
        assert!(cache.get(b"a").is_some());
        cache.insert(b"b".to_vec(), output.clone());
        assert!(cache.get(b"a").is_none(), "the least recently used entry is evicted");
        let expiring = PredictionCache::new(NonZeroUsize::new(4).unwrap(), Duration::ZERO);
        expiring.insert(b"a".to_vec(), output);
        assert!(expiring.get(b"a").is_none());
    }
}
