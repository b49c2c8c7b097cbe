//! Input checks shared by the domain's operations; each failure is a `BAD_USER_INPUT`
//! with a message that names the field.

use rust_decimal::Decimal;

use super::error::{BillingError, BillingResult};
use super::money::{MAX_AMOUNT_SCALE, MAX_QUANTITY_SCALE, canonical_currency};

/// Bidirectional embeddings, overrides and isolates: they make text display in another
/// order than it is stored (names that impersonate, ids that read differently).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Refuses C0 control characters (NUL included: PostgreSQL cannot store it), DEL and
/// bidirectional overrides; `multiline` text (descriptions) may hold tabs and newlines.
pub fn plain(field: &str, value: &str, multiline: bool) -> BillingResult<()> {
    let bad = value.chars().find(|&c| {
        let allowed_space = multiline && matches!(c, '\t' | '\n' | '\r');
        ((c.is_ascii_control() || c == '\u{7F}') && !allowed_space) || is_bidi_control(c)
    });
    match bad {
        Some(c) => Err(BillingError::invalid(format!(
            "{field} must not contain control or bidirectional override characters (found U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// A client's idempotency key: 1 to 255 characters, none of them control characters.
pub fn idempotency_key(key: &str) -> BillingResult<()> {
    if key.is_empty() || key.len() > 255 {
        return Err(BillingError::invalid(
            "idempotencyKey must be 1 to 255 characters",
        ));
    }
    plain("idempotencyKey", key, false)
}

/// Longest description.
pub const MAX_DESCRIPTION: usize = 2_000;

/// A description: may be empty, may span lines.
pub fn description(field: &str, value: &str) -> BillingResult<String> {
    let v = value.trim();
    if v.chars().count() > MAX_DESCRIPTION {
        return Err(BillingError::invalid(format!(
            "{field} must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    plain(field, v, true)?;
    Ok(v.to_owned())
}

/// Instants the API accepts: years 1970 to 9999.
pub fn instant(
    field: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> BillingResult<chrono::DateTime<chrono::Utc>> {
    use chrono::Datelike;
    if (1970..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(BillingError::invalid(format!(
            "{field} must be between 1970 and 9999, got {at}"
        )))
    }
}

/// ISO 3166-1 alpha-2 country codes (officially assigned).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// An ISO 3166-1 alpha-2 country code, upper-cased.
pub fn country(field: &str, value: &str) -> BillingResult<String> {
    let code = value.trim().to_ascii_uppercase();
    if code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code) {
        Ok(code)
    } else {
        Err(BillingError::invalid(format!(
            "{field}: {value:?} is not an ISO 3166-1 alpha-2 country code"
        )))
    }
}

pub fn text(field: &str, value: &str, max: usize) -> BillingResult<String> {
    let v = value.trim();
    plain(field, v, false)?;
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
    plain("email", v, false)?;
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
    fn control_and_bidi_characters_are_refused() {
        for bad in [
            "a\0b",
            "a\u{1}",
            "x\u{202E}gnp.exe",
            "\u{2066}a",
            "a\nb",
            "a\u{7F}",
        ] {
            assert!(text("name", bad, 200).is_err(), "{bad:?}");
        }
        assert!(text("name", "Zoë Ærø 李", 200).is_ok());
        assert!(description("description", "line one\nline two\ttab").is_ok());
        assert!(description("description", "nul\0").is_err());
        assert!(idempotency_key("key\u{202D}").is_err());
        assert!(email("a\u{202E}@b.com").is_err());
    }

    #[test]
    fn countries_and_instants() {
        assert_eq!(country("c", "de").unwrap(), "DE");
        assert!(country("c", "XX").is_err());
        assert!(country("c", "Germany").is_err());
        let at = |y| {
            chrono::NaiveDate::from_ymd_opt(y, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
        };
        assert!(instant("at", at(1970)).is_ok());
        assert!(instant("at", at(9999)).is_ok());
        assert!(instant("at", at(1969)).is_err());
        assert!(instant("at", at(0)).is_err());
        assert!(instant("at", at(10000)).is_err());
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
