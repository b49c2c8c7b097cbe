//! The stripe provider's hosted pages: plain, self-contained HTML (inline CSS, no scripts,
//! no external assets). Every interpolated string goes through [`escape`].
//!
//! Form actions are relative to the page's own address, so the pages work under whatever
//! host and mount the browser used.

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

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#f6f7fb;color:#1a1f36;font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:30rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #d5d9e2;border-radius:12px;padding:1.5rem}
.badge{display:inline-block;background:#eef0fd;color:#3a3f9e;border:1px solid #b9bdf2;border-radius:999px;padding:.1rem .7rem;font-size:.85rem;font-weight:600}
h1{font-size:1.5rem;margin:.75rem 0 .25rem}
.amount{font-size:2rem;font-weight:700;margin:.25rem 0}
.note{color:#4f566b;margin:.25rem 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .3rem}
input{width:100%;font:inherit;padding:.7rem .8rem;border:2px solid #8792a2;border-radius:8px;background:#fff;color:inherit}
input:focus{outline:3px solid #635bff;outline-offset:1px;border-color:#635bff}
input[aria-invalid=true]{border-color:#b3261e}
button{display:block;width:100%;font:inherit;font-weight:700;font-size:1.15rem;margin-top:1.5rem;padding:.9rem 1rem;border:0;border-radius:8px;background:#4b45d6;color:#fff;cursor:pointer}
button:hover{background:#3a35b0}
button:focus{outline:3px solid #1a1f36;outline-offset:2px}
button.secondary{background:#fff;color:#4f566b;border:2px solid #8792a2;font-size:1rem;margin-top:.75rem;padding:.6rem 1rem}
.error{background:#fdecea;color:#8c1d18;border:1px solid #f1b2ad;border-radius:8px;padding:.75rem 1rem;margin:1rem 0 0}
.ok{background:#e7f5ec;color:#0f5223;border:1px solid #a9d8b8;border-radius:8px;padding:.75rem 1rem}
.links{text-align:center;margin:1.25rem 0 0}
a{color:#4b45d6}
a:focus{outline:3px solid #635bff;outline-offset:2px}
details{margin-top:1.5rem;color:#4f566b;font-size:.95rem}
summary{cursor:pointer}
code{font-size:.95em}
"#;

/// A whole document around `body`.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <main>\n<div class=\"card\">\n<span class=\"badge\">Payments by Stripe</span>\n\
         {body}\n</div>\n</main>\n</body>\n</html>\n",
        title = escape(title),
    )
}

const TEST_CARDS: &str = "<details><summary>Test cards</summary><ul>\
<li><code>4242 4242 4242 4242</code> succeeds</li>\
<li><code>4000 0000 0000 0002</code> is declined</li>\
<li><code>4000 0000 0000 0341</code> is saved, then declined when charged</li>\
</ul><p>Use any future expiry date and any three-digit CVC.</p></details>";

/// How the page offers a way out.
pub enum Leave<'a> {
    /// A button that POSTs to this (relative) address, e.g. to cancel a checkout.
    Post { action: &'a str, label: &'a str },
    /// A plain link back.
    Link { href: &'a str, label: &'a str },
}

/// What a card-form page shows.
pub struct FormView<'a> {
    pub title: &'a str,
    pub heading: &'a str,
    /// `12.50 USD`, or `None` when nothing is charged now.
    pub amount: Option<&'a str>,
    pub note: Option<&'a str>,
    /// Where the form posts, relative to the page.
    pub action: &'a str,
    pub button: &'a str,
    pub leave: Leave<'a>,
}

/// The page with the card form; `error` is shown above it and `card_number` is kept.
pub fn card_form(view: &FormView<'_>, card_number: &str, error: Option<&str>) -> String {
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
    let amount = match view.amount {
        Some(a) => format!("<p class=\"amount\">{}</p>\n", escape(a)),
        None => String::new(),
    };
    let note = match view.note {
        Some(n) => format!("<p class=\"note\">{}</p>\n", escape(n)),
        None => String::new(),
    };
    let leave = match view.leave {
        Leave::Post { action, label } => format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\" class=\"secondary\">{}\
             </button></form>\n",
            escape(action),
            escape(label)
        ),
        Leave::Link { href, label } => format!(
            "<p class=\"links\"><a href=\"{}\">{}</a></p>\n",
            escape(href),
            escape(label)
        ),
    };
    let body = format!(
        "<h1>{heading}</h1>\n{amount}{note}{error_html}\
         <form method=\"post\" action=\"{action}\">\n\
         <label for=\"card_number\">Card number</label>\n\
         <input id=\"card_number\" name=\"card_number\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-number\" placeholder=\"4242 4242 4242 4242\" required \
         aria-invalid=\"{invalid}\"{described} value=\"{card}\">\n\
         <label for=\"expiry\">Expiry date (MM / YY)</label>\n\
         <input id=\"expiry\" name=\"expiry\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-exp\" placeholder=\"12 / 34\" required>\n\
         <label for=\"cvc\">Security code (CVC)</label>\n\
         <input id=\"cvc\" name=\"cvc\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-csc\" placeholder=\"123\" required>\n\
         <button type=\"submit\">{button}</button>\n</form>\n{leave}{TEST_CARDS}",
        heading = escape(view.heading),
        action = escape(view.action),
        card = escape(card_number),
        button = escape(view.button),
    );
    layout(view.title, &body)
}

/// A page with a message and one link onwards (a finished or cancelled session).
pub fn message(title: &str, text: &str, ok: bool, href: Option<&str>, label: &str) -> String {
    let class = if ok { "ok" } else { "error" };
    let link = match href {
        Some(h) => format!(
            "<p class=\"links\"><a href=\"{}\">{}</a></p>\n",
            escape(h),
            escape(label)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>{}</h1>\n<p class=\"{class}\" role=\"status\">{}</p>\n{link}",
        escape(title),
        escape(text)
    );
    layout(title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let view = FormView {
            title: "t",
            heading: "<script>alert(1)</script>",
            amount: Some("1 & 2"),
            note: None,
            action: "pi_1\"x",
            button: "Pay",
            leave: Leave::Link {
                href: "https://x/?a=1&b=\"2\"",
                label: "Back",
            },
        };
        let html = card_form(&view, "4242'", Some("<b>declined</b>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("1 &amp; 2"));
        assert!(html.contains("action=\"pi_1&quot;x\""));
        assert!(html.contains("value=\"4242&#39;\""));
        assert!(html.contains("&lt;b&gt;declined&lt;/b&gt;"));
        assert!(html.contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""));
    }
}
