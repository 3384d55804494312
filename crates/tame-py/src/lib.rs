//! tame-py
