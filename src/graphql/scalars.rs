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
            Value::String(s) if is_plain_decimal(&s) => Dec::from_str(&s)
                .map(Decimal)
                .map_err(|_| InputValueError::custom(format!("{s:?} is out of range"))),
            Value::String(s) => Err(InputValueError::custom(format!(
                "{s:?} is not a decimal number: write -?digits(.digits)?, e.g. \"12.50\""
            ))),
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

/// `-?digits(.digits)?`: no exponent, underscore, plus sign or spaces.
pub fn is_plain_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

impl From<Dec> for Decimal {
    fn from(d: Dec) -> Self {
        Decimal(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> InputValueResult<Decimal> {
        <Decimal as ScalarType>::parse(Value::String(s.to_owned()))
    }

    #[test]
    fn lenient_spellings_are_refused() {
        for bad in [
            "1e5", "1_000", "+1", " 1", "1 ", "1.", ".5", "-", "", "1.2.3", "0x10", "١",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("-12.50").unwrap().0, Dec::new(-1250, 2));
    }

    proptest! {
        #[test]
        fn the_grammar_is_exactly_sign_digits_fraction(
            int in "[0-9]{1,14}", frac in proptest::option::of("[0-9]{1,12}"), neg: bool,
        ) {
            let text = format!("{}{int}{}", if neg { "-" } else { "" }, frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default());
            let parsed = parse(&text).expect("accepted");
            prop_assert_eq!(parsed.0, Dec::from_str(&text).unwrap());
        }

        #[test]
        fn anything_else_is_refused(s in "\\PC{0,12}") {
            let plain = !s.is_empty() && {
                let u = s.strip_prefix('-').unwrap_or(&s);
                let mut parts = u.splitn(2, '.');
                let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                let int = parts.next();
                let frac = parts.next();
                ok(int) && (frac.is_none() || ok(frac))
            };
            prop_assert_eq!(parse(&s).is_ok(), plain && s.len() <= 28, "{:?}", s);
        }
    }
}
