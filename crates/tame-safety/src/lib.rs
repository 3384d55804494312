//! Payload safety for Tame: secret and personal-data detectors over JSON
//! payloads ([`scan`]), JSON-Schema argument validation ([`schema`]) and tool
//! contracts with agent identity binding ([`contracts`]).
//!
//! This crate knows nothing about policies' rules; the engine calls it.

pub mod scan;

pub use scan::{Category, Finding, Kind, Location, ScanOptions, ScanReport, Scanner};
