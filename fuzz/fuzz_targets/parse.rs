//! Fuzzes the condition parser and printer: parsing never panics, and a
//! parsed expression prints to source that parses to the same AST.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = tame_lang::parse(text) {
        let printed = expr.to_string();
        if let Ok(again) = tame_lang::parse(&printed) {
            assert_eq!(expr, again, "printing changed the AST: {printed}");
        }
    }
});
