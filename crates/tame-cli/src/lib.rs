//! tame-cli
