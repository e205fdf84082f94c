//! The protobuf messages the push stage sends, as prost structs written by hand.
//!
//! Only the messages Ember sends (and, for tests, the replies it reads) are here, with the
//! field numbers of the official schemas; the end-to-end receiver decodes what Ember sends
//! with those schemas themselves (PyPI `opentelemetry-proto` and Pyroscope's `push.proto`
//! compiled by `grpcio-tools`), so a wrong number here fails a test.
//!
//! - [`pyroscope`]: `push.v1` and `types.v1` of Grafana Pyroscope (`api/push/v1/push.proto`,
//!   `api/types/v1/types.proto`, Apache-2.0).
//! - [`otlp`]: `opentelemetry.proto.{collector.,}profiles.v1development`, `common.v1` and
//!   `resource.v1` in the numbering of opentelemetry-proto 1.10 and later (the dictionary
//!   with a stack table, `Sample.stack_index`, `Profile.sample_type` singular); checked
//!   against the descriptors of PyPI `opentelemetry-proto` 1.45.

pub mod otlp;
pub mod pyroscope;
