//! The little JSON the health views write: escaped strings, and (for the dashboard) a value
//! tree written in one pass. Hand-written, so the crate needs no serializer.

#[cfg(feature = "dashboard")]
use std::fmt::Write;

pub(crate) use tower_bulwark_core::json::write_string;

/// `value` as a JSON string literal.
pub(crate) fn string(value: &str) -> String {
    let mut out = String::new();
    write_string(value, &mut out);
    out
}

/// A JSON value. Objects keep their fields in order; their names are the crate's own.
#[cfg(feature = "dashboard")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(u64),
    /// A finite number; NaN and infinities are written as `null`.
    Num(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(&'static str, Value)>),
}

#[cfg(feature = "dashboard")]
impl Value {
    /// The value as JSON text.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            // `Debug` keeps a float a float (`50.0`, not `50`) and writes very large or
            // small numbers with an exponent (`1e300`): both valid JSON numbers.
            Value::Num(x) if x.is_finite() => {
                let _ = write!(out, "{x:?}");
            }
            Value::Num(_) => out.push_str("null"),
            Value::Str(s) => write_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(name, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

#[cfg(feature = "dashboard")]
macro_rules! impl_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(value: $t) -> Value {
                Value::$variant($conv(value))
            }
        })*
    };
}

#[cfg(feature = "dashboard")]
impl_from! {
    bool => Bool(|b| b),
    u64 => Int(|n| n),
    u32 => Int(u64::from),
    u8 => Int(u64::from),
    usize => Int(|n: usize| n as u64),
    f64 => Num(|x| x),
    String => Str(|s| s),
    &str => Str(str::to_string),
}

#[cfg(feature = "dashboard")]
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(string("line\nbreak\u{1}"), r#""line\u000abreak\u0001""#);
        assert_eq!(string("ünï</script>"), "\"ünï</script>\"");
    }

    #[cfg(feature = "dashboard")]
    #[test]
    fn values_are_written_as_json() {
        let value = Value::Object(vec![
            ("n", 3u64.into()),
            ("x", 0.25.into()),
            ("whole", 50.0.into()),
            ("huge", 1e300.into()),
            ("tiny", (-1.5e-9).into()),
            ("nan", f64::NAN.into()),
            ("inf", f64::INFINITY.into()),
            ("none", Option::<u64>::None.into()),
            ("s", "a\"b".into()),
            (
                "list",
                Value::Array(vec![true.into(), Value::Null, 62.0.into()]),
            ),
            ("empty", Value::Object(vec![])),
        ]);
        assert_eq!(
            value.to_json(),
            r#"{"n":3,"x":0.25,"whole":50.0,"huge":1e300,"tiny":-1.5e-9,"nan":null,"inf":null,"none":null,"s":"a\"b","list":[true,null,62.0],"empty":{}}"#
        );
    }
}
