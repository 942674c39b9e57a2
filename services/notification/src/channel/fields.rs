//! Reads the operator's `config` and `secrets` objects one named field at a time, so that each
//! error names its field and an unknown (misspelt) field is refused instead of ignored.

use serde_json::{Map, Value};

use super::error::{ChannelError, Part};

/// The fields of one JSON object; `null` counts as an empty object and a `null` field as absent.
pub(super) struct Fields<'a> {
    part: Part,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(part: Part, value: &'a Value) -> Result<Fields<'a>, ChannelError> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => return Err(ChannelError::NotAnObject { part }),
        };
        Ok(Fields {
            part,
            map,
            known: Vec::new(),
        })
    }

    fn get(&mut self, field: &'static str) -> Option<&'a Value> {
        self.known.push(field);
        self.map?.get(field).filter(|v| !v.is_null())
    }

    /// An optional non-empty string.
    pub(super) fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, ChannelError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(self.invalid(field, "must not be empty")),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(field, "must be a string")),
        }
    }

    /// A required non-empty string.
    pub(super) fn str(&mut self, field: &'static str) -> Result<&'a str, ChannelError> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional TCP port, 1 to 65535.
    pub(super) fn opt_port(&mut self, field: &'static str) -> Result<Option<u16>, ChannelError> {
        match self.get(field) {
            None => Ok(None),
            // A protobuf Struct carries every number as a double: 587.0 is port 587.
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (1.0..=65535.0).contains(f))
                        .map(|f| f as u64)
                })
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0)
                .map(Some)
                .ok_or_else(|| self.invalid(field, "must be a port number from 1 to 65535")),
        }
    }

    /// A required, non-empty list of non-empty strings.
    pub(super) fn str_list(&mut self, field: &'static str) -> Result<Vec<&'a str>, ChannelError> {
        let items = match self.get(field) {
            None => return Err(self.missing(field)),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(self.invalid(field, "must not be empty"));
            }
            Some(Value::Array(items)) => items,
            Some(_) => return Err(self.invalid(field, "must be a list of strings")),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.is_empty() => Ok(s.as_str()),
                _ => Err(self.invalid(field, format!("[{i}] must be a non-empty string"))),
            })
            .collect()
    }

    /// Refuses any field that was never asked for.
    pub(super) fn finish(self) -> Result<(), ChannelError> {
        let unknown = self
            .map
            .into_iter()
            .flat_map(|map| map.keys())
            .find(|key| !self.known.contains(&key.as_str()));
        match unknown {
            None => Ok(()),
            Some(key) => Err(ChannelError::UnknownField {
                part: self.part,
                field: key.chars().take(64).collect(),
            }),
        }
    }

    pub(super) fn invalid(&self, field: &'static str, why: impl Into<String>) -> ChannelError {
        ChannelError::InvalidField {
            part: self.part,
            field,
            why: why.into(),
        }
    }

    pub(super) fn missing(&self, field: &'static str) -> ChannelError {
        ChannelError::MissingField {
            part: self.part,
            field,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_typed_fields_and_refuses_unknown_ones() {
        let v = json!({"a": "x", "port": 25, "wire": 587.0, "half": 25.5, "list": ["p", "q"], "gone": null});
        let mut f = Fields::new(Part::Config, &v).expect("object");
        assert_eq!(f.str("a").expect("a"), "x");
        assert_eq!(f.opt_port("port").expect("port"), Some(25));
        assert_eq!(f.opt_port("wire").expect("a Struct's double"), Some(587));
        assert!(f.opt_port("half").is_err());
        assert_eq!(f.str_list("list").expect("list"), ["p", "q"]);
        assert_eq!(f.opt_str("gone").expect("null"), None);
        assert_eq!(f.opt_str("absent").expect("absent"), None);
        f.finish().expect("all known");

        let mut f = Fields::new(Part::Secrets, &v).expect("object");
        f.str("a").expect("a");
        let err = f.finish().expect_err("unknown");
        assert_eq!(err.field().map(|(p, _)| p), Some(Part::Secrets));
    }

    #[test]
    fn type_errors_name_the_field() {
        let v = json!({"s": 1, "e": "", "p": 70000, "l": ["ok", 3], "m": []});
        let mut f = Fields::new(Part::Config, &v).expect("object");
        for (field, err) in [
            ("s", f.str("s").expect_err("number")),
            ("e", f.str("e").expect_err("empty")),
            ("p", f.opt_port("p").map(|_| "").expect_err("too big")),
            ("l", f.str_list("l").map(|_| "").expect_err("number item")),
            ("m", f.str_list("m").map(|_| "").expect_err("empty list")),
            ("x", f.str("x").expect_err("missing")),
        ] {
            assert_eq!(err.field(), Some((Part::Config, field)), "{err}");
        }
        assert!(matches!(
            Fields::new(Part::Config, &json!([1])),
            Err(ChannelError::NotAnObject { part: Part::Config })
        ));
        Fields::new(Part::Secrets, &Value::Null)
            .expect("null is empty")
            .finish()
            .expect("nothing unknown");
    }
}
