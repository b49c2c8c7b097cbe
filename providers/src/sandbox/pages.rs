//! The sandbox's hosted pages: plain, self-contained HTML (inline CSS, no scripts, no
//! external assets). Every interpolated string goes through [`escape`].
//!
//! Form actions and links between sandbox pages are relative, so the pages work whatever
//! host name the browser used to reach the server.

use rust_decimal::Decimal;

use crate::pages::STYLE;
pub use crate::pages::{escape, format_amount};

/// A whole document around `body`.
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <title>{title} · Sandbox payments</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <main>\n<div class=\"card\">\n<span class=\"badge\">Sandbox · test mode, no real money</span>\n\
         {body}\n</div>\n</main>\n</body>\n</html>\n",
        title = escape(title),
    )
}

const TEST_CARDS: &str = "<details><summary>Test cards</summary><ul>\
<li><code>4242 4242 4242 4242</code> succeeds</li>\
<li><code>4000 0000 0000 0002</code> is declined</li>\
<li><code>4000 0000 0000 0077</code> stays pending until you settle it</li>\
</ul><p>Any expiry date and CVC are accepted.</p></details>";

const DETAILS_TEST_CARDS: &str = "<details><summary>Test cards</summary>\
<p>Any of these is saved; later payments then go this way:</p><ul>\
<li><code>4242 4242 4242 4242</code> succeed</li>\
<li><code>4000 0000 0000 0002</code> are declined</li>\
<li><code>4000 0000 0000 0077</code> stay pending until settled</li>\
</ul><p>Any expiry date and CVC are accepted.</p></details>";

/// The card fields, the submit button and the error box (if any).
fn card_form(action: &str, button: &str, card_number: &str, error: Option<&str>) -> String {
    let (invalid, described, error_html) = match error {
        Some(e) => (
            "true",
            " aria-describedby=\"card-error\"",
            format!(
                "<p class=\"error\" id=\"card-error\" role=\"alert\">{}</p>\n",
                escape(e)
            ),
        ),
        None => ("false", "", String::new()),
    };
    format!(
        "{error_html}<form method=\"post\" action=\"{action}\">\n\
         <label for=\"card_number\">Card number</label>\n\
         <input id=\"card_number\" name=\"card_number\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-number\" placeholder=\"4242 4242 4242 4242\" required \
         aria-invalid=\"{invalid}\"{described} value=\"{card}\">\n\
         <label for=\"expiry\">Expiry date (MM / YY)</label>\n\
         <input id=\"expiry\" name=\"expiry\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-exp\" placeholder=\"12 / 34\">\n\
         <label for=\"cvc\">Security code (CVC)</label>\n\
         <input id=\"cvc\" name=\"cvc\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-csc\" placeholder=\"123\">\n\
         <button type=\"submit\">{button}</button>\n</form>\n",
        action = escape(action),
        card = escape(card_number),
        button = escape(button),
    )
}

/// What the checkout page shows about the payment.
pub struct CheckoutView<'a> {
    pub id: &'a str,
    pub description: &'a str,
    /// Merchant, plan, and the price after today (empty in old records).
    pub terms: &'a crate::CheckoutTerms,
    pub amount: Decimal,
    pub currency: &'a str,
    pub cancel_url: &'a str,
}

impl CheckoutView<'_> {
    fn header(&self) -> String {
        let amount = if self.amount.is_zero() {
            "<p class=\"note\">Free to start: nothing is charged today; your card is saved for later payments.</p>"
                .to_string()
        } else {
            format!(
                "<p class=\"amount\">{}</p>",
                escape(&format_amount(self.amount, self.currency))
            )
        };
        let merchant = if self.terms.merchant.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"note\" id=\"merchant\">Paying <strong>{}</strong></p>\n",
                escape(&self.terms.merchant)
            )
        };
        let plan = if self.terms.plan.is_empty() {
            String::new()
        } else {
            format!(
                "<p id=\"plan\">Plan: <strong>{}</strong></p>\n",
                escape(&self.terms.plan)
            )
        };
        let summary = self
            .terms
            .summary
            .as_deref()
            .map(|s| format!("<p class=\"note\" id=\"terms\">{}</p>\n", escape(s)))
            .unwrap_or_default();
        format!(
            "{merchant}<h1>{}</h1>\n{plan}{amount}\n{summary}",
            escape(if self.description.is_empty() {
                "Payment"
            } else {
                self.description
            })
        )
    }

    /// A form, not a link: leaving closes the checkout, and the server hears of it before
    /// the browser reaches the cancel URL.
    fn cancel_link(&self) -> String {
        format!(
            "<form method=\"post\" action=\"{}\" class=\"links\">\
             <button type=\"submit\" class=\"link\">Cancel and go back</button></form>\n",
            escape(&format!("{}/abandon", self.id))
        )
    }
}

/// The page with the card form; `error` is shown above it.
pub fn checkout(view: &CheckoutView<'_>, card_number: &str, error: Option<&str>) -> String {
    let button = if view.amount.is_zero() {
        "Save card".to_string()
    } else {
        format!("Pay {}", format_amount(view.amount, view.currency))
    };
    // Relative to `/…/checkout/{id}`: posts back to the same address.
    let action = view.id;
    let body = format!(
        "{}{}{}{TEST_CARDS}",
        view.header(),
        card_form(action, &button, card_number, error),
        view.cancel_link()
    );
    layout("Checkout", &body)
}

/// Shown while a payment made with the "pending" card waits to be settled.
pub fn checkout_pending(view: &CheckoutView<'_>) -> String {
    let settle = format!("{}/settle", view.id);
    let body = format!(
        "{}<p class=\"ok\" role=\"status\"><strong>Payment pending.</strong> \
         The bank has not confirmed this payment yet.</p>\n\
         <p class=\"note\">In the sandbox you decide how it ends:</p>\n\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"success\" value=\"true\">\
         <button type=\"submit\">Approve the payment</button></form>\n\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"success\" value=\"false\">\
         <button type=\"submit\" class=\"secondary\">Decline the payment</button></form>\n{}",
        view.header(),
        view.cancel_link(),
        action = escape(&settle),
    );
    layout("Payment pending", &body)
}

/// Shown for a closed checkout (expired, replaced or abandoned): it takes no card. A payment
/// that was already pending may still be settled (`pending`), as a bank would.
pub fn checkout_closed(view: &CheckoutView<'_>, pending: bool, notice: Option<&str>) -> String {
    let notice = notice
        .map(|n| {
            format!(
                "<p class=\"note\" role=\"alert\"><strong>{}</strong></p>\n",
                escape(n)
            )
        })
        .unwrap_or_default();
    let in_flight = if pending {
        let action = escape(&format!("{}/settle", view.id));
        format!(
            "<p class=\"note\">A payment made before it closed is still pending. If it goes \
             through, the money is refunded. In the sandbox you decide how it ends:</p>\n\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"success\" value=\"true\">\
             <button type=\"submit\">Approve the payment</button></form>\n\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"success\" value=\"false\">\
             <button type=\"submit\" class=\"secondary\">Decline the payment</button></form>\n"
        )
    } else {
        String::new()
    };
    let body = format!(
        "{}<p class=\"error\" role=\"status\"><strong>This checkout is closed.</strong> \
         It expired, was replaced by a newer one, or was cancelled, and it takes no payment.</p>\n\
         {notice}{in_flight}<p class=\"links\"><a href=\"{}\">Go back</a></p>\n",
        view.header(),
        escape(view.cancel_url),
    );
    layout("Checkout closed", &body)
}

/// Shown when a finished checkout page is opened again.
pub fn checkout_done(view: &CheckoutView<'_>, success_url: &str) -> String {
    let body = format!(
        "{}<p class=\"ok\" role=\"status\">This payment is complete.</p>\n\
         <p class=\"links\"><a href=\"{}\">Continue</a></p>\n",
        view.header(),
        escape(success_url)
    );
    layout("Payment complete", &body)
}

/// The page for replacing the stored card.
pub fn payment_details(
    token: &str,
    current_card: Option<&str>,
    return_url: &str,
    card_number: &str,
    error: Option<&str>,
) -> String {
    let current = match current_card {
        Some(c) => format!(
            "<p class=\"note\">Your current card: {}. The new card replaces it for future payments.</p>\n",
            escape(c)
        ),
        None => {
            "<p class=\"note\">The card you enter is used for future payments.</p>\n".to_string()
        }
    };
    let body = format!(
        "<h1>Update your payment details</h1>\n{current}{}\
         <p class=\"links\"><a href=\"{}\">Cancel and go back</a></p>\n{DETAILS_TEST_CARDS}",
        card_form(token, "Save card", card_number, error),
        escape(return_url),
    );
    layout("Payment details", &body)
}

/// Shown when a used payment-details link is opened again.
pub fn payment_details_done(return_url: &str) -> String {
    let body = format!(
        "<h1>Update your payment details</h1>\n\
         <p class=\"ok\" role=\"status\">Your card has been saved.</p>\n\
         <p class=\"links\"><a href=\"{}\">Continue</a></p>\n",
        escape(return_url)
    );
    layout("Payment details", &body)
}

/// A link to `url`, for when a redirect cannot carry it.
pub fn continue_to(url: &str) -> String {
    let body = format!(
        "<h1>Done</h1>\n<p class=\"links\"><a href=\"{}\">Continue</a></p>\n",
        escape(url)
    );
    layout("Done", &body)
}

/// For unknown sessions and links.
pub fn not_found() -> String {
    layout(
        "Not found",
        "<h1>This payment page does not exist</h1>\n\
         <p class=\"note\">The link may be mistyped or incomplete. \
         Start again from the application.</p>\n",
    )
}

/// When the sandbox cannot reach its storage (the server's database).
pub fn unavailable() -> String {
    layout(
        "Try again",
        "<h1>This payment page is not available right now</h1>\n\
         <p class=\"note\">The sandbox could not reach its storage. \
         Wait a moment and reload the page.</p>\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn amounts_show_two_decimals_and_upper_case_currency() {
        assert_eq!(format_amount(Decimal::new(125, 1), "eur"), "12.50 EUR");
        assert_eq!(format_amount(Decimal::new(7, 0), "USD"), "7.00 USD");
        assert_eq!(format_amount(Decimal::new(1234, 3), "usd"), "1.234 USD");
    }

    #[test]
    fn interpolated_strings_are_escaped() {
        let view = CheckoutView {
            id: "sbx_cs_1",
            description: "<script>alert(1)</script>",
            terms: &crate::CheckoutTerms {
                merchant: "<b>M</b>".into(),
                plan: "<i>P</i>".into(),
                summary: Some("<u>S</u>".into()),
            },
            amount: Decimal::new(1000, 2),
            currency: "eur",
            cancel_url: "http://x/?a=1&b=\"2\"",
        };
        let page = checkout(&view, "\"><b>", Some("<i>bad</i>"));
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>M") && !page.contains("<i>P") && !page.contains("<u>S"));
        assert!(!page.contains("<i>bad"));
        assert!(!page.contains("\"><b>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("10.00 EUR"));
        assert!(page.contains("role=\"alert\""));
        // The cancel URL appears as a link on the closed page.
        let closed = checkout_closed(&view, true, Some("<i>gone</i>"));
        assert!(closed.contains("href=\"http://x/?a=1&amp;b=&quot;2&quot;\""));
        assert!(!closed.contains("<i>gone"));
        assert!(!closed.contains("<script>"));
    }

    #[test]
    fn zero_amount_says_nothing_is_charged() {
        let view = CheckoutView {
            id: "sbx_cs_1",
            description: "Starter",
            terms: &crate::CheckoutTerms::default(),
            amount: Decimal::ZERO,
            currency: "eur",
            cancel_url: "/",
        };
        let page = checkout(&view, "", None);
        assert!(page.contains("nothing is charged today; your card is saved for later payments"));
        assert!(page.contains("Save card"));
    }
}
