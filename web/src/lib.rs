//! Ember's **query** stage over HTTP: the API ([`api`]) and the embedded web UI ([`ui`])
//! that runs on it.
//!
//! This crate never samples, stores or renders anything itself: it takes
//! [`profiler_model::Profile`]s from a [`Backend`], and `profiler-render` turns them into
//! what people and tools look at, in the same formats `ember export` writes.

pub mod api;
mod not_found;
pub mod prometheus;
pub mod tls;
pub mod ui;

pub use api::{
    ApiConfig, ApiError, Backend, BackendError, LabelValues, ProfileQuery, TimelinePoint, app,
    serve,
};
