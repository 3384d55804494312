//! tame-store
