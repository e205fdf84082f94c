//! Ember's **push** stage, beside query in the pipeline
//! sample → aggregate → symbolize → store → query → render/export, and store → **push**:
//! closed windows are read back from the store (the durable outbox), encoded for a fleet
//! backend, and sent; a cursor per destination in the store says how far each got.
//!
//! - [`pyroscope`]: Grafana Pyroscope's Connect push (`/push.v1.PusherService/Push`), one
//!   series per service with a gzip pprof per window.
//! - [`otlp`]: OTLP/HTTP profiles (`/v1development/profiles`) in the opentelemetry-proto
//!   1.10+ wire format.
//! - [`series`]: the service name and series labels both use.
//! - [`Pusher`]: the threads, retries, pacing and counters (see [`pusher`] for the
//!   delivery rules); requests go through [`profiler_http`], Ember's one HTTP client.
//!
//! ```no_run
//! use profiler_push::{Destination, Endpoint, PushConfig, Pusher};
//! use profiler_store::StoreConfig;
//!
//! let dest = Destination::pyroscope(Endpoint::parse("http://pyroscope:4040")?);
//! let config = PushConfig { host_name: "node-7".into(), ..PushConfig::default() };
//! let pusher = Pusher::start("/var/lib/ember".as_ref(), &StoreConfig::default(), vec![dest], &config)?;
//! // ... the agent runs ...
//! pusher.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod destination;
mod encode;
pub mod otlp;
pub mod proto;
pub mod pusher;
pub mod pyroscope;
pub mod series;

pub use destination::{Compression, Destination, Protocol, Secret};
pub use encode::{StoredWindow, profile_id, uuid_string};
pub use profiler_http::{Endpoint, EndpointError, Scheme, Timeouts, TlsConfig, TlsError};
pub use pusher::{DestinationStats, PushConfig, PushError, Pusher, StatsHandle};
