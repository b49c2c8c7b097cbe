//! What every hosted page shares: escaping, amounts and the look (one inline style sheet,
//! no external assets). The sandbox's pages, the server's invoice documents and its
//! customer portal use it, so they look alike.

use rust_decimal::Decimal;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12.5`, `EUR` → `12.50 EUR`.
pub fn format_amount(amount: Decimal, currency: &str) -> String {
    let mut a = amount;
    if a.scale() < 2 {
        a.rescale(2);
    }
    format!("{a} {}", currency.to_uppercase())
}

/// What a checkout page says besides the amount, in one line: "Paying Acme · Plan: Pro ·
/// Free for 14 days, then 12.50 USD per month" (None when nothing is known).
pub fn terms_line(t: &crate::CheckoutTerms) -> Option<String> {
    let mut parts = Vec::new();
    if !t.merchant.is_empty() {
        parts.push(format!("Paying {}", t.merchant));
    }
    if !t.plan.is_empty() {
        parts.push(format!("Plan: {}", t.plan));
    }
    parts.extend(t.summary.clone());
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The style sheet of the hosted pages (inline in each page).
pub const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1b1f24;font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:30rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #d6d9de;border-radius:12px;padding:1.5rem}
.badge{display:inline-block;background:#fff4ce;color:#5c4400;border:1px solid #e5c75a;border-radius:999px;padding:.1rem .7rem;font-size:.85rem;font-weight:600}
h1{font-size:1.5rem;margin:.75rem 0 .25rem}
.amount{font-size:2rem;font-weight:700;margin:.25rem 0}
.note{color:#46505c;margin:.25rem 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .3rem}
input{width:100%;font:inherit;padding:.7rem .8rem;border:2px solid #8a939e;border-radius:8px;background:#fff;color:inherit}
input:focus{outline:3px solid #2f6feb;outline-offset:1px;border-color:#2f6feb}
input[aria-invalid=true]{border-color:#b3261e}
button{display:block;width:100%;font:inherit;font-weight:700;font-size:1.15rem;margin-top:1.5rem;padding:.9rem 1rem;border:0;border-radius:8px;background:#1f5fd6;color:#fff;cursor:pointer}
button:hover{background:#174bb0}
button:focus{outline:3px solid #1b1f24;outline-offset:2px}
button.secondary{background:#fff;color:#b3261e;border:2px solid #b3261e}
button.secondary:hover{background:#fdecea}
button.link{display:inline;width:auto;margin:0;padding:0;background:none;color:#1f5fd6;font-weight:400;font-size:inherit;text-decoration:underline}
button.link:hover{background:none;color:#174bb0}
.error{background:#fdecea;color:#8c1d18;border:1px solid #f1b2ad;border-radius:8px;padding:.75rem 1rem;margin:1rem 0 0}
.ok{background:#e7f5ec;color:#0f5223;border:1px solid #a9d8b8;border-radius:8px;padding:.75rem 1rem}
.links{text-align:center;margin:1.25rem 0 0}
a{color:#1f5fd6}
a:focus{outline:3px solid #2f6feb;outline-offset:2px}
details{margin-top:1.5rem;color:#46505c;font-size:.95rem}
summary{cursor:pointer}
code{font-size:.95em}
"#;
