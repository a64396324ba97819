//! A node's JSON-RPC answer, parsed into the caller's typed structure as
//! its bytes stream in: never a JSON tree of the whole body first. A tree
//! costs about 16 bytes of memory per byte of input (a 60 MB answer of
//! `[0,0,0,…]` took the process to 2 GB); a typed parse holds only what the
//! type keeps, refuses a wrong shape at its first byte (an array where an
//! object belongs ends the parse there), and skips unknown fields without
//! keeping them. Errors name the path of the bad value (`result.height`).

use std::io::Read;

use serde::de::{DeserializeOwned, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

/// The longest error message kept from a node.
const MAX_MESSAGE: usize = 200;

/// A JSON-RPC answer, typed.
#[derive(Debug)]
pub struct Answer<T> {
    /// `result`: `None` when it is missing, `Some(None)` when it is `null`.
    pub result: Option<Option<T>>,
    /// `error`, when not `null`.
    pub error: Option<RpcFailure>,
}

/// A node's `error` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RpcFailure {
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(default, deserialize_with = "short_text")]
    pub(crate) message: Option<String>,
}

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Envelope<T> {
    #[serde(default, deserialize_with = "present")]
    result: Option<Option<T>>,
    #[serde(default)]
    error: Option<RpcFailure>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn short_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.map(|t| t.chars().take(MAX_MESSAGE).collect()))
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Not JSON at all (an HTML error page, a cut body).
    #[error("not JSON")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but a value is not what the protocol says it is.
    #[error("{path}")]
    Shape {
        /// Where in the JSON the problem is.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// `result` is `null` where the method must return a value.
    #[error("result is null")]
    NullResult,
}

/// Parses an answer from `reader` as it streams in, `result` as `T`.
pub fn parse<T: DeserializeOwned>(reader: impl Read) -> Result<Answer<T>, AnswerError> {
    let mut json = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let envelope: Envelope<T> = serde_path_to_error::deserialize(&mut json).map_err(classify)?;
    json.end().map_err(AnswerError::NotJson)?;
    Ok(Answer {
        result: envelope.result,
        error: envelope.error,
    })
}

fn classify(e: serde_path_to_error::Error<serde_json::Error>) -> AnswerError {
    match e.inner().classify() {
        serde_json::error::Category::Data => AnswerError::Shape {
            path: e.path().to_string(),
            source: e.into_inner(),
        },
        _ => AnswerError::NotJson(e.into_inner()),
    }
}

/// `submitblock`'s `result` (BIP 22): `null` when accepted, a string saying
/// why not, or anything else a broken node may send, described, not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitAnswer {
    /// The node took the block (a `null` result).
    Accepted,
    /// The node refused it, saying why (`high-hash`, `duplicate`, …).
    Reason(String),
    /// An answer that is neither (its first characters).
    Unexpected(String),
}

impl<'de> Deserialize<'de> for SubmitAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Answer;
        impl<'de> Visitor<'de> for Answer {
            type Value = SubmitAnswer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("null or a reason")
            }
            fn visit_unit<E>(self) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Accepted)
            }
            fn visit_none<E>(self) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Accepted)
            }
            fn visit_str<E>(self, text: &str) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Reason(
                    text.chars().take(MAX_MESSAGE).collect(),
                ))
            }
            fn visit_bool<E>(self, v: bool) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Unexpected(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Unexpected(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Unexpected(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<SubmitAnswer, E> {
                Ok(SubmitAnswer::Unexpected(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SubmitAnswer, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SubmitAnswer::Unexpected("a list".into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SubmitAnswer, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SubmitAnswer::Unexpected("an object".into()))
            }
        }
        deserializer.deserialize_any(Answer)
    }
}

/// What solo mining reads of `getblockchaininfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChainInfo {
    pub(crate) chain: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn results_errors_and_nulls() {
        let answer: Answer<String> =
            parse(&br#"{"result":"00ab","error":null,"id":"hashrig"}"#[..]).unwrap();
        assert_eq!(answer.result, Some(Some("00ab".into())));
        assert_eq!(answer.error, None);
        let answer: Answer<String> = parse(
            &br#"{"result":null,"error":{"code":-28,"message":"Loading block index..."},"id":1}"#[..],
        )
        .unwrap();
        assert_eq!(answer.result, Some(None));
        assert_eq!(answer.error.unwrap().code, Some(-28));
        let answer: Answer<String> = parse(&br#"{"id":1}"#[..]).unwrap();
        assert_eq!(answer.result, None);
    }

    #[test]
    fn a_wrong_shape_names_its_path_and_an_html_page_is_not_json() {
        let err = parse::<ChainInfo>(&br#"{"result":{"chain":[0,0,0]}}"#[..]).unwrap_err();
        assert!(
            matches!(&err, AnswerError::Shape { path, .. } if path == "result.chain"),
            "{err}"
        );
        let err = parse::<ChainInfo>(&b"<html>502 Bad Gateway</html>"[..]).unwrap_err();
        assert!(matches!(err, AnswerError::NotJson { .. }), "{err}");
        let err = parse::<ChainInfo>(&br#"{"result":{"chain":"main"}} trailing"#[..]).unwrap_err();
        assert!(matches!(err, AnswerError::NotJson { .. }), "{err}");
    }

    #[test]
    fn submit_answers_of_any_shape_are_read_without_keeping_them() {
        let read = |text: &str| {
            parse::<SubmitAnswer>(text.as_bytes())
                .unwrap()
                .result
                .flatten()
        };
        assert_eq!(read(r#"{"result":null}"#), None);
        assert_eq!(
            read(r#"{"result":"high-hash"}"#),
            Some(SubmitAnswer::Reason("high-hash".into()))
        );
        assert_eq!(
            read(r#"{"result":[1,[2],{"a":3}]}"#),
            Some(SubmitAnswer::Unexpected("a list".into()))
        );
        assert_eq!(
            read(r#"{"result":42}"#),
            Some(SubmitAnswer::Unexpected("42".into()))
        );
        // Any answer still parses as a Value for those who want one.
        let any: Answer<Value> = parse(&br#"{"result":{"x":[1]}}"#[..]).unwrap();
        assert_eq!(any.result, Some(Some(serde_json::json!({"x": [1]}))));
    }
}
