//! tame-server
