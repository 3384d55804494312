//! tame-safety
