//! Input checks shared by the domain's operations; each failure is a `BAD_USER_INPUT`
//! with a message that names the field.

use rust_decimal::Decimal;

use super::error::{BillingError, BillingResult};
use super::money::{MAX_AMOUNT_SCALE, MAX_QUANTITY_SCALE, canonical_currency};

pub fn text(field: &str, value: &str, max: usize) -> BillingResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(BillingError::invalid(format!("{field} must not be empty")));
    }
    if v.chars().count() > max {
        return Err(BillingError::invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(v.to_owned())
}

pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> BillingResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

pub fn currency(field: &str, code: &str) -> BillingResult<String> {
    canonical_currency(code.trim())
        .map(str::to_owned)
        .ok_or_else(|| {
            BillingError::invalid(format!(
                "{field}: {code:?} is not an ISO 4217 currency code"
            ))
        })
}

pub fn region(value: Option<&str>) -> BillingResult<Option<String>> {
    optional_text("region", value, 64)
}

/// A money amount: not negative, at most 12 decimal places.
pub fn amount(field: &str, v: Decimal) -> BillingResult<Decimal> {
    if v.is_sign_negative() && !v.is_zero() {
        return Err(BillingError::invalid(format!(
            "{field} must not be negative"
        )));
    }
    if v.normalize().scale() > MAX_AMOUNT_SCALE {
        return Err(BillingError::invalid(format!(
            "{field} has more than {MAX_AMOUNT_SCALE} decimal places"
        )));
    }
    Ok(v)
}

/// A quantity: not negative, at most 6 decimal places.
pub fn quantity(field: &str, v: Decimal) -> BillingResult<Decimal> {
    if v.is_sign_negative() && !v.is_zero() {
        return Err(BillingError::invalid(format!(
            "{field} must not be negative"
        )));
    }
    if v.normalize().scale() > MAX_QUANTITY_SCALE {
        return Err(BillingError::invalid(format!(
            "{field} has more than {MAX_QUANTITY_SCALE} decimal places"
        )));
    }
    Ok(v)
}

pub fn cpu(v: Decimal) -> BillingResult<Decimal> {
    let quarters = v * Decimal::from(4);
    if v <= Decimal::ZERO || quarters.fract() != Decimal::ZERO {
        return Err(BillingError::invalid(format!(
            "cpu must be a positive multiple of 0.25 cores, got {v}"
        )));
    }
    Ok(v)
}

/// A plausible address: one `@`, a local part, a dotted domain, no spaces.
pub fn email(value: &str) -> BillingResult<String> {
    let v = value.trim();
    let ok = v.len() <= 254
        && !v.contains(char::is_whitespace)
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if ok {
        Ok(v.to_owned())
    } else {
        Err(BillingError::invalid(format!(
            "email: {value:?} is not a valid email address"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn emails() {
        assert!(email("ops@example.com").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "@c.com",
            "a@.com",
            "a@c..com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_in_quarters() {
        assert!(cpu(dec!(0.25)).is_ok());
        assert!(cpu(dec!(2.75)).is_ok());
        assert!(cpu(dec!(0.3)).is_err());
        assert!(cpu(dec!(0)).is_err());
    }

    #[test]
    fn amounts_and_quantities() {
        assert!(amount("a", dec!(0.000000000001)).is_ok());
        assert!(amount("a", dec!(0.0000000000001)).is_err());
        assert!(
            amount("a", dec!(1.5000000000000)).is_ok(),
            "trailing zeros do not count"
        );
        assert!(amount("a", dec!(-1)).is_err());
        assert!(quantity("q", dec!(1.000001)).is_ok());
        assert!(quantity("q", dec!(1.0000001)).is_err());
    }
}
