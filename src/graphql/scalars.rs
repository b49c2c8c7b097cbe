//! The `Decimal` scalar: exact amounts as strings only.

use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use rust_decimal::Decimal as Dec;

/// An exact decimal number, written as a string (`"12.50"`). JSON numbers are refused:
/// they pass through binary floating point in most clients and lose digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal(pub Dec);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Dec::from_str(s.trim())
                .or_else(|_| Dec::from_scientific(s.trim()))
                .map(Decimal)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a decimal number"))),
            Value::Number(_) => Err(InputValueError::custom(
                "Decimal values must be strings (\"12.50\"), not JSON numbers, to stay exact",
            )),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

impl From<Dec> for Decimal {
    fn from(d: Dec) -> Self {
        Decimal(d)
    }
}
