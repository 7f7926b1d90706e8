//! One layer, several compartments: each request goes to a named compartment chosen by a
//! user function, each with its own limits.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_bulwark_core::{BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::compartment::Compartment;
use crate::config::{Admission, Builder, Config};
use crate::service::admit_call;
use crate::{BulkheadHandle, ResponseFuture, TaskDeadline};
use tower_bulwark_core::stripes::Striped;

/// Routes each request to one of several compartments by a key function, so that a
/// saturated partition (payments: 10) cannot delay another (inventory: 30).
///
/// Requests whose key names no partition go to the fallback partition. Partitions use
/// reject admission: the key is known only in `call`.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_bulkhead::{BulkheadLayer, PartitionedBulkheadLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = PartitionedBulkheadLayer::builder(|path: &&'static str| {
///     path.split('/').nth(1).unwrap_or("").to_string()
/// })
/// .partition("payments".to_string(), BulkheadLayer::builder().max_concurrent(10))
/// .partition("inventory".to_string(), BulkheadLayer::builder().max_concurrent(30))
/// .fallback(BulkheadLayer::builder().max_concurrent(50))
/// .build()
/// .unwrap();
/// let service = layer.layer(service_fn(|path: &'static str| async move { Ok::<_, std::io::Error>(path) }));
/// assert_eq!(service.oneshot("/payments/42").await.unwrap(), "/payments/42");
/// assert_eq!(layer.handle(&"payments".to_string()).unwrap().snapshot().max_concurrent, 10);
/// # }
/// ```
pub struct PartitionedBulkheadLayer<K, F> {
    partitions: Arc<Partitions<K>>,
    key_of: F,
}

struct Partitions<K> {
    named: HashMap<K, (Striped<Compartment>, Config)>,
    fallback: (Striped<Compartment>, Config),
}

/// Builds a [`PartitionedBulkheadLayer`].
pub struct PartitionedBuilder<K, F> {
    key_of: F,
    named: Vec<(K, Builder)>,
    fallback: Option<Builder>,
}

impl PartitionedBulkheadLayer<(), ()> {
    /// Starts a layer whose requests go to the partition `key_of(&request)` names.
    pub fn builder<K, F, Req>(key_of: F) -> PartitionedBuilder<K, F>
    where
        F: Fn(&Req) -> K,
    {
        PartitionedBuilder {
            key_of,
            named: Vec::new(),
            fallback: None,
        }
    }
}

impl<K: Hash + Eq + fmt::Display, F> PartitionedBuilder<K, F> {
    /// A partition and its settings (its name defaults to the key).
    pub fn partition(mut self, key: K, settings: Builder) -> Self {
        self.named.push((key, settings));
        self
    }

    /// The partition of requests whose key names no other (required).
    pub fn fallback(mut self, settings: Builder) -> Self {
        self.fallback = Some(settings);
        self
    }

    /// Checks every partition's settings and builds the layer.
    pub fn build(self) -> Result<PartitionedBulkheadLayer<K, F>, ConfigError> {
        let fallback = self
            .fallback
            .ok_or_else(|| ConfigError::new("fallback", "a fallback partition is required"))?;
        let compartment = |settings: Builder, name: Option<String>| -> Result<_, ConfigError> {
            let settings = match name {
                Some(name) if settings.has_default_name() => settings.name(name),
                _ => settings,
            };
            let config = settings.into_config()?;
            if config.admission != Admission::Reject {
                return Err(ConfigError::new(
                    "admission",
                    "partitions know the key only in `call`: use reject admission",
                ));
            }
            let compartment = Compartment::new(
                config.name.clone(),
                config.max_concurrent,
                config.max_queue,
                config.listeners.clone(),
            );
            Ok((Striped::new(Arc::new(compartment)), config))
        };
        let mut named = HashMap::new();
        for (key, settings) in self.named {
            let name = key.to_string();
            named.insert(key, compartment(settings, Some(name))?);
        }
        Ok(PartitionedBulkheadLayer {
            partitions: Arc::new(Partitions {
                named,
                fallback: compartment(fallback, None)?,
            }),
            key_of: self.key_of,
        })
    }
}

impl<K: Hash + Eq, F> PartitionedBulkheadLayer<K, F> {
    /// The handle of the partition `key`.
    pub fn handle(&self, key: &K) -> Option<BulkheadHandle> {
        self.partitions
            .named
            .get(key)
            .map(|(compartment, _)| BulkheadHandle::new(compartment.shared().clone()))
    }

    /// The handle of the fallback partition.
    pub fn fallback_handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.partitions.fallback.0.shared().clone())
    }
}

impl<K, F: Clone> Clone for PartitionedBulkheadLayer<K, F> {
    fn clone(&self) -> Self {
        PartitionedBulkheadLayer {
            partitions: self.partitions.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<K, F> fmt::Debug for PartitionedBulkheadLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedBulkheadLayer")
            .field("partitions", &self.partitions.named.len())
            .finish_non_exhaustive()
    }
}

impl<K, F> fmt::Debug for PartitionedBuilder<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedBuilder")
            .field("partitions", &self.named.len())
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone> Layer<S> for PartitionedBulkheadLayer<K, F> {
    type Service = PartitionedBulkhead<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        PartitionedBulkhead {
            inner,
            partitions: self.partitions.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

/// A service whose calls draw from the compartment their key names. Built by
/// [`PartitionedBulkheadLayer`].
pub struct PartitionedBulkhead<S, K, F> {
    inner: S,
    partitions: Arc<Partitions<K>>,
    key_of: F,
}

impl<S: Clone, K, F: Clone> Clone for PartitionedBulkhead<S, K, F> {
    fn clone(&self) -> Self {
        PartitionedBulkhead {
            inner: self.inner.clone(),
            partitions: self.partitions.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for PartitionedBulkhead<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedBulkhead")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, Req> Service<Req> for PartitionedBulkhead<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key_of)(&request);
        let (compartment, config) = self
            .partitions
            .named
            .get(&key)
            .unwrap_or(&self.partitions.fallback);
        admit_call(
            compartment,
            config.max_wait,
            &TaskDeadline,
            &mut self.inner,
            request,
        )
    }
}
