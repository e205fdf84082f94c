//! Ember's presentation layer: the HTTP API ([`api`]) and flame graph rendering with inferno
//! ([`render`]); the embedded web UI ([`ui`]) builds on them.
//!
//! This crate never samples or stores anything: it takes [`profiler_model::Profile`]s from a
//! [`Backend`] and turns them into things people and tools look at.

pub mod api;
pub mod render;
pub mod ui;

pub use api::{
    ApiError, Backend, BackendError, LabelValues, ProfileQuery, TimelinePoint, app, serve,
};
