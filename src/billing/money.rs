//! Money arithmetic: ISO 4217 currencies, rounding to minor units and exact proration.
//!
//! Pure functions only. Amounts are `rust_decimal::Decimal`, never floats.

use rust_decimal::{Decimal, RoundingStrategy};

/// Unit prices keep up to 12 decimal places (DESIGN "Money and time").
pub const MAX_AMOUNT_SCALE: u32 = 12;

/// Quantities and tier maxima keep up to 6 decimal places (DESIGN "Pinned details").
pub const MAX_QUANTITY_SCALE: u32 = 6;

/// Minor units used when a currency is unknown, so rounding never fails.
const FALLBACK_MINOR_UNITS: u32 = 2;

/// ISO 4217 list one (published 2026-01-01): every code that has defined minor units,
/// sorted by code so that lookups can binary-search.
///
/// Left out on purpose: codes whose minor unit is "N.A." (XAG, XAU, XBA, XBB, XBC, XBD, XDR,
/// XPD, XPT, XSU, XTS, XUA, XXX), because nothing can be invoiced in them, and codes that
/// have been withdrawn (e.g. ANG, BGN, CUC, HRK, SLL, ZWL).
static CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAD", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Index of `code` in the table, compared without regard to ASCII case.
fn lookup(code: &str) -> Option<usize> {
    let upper: [u8; 3] = code.as_bytes().try_into().ok()?;
    // Uppercase into a fixed buffer so lookups never allocate.
    let upper = upper.map(|b| b.to_ascii_uppercase());
    CURRENCIES
        .binary_search_by(|(known, _)| known.as_bytes().cmp(&upper[..]))
        .ok()
}

/// The number of minor units (decimal places) of an ISO 4217 currency: JPY 0, USD 2, KWD 3,
/// CLF 4. `None` for anything that is not a current ISO 4217 code with defined minor units.
/// The lookup ignores ASCII case ("usd" finds USD).
pub fn minor_units(currency: &str) -> Option<u32> {
    lookup(currency).map(|i| CURRENCIES[i].1)
}

/// Whether `code` is a current ISO 4217 currency (ASCII case ignored; see [`canonical_currency`]).
pub fn is_currency(code: &str) -> bool {
    lookup(code).is_some()
}

/// The canonical (uppercase) spelling of a currency code, or `None` when it is not ISO 4217;
/// store this rather than user input so that comparisons elsewhere stay exact.
pub fn canonical_currency(code: &str) -> Option<&'static str> {
    lookup(code).map(|i| CURRENCIES[i].0)
}

/// Rounds `amount` to the currency's minor units, half away from zero (DESIGN: invoice lines).
///
/// Unknown currencies round to 2 places. The result carries exactly that many decimal places
/// (5 USD comes back as `5.00`), and a result of zero is never negative.
pub fn round_to_currency(amount: Decimal, currency: &str) -> Decimal {
    let places = minor_units(currency).unwrap_or(FALLBACK_MINOR_UNITS);
    // `round_dp` is banker's rounding; invoices need half away from zero.
    let mut rounded = amount.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    // Pad to the currency's scale so "5.00" prints as such; `rescale` never fails.
    rounded.rescale(places);
    if rounded.is_zero() {
        // -0.001 rounds to zero: never show "-0.00".
        rounded.set_sign_positive(true);
    }
    rounded
}

/// `amount × numerator / denominator`, multiplying first and dividing last so that exact
/// fractions stay exact (e.g. a 0.005 tie is not lost to an early rounding of the division).
///
/// A zero denominator yields zero (an empty period has nothing to charge). If the product
/// would overflow `Decimal`, it divides first instead, saturating at `Decimal::MAX`/`MIN`.
pub fn prorate(amount: Decimal, numerator: i64, denominator: i64) -> Decimal {
    if denominator == 0 {
        return Decimal::ZERO;
    }
    let numerator = Decimal::from(numerator);
    let denominator = Decimal::from(denominator);
    match amount.checked_mul(numerator) {
        Some(product) => product / denominator,
        // Only for absurd magnitudes: trade exactness for not panicking.
        None => (amount / denominator).saturating_mul(numerator),
    }
}

/// Whether `value` has at most `max_scale` decimal places once trailing zeros are dropped
/// (`1.50` has one); use with [`MAX_AMOUNT_SCALE`] and [`MAX_QUANTITY_SCALE`] to validate input.
pub fn has_scale_at_most(value: Decimal, max_scale: u32) -> bool {
    value.normalize().scale() <= max_scale
}

/// `amount` if it is not below zero, else zero at `amount`'s scale (so that "0.00" stays
/// "0.00" where `max(Decimal::ZERO)` could answer a bare "0").
pub fn at_least_zero(amount: Decimal) -> Decimal {
    if amount < Decimal::ZERO {
        Decimal::new(0, amount.scale())
    } else {
        amount
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn table_is_sorted_unique_and_uppercase() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} !< {}", pair[0].0, pair[1].0);
        }
        for (code, units) in CURRENCIES {
            assert_eq!(code.len(), 3, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_uppercase()), "{code}");
            assert!(*units <= 4, "{code}");
        }
        // List one has 178 codes; 13 of them have no minor units.
        assert_eq!(CURRENCIES.len(), 165);
    }

    #[test]
    fn every_table_entry_is_found() {
        for (code, units) in CURRENCIES {
            assert_eq!(minor_units(code), Some(*units), "{code}");
        }
    }

    #[test]
    fn known_minor_units() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("EUR"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("KRW"), Some(0));
        assert_eq!(minor_units("XOF"), Some(0));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("BHD"), Some(3));
        assert_eq!(minor_units("IQD"), Some(3));
        assert_eq!(minor_units("TND"), Some(3));
        assert_eq!(minor_units("CLF"), Some(4));
        assert_eq!(minor_units("UYW"), Some(4));
        // First and last entries: binary search edges.
        assert_eq!(minor_units("AED"), Some(2));
        assert_eq!(minor_units("ZWG"), Some(2));
    }

    #[test]
    fn unknown_codes_are_none() {
        for code in [
            "", "US", "USDX", "ABC", "XXX", "XTS", "XAU", "HRK", "BGN", "U$D", "ÜSD", "ZZZ", "AAA",
        ] {
            assert_eq!(minor_units(code), None, "{code}");
            assert!(!is_currency(code), "{code}");
        }
    }

    #[test]
    fn lookup_ignores_case() {
        assert!(is_currency("usd"));
        assert_eq!(minor_units("jPy"), Some(0));
        assert_eq!(canonical_currency("kwd"), Some("KWD"));
        assert_eq!(canonical_currency("nope"), None);
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round_to_currency(dec!(0.125), "USD"), dec!(0.13));
        assert_eq!(round_to_currency(dec!(0.135), "USD"), dec!(0.14));
        assert_eq!(round_to_currency(dec!(-0.125), "USD"), dec!(-0.13));
        assert_eq!(round_to_currency(dec!(2.5), "JPY"), dec!(3));
        assert_eq!(round_to_currency(dec!(3.5), "JPY"), dec!(4));
        assert_eq!(round_to_currency(dec!(1.0005), "KWD"), dec!(1.001));
        assert_eq!(round_to_currency(dec!(1.00005), "CLF"), dec!(1.0001));
        assert_eq!(round_to_currency(dec!(0.124999), "USD"), dec!(0.12));
    }

    #[test]
    fn rounding_is_not_bankers() {
        // Banker's rounding would give 0.12 and 2 here.
        assert_eq!(round_to_currency(dec!(0.125), "EUR").to_string(), "0.13");
        assert_eq!(round_to_currency(dec!(2.5), "JPY").to_string(), "3");
    }

    #[test]
    fn rounded_amounts_carry_the_currency_scale() {
        assert_eq!(round_to_currency(dec!(5), "USD").to_string(), "5.00");
        assert_eq!(round_to_currency(dec!(5.1), "KWD").to_string(), "5.100");
        assert_eq!(round_to_currency(dec!(5.00), "JPY").to_string(), "5");
        assert_eq!(round_to_currency(dec!(-0.001), "USD").to_string(), "0.00");
    }

    #[test]
    fn unknown_currency_rounds_to_two_places() {
        assert_eq!(round_to_currency(dec!(1.005), "???").to_string(), "1.01");
    }

    #[test]
    fn prorate_divides_last() {
        // 10 × 1/3 → 3.333…, and three thirds of 10 add back to 10 at cent precision.
        let third = prorate(dec!(10), 1, 3);
        assert_eq!(round_to_currency(third, "USD"), dec!(3.33));
        // An exact tie survives: 0.01 × 1/2 = 0.005 → 0.01 (dividing first could lose it).
        assert_eq!(prorate(dec!(0.01), 1, 2), dec!(0.005));
        assert_eq!(
            round_to_currency(prorate(dec!(0.01), 1, 2), "USD"),
            dec!(0.01)
        );
        // Half a 31-day month in seconds.
        let month = 31 * 86_400;
        assert_eq!(prorate(dec!(31), month / 2, month), dec!(15.5));
        assert_eq!(prorate(dec!(9.99), 0, 100), Decimal::ZERO);
        assert_eq!(prorate(dec!(9.99), 7, 7), dec!(9.99));
    }

    #[test]
    fn prorate_keeps_exact_ties_that_dividing_first_loses() {
        // 5 × 3 / 600 = 0.025 exactly → 0.03. Dividing first gives 0.008333…3 × 3 =
        // 0.024999…9 → 0.02: the bug DESIGN warns about.
        assert_eq!(prorate(dec!(5), 3, 600), dec!(0.025));
        assert_eq!(
            round_to_currency(prorate(dec!(5), 3, 600), "USD"),
            dec!(0.03)
        );
        assert_eq!(
            round_to_currency(dec!(5) / dec!(600) * dec!(3), "USD"),
            dec!(0.02)
        );
        assert_eq!(prorate(dec!(1), 3, 3), Decimal::ONE);
        assert_eq!(
            round_to_currency(prorate(dec!(20), 1, 3), "USD"),
            dec!(6.67)
        );
    }

    #[test]
    fn prorate_zero_denominator_is_zero() {
        assert_eq!(prorate(dec!(100), 5, 0), Decimal::ZERO);
    }

    #[test]
    fn prorate_does_not_panic_on_overflow() {
        let p = prorate(Decimal::MAX, i64::MAX, i64::MAX);
        assert!(p > Decimal::ZERO);
        let q = prorate(Decimal::MAX, 2, 1);
        assert_eq!(q, Decimal::MAX);
    }

    #[test]
    fn scale_check() {
        assert!(has_scale_at_most(dec!(1.50), 1));
        assert!(has_scale_at_most(dec!(0.000000000001), MAX_AMOUNT_SCALE));
        assert!(!has_scale_at_most(dec!(0.0000000000001), MAX_AMOUNT_SCALE));
        assert!(has_scale_at_most(dec!(0.25), MAX_QUANTITY_SCALE));
        assert!(!has_scale_at_most(dec!(0.0000001), MAX_QUANTITY_SCALE));
        assert!(has_scale_at_most(dec!(12), 0));
    }
}
