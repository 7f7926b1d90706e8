//! JSON string literals, for the few documents the workspace writes by hand (problem
//! details, the health views), so no crate needs a serializer for them.

use std::fmt::Write;

/// Writes `value` as a JSON string literal: quotes, backslashes and control characters
/// escaped.
///
/// ```
/// let mut out = String::new();
/// tower_bulwark_core::json::write_string("a \"b\"\n", &mut out);
/// assert_eq!(out, r#""a \"b\"\u000a""#);
/// ```
pub fn write_string(value: &str, out: &mut String) {
    out.reserve(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
