//! Fuzzes the policy loader: any text loads or gives diagnostics, never a
//! panic; a loaded policy renders its DOT and info.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match tame_engine::Policy::from_yaml(text, "fuzz.yml") {
        Ok(p) => {
            let _ = p.to_dot();
            let _ = p.stats();
            let _ = p.run_tests();
        }
        Err(e) => {
            assert!(e.errors().next().is_some(), "a failed load must carry an error");
            let _ = e.to_string();
        }
    }
});
