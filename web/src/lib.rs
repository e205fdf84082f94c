//! Ember's presentation layer: flame graph rendering with inferno today; the HTTP API and
//! the embedded UI build on it.
//!
//! This crate never samples or stores anything: it takes [`profiler_model::Profile`]s and
//! turns them into things people look at.

pub mod render;
