//! A deployment being served: its arms (model versions with traffic weights), the shadow, and
//! how a request picks its arm.
//!
//! Picking is lock-free. Without a sticky key, or when a request lacks it, a request draws a
//! point in `[0, 10000)` from a counter mixed by SplitMix64, so every arm gets its weight's
//! share whatever the order of requests. With a sticky key, the point is the FNV-1a hash of the
//! key's value: the same value lands on the same arm on every replica and across restarts, as
//! long as the weights stay the same. (FNV-1a is written here because it is eight lines and the
//! route must not depend on a hasher whose output may change between releases, as
//! `std::hash::DefaultHasher` may.)
//!
//! The shadow gets a copy of each request after the answer is computed, on a bounded number of
//! concurrent shadow predictions: when they are all busy, the copy is dropped and counted, so
//! a slow shadow can never slow or fail the requests it copies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use axum::http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use shipyard_core::deployment::StickyKey;
use tokio::sync::Semaphore;

use crate::error::Protocol;
use crate::metrics::Metrics;
use crate::served::{Prediction, ServedModel};

/// Shadow predictions running at once, per deployment; more copies are dropped.
const SHADOW_SLOTS: usize = 64;
/// Points of the traffic range (basis points: weights in percent x 100).
const RANGE: u64 = 10_000;

/// One arm: a model version, the top of its share of `[0, RANGE)`, and its request counter.
struct Arm {
    model: Arc<ServedModel>,
    upper: u64,
    weight: u32,
    routed: Counter,
}

/// The shadow version and its counters (copies sent, copies dropped).
struct Shadow {
    model: Arc<ServedModel>,
    sent: Counter,
    dropped: Counter,
    /// The shadow's answers: the same as the answer returned, different, or failed.
    agreed: Counter,
    disagreed: Counter,
    failed: Counter,
}

/// A deployment, as served. Replaced whole when its policy or one of its versions changes.
pub struct Deployment {
    pub name: String,
    /// `name`, shared: what the prediction log records for each request, without a copy.
    pub(crate) logged_name: Arc<str>,
    pub revision: i64,
    /// The first arm: what metadata and readiness describe.
    primary: Arc<ServedModel>,
    arms: Vec<Arm>,
    shadow: Option<Shadow>,
    sticky: Option<StickyKey>,
    counter: AtomicU64,
    shadow_slots: Arc<Semaphore>,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Deployment {
    /// `arms` are `(model, weight in percent)`; the weights sum to 100 (checked by the store).
    /// `None` when there is no arm. The counters are made here, once, not per request.
    pub fn new(
        name: String,
        revision: i64,
        arms: Vec<(Arc<ServedModel>, u32)>,
        shadow: Option<Arc<ServedModel>>,
        sticky: Option<StickyKey>,
        metrics: &Metrics,
    ) -> Option<Deployment> {
        let primary = arms.first()?.0.clone();
        let mut upper = 0;
        let arms = arms
            .into_iter()
            .map(|(model, weight)| {
                upper += u64::from(weight) * (RANGE / 100);
                let routed = metrics.routed(&name, &model.labels, "arm");
                Arm { model, upper, weight, routed }
            })
            .collect();
        let shadow = shadow.map(|model| Shadow {
            sent: metrics.routed(&name, &model.labels, "shadow"),
            dropped: metrics.routed(&name, &model.labels, "shadow_dropped"),
            agreed: metrics.routed(&name, &model.labels, "shadow_agreed"),
            disagreed: metrics.routed(&name, &model.labels, "shadow_disagreed"),
            failed: metrics.routed(&name, &model.labels, "shadow_failed"),
            model,
        });
        Some(Deployment {
            logged_name: Arc::from(name.as_str()),
            name,
            revision,
            primary,
            arms,
            shadow,
            sticky,
            counter: AtomicU64::new(0),
            shadow_slots: Arc::new(Semaphore::new(SHADOW_SLOTS)),
        })
    }

    /// The first arm: what metadata and readiness describe.
    pub fn primary(&self) -> &Arc<ServedModel> {
        &self.primary
    }

    /// Every served version with its weight, then the shadow (weight `None`).
    pub fn members(&self) -> Vec<(Arc<ServedModel>, Option<u32>)> {
        let arms = self.arms.iter().map(|a| (a.model.clone(), Some(a.weight)));
        arms.chain(self.shadow.iter().map(|s| (s.model.clone(), None))).collect()
    }

    /// Whether requests are copied to a shadow.
    pub fn has_shadow(&self) -> bool {
        self.shadow.is_some()
    }

    /// The name of the body field that keeps a client on one arm, if the policy uses one.
    pub fn sticky_field(&self) -> Option<&str> {
        match &self.sticky {
            Some(StickyKey::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// The arm of a request whose sticky value is `key` (`None`: no key, spread by weight),
    /// counted.
    pub fn pick(&self, key: Option<&[u8]>) -> &Arc<ServedModel> {
        let point = match key {
            Some(k) => fnv1a(k) % RANGE,
            None => splitmix64(self.counter.fetch_add(1, Ordering::Relaxed)) % RANGE,
        };
        // Weights summing to 100 cover the range; the last arm takes any rounding remainder.
        let arm = self.arms.iter().find(|a| point < a.upper).or(self.arms.last());
        match arm {
            Some(a) => {
                a.routed.inc();
                &a.model
            }
            None => &self.primary,
        }
    }

    /// The sticky value of a request: the header, or the body field of its protocol.
    pub fn sticky_value(&self, protocol: Protocol, headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
        match self.sticky.as_ref()? {
            StickyKey::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
            StickyKey::Field(name) => {
                let value: serde_json::Value = serde_json::from_slice(body).ok()?;
                let holder = match protocol {
                    Protocol::Seed => &value,
                    Protocol::Mlflow => value.get("params")?,
                    Protocol::Oip => value.get("parameters")?,
                };
                match holder.get(name)? {
                    serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string().into_bytes()),
                }
            }
        }
    }

    /// Sends a copy of `batch` to the shadow, if there is one and a slot is free; its answer is
    /// logged beside the one returned.
    pub fn shadow(&self, batch: RecordBatch, answered: &Prediction, request_id: &str) {
        let Some(Shadow { model: shadow, sent, dropped, agreed, disagreed, failed }) = &self.shadow else { return };
        let Ok(permit) = self.shadow_slots.clone().try_acquire_owned() else {
            dropped.inc();
            return;
        };
        sent.inc();
        let shadow = shadow.clone();
        let primary = answered.output.clone();
        let primary_version = answered.answered_by.version.clone().unwrap_or_default();
        let (deployment, request_id) = (self.name.clone(), request_id.to_owned());
        let (agreed, disagreed, failed) = (agreed.clone(), disagreed.clone(), failed.clone());
        tokio::spawn(async move {
            let outcome = shadow.predict(batch).await;
            drop(permit);
            let shadow_version = shadow.version.clone().unwrap_or_default();
            let agree = outcome.as_ref().ok().map(|p| same_predictions(&p.output, &primary));
            match agree {
                Some(true) => agreed.inc(),
                Some(false) => disagreed.inc(),
                None => failed.inc(),
            };
            match outcome {
                Ok(p) => tracing::info!(
                    target: "shipyard::shadow",
                    %deployment, %request_id, %primary_version, %shadow_version,
                    agree = agree.unwrap_or(false),
                    primary = %crate::protocol::summary(&primary),
                    shadow = %crate::protocol::summary(&p.output),
                    "shadow prediction"
                ),
                Err(e) => tracing::warn!(
                    target: "shipyard::shadow",
                    %deployment, %request_id, %primary_version, %shadow_version,
                    "shadow prediction failed: {}", e.message
                ),
            }
        });
    }
}

/// Whether two answers predict the same: the same labels, or the same values (probabilities
/// may differ between versions that agree).
fn same_predictions(a: &shipyard_runtime::Output, b: &shipyard_runtime::Output) -> bool {
    use shipyard_runtime::Output;
    match (a, b) {
        (Output::Classes { labels: x, .. }, Output::Classes { labels: y, .. }) => x == y,
        (Output::Values { values: x, .. }, Output::Values { values: y, .. }) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64 (Fowler, Noll, Vo).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
