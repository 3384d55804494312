//! Integration tests of tame-safety: detectors, corpus quality, schemas, contracts.

mod corpus;
