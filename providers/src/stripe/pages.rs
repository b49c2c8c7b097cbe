//! The stripe provider's hosted pages: plain HTML with inline CSS. The payment form loads
//! Stripe.js, mounts its card element and confirms the intent in the browser, so the card
//! goes to Stripe and never to us; the form then posts only the confirmed intent's id.
//! Every interpolated string goes through [`escape`].
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
#card-element{padding:.7rem .8rem;border:2px solid #8792a2;border-radius:8px;background:#fff;min-height:3rem}
#card-element input{width:auto;padding:.2rem .3rem;margin:.1rem;border-width:1px}
input{width:100%;font:inherit;padding:.7rem .8rem;border:2px solid #8792a2;border-radius:8px;background:#fff;color:inherit}
input:focus{outline:3px solid #635bff;outline-offset:1px;border-color:#635bff}
input[aria-invalid=true]{border-color:#b3261e}
button{display:block;width:100%;font:inherit;font-weight:700;font-size:1.15rem;margin-top:1.5rem;padding:.9rem 1rem;border:0;border-radius:8px;background:#4b45d6;color:#fff;cursor:pointer}
button:hover{background:#3a35b0}
button:focus{outline:3px solid #1a1f36;outline-offset:2px}
button.secondary{background:#fff;color:#4f566b;border:2px solid #8792a2;font-size:1rem;margin-top:.75rem;padding:.6rem 1rem}
.error[hidden]{display:none}
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

/// Stripe's test cards, shown with a test key only.
const TEST_CARDS: &str = "<details><summary>Test cards</summary><ul>\
<li><code>4242 4242 4242 4242</code> succeeds</li>\
<li><code>4000 0000 0000 0002</code> is declined</li>\
<li><code>4000 0000 0000 0341</code> is saved, then declined when charged</li>\
<li><code>4000 0025 0000 3155</code> asks for 3-D Secure</li>\
</ul><p>Use any future expiry date and any three-digit CVC.</p></details>";

/// Mounts the card element and confirms the intent with Stripe.js, then posts the intent's
/// id (and Stripe.js's message, if it failed) to the page's own address. Stripe.js's own
/// validation errors (an incomplete number) stay in the browser.
const SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('pay');
  var box = document.getElementById('card-error');
  var button = document.getElementById('pay-button');
  var stripe = Stripe(form.dataset.key);
  var mode = form.dataset.mode;
  var card = null;
  if (mode === 'setup') {
    card = stripe.elements().create('card');
    card.mount('#card-element');
  }
  function show(message) {
    box.textContent = message;
    box.hidden = false;
    button.disabled = false;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    button.disabled = true;
    var secret = form.dataset.secret;
    var confirming = mode === 'setup'
      ? stripe.confirmCardSetup(secret, { payment_method: { card: card } })
      : stripe.confirmCardPayment(secret);
    Promise.resolve(confirming).catch(function (e) {
      return { error: { message: String((e && e.message) || e) } };
    }).then(function (result) {
      var error = result && result.error;
      if (error && error.type === 'validation_error') {
        show(error.message);
        return;
      }
      form.elements.message.value = error
        ? String(error.message || 'The card was not accepted.')
        : '';
      HTMLFormElement.prototype.submit.call(form);
    });
  });
})();
"#;

/// How a payment form uses Stripe.js.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Mounts the card element and saves the card with `confirmCardSetup`.
    Setup,
    /// The bank wants the customer to confirm a payment: `confirmCardPayment`.
    Authenticate,
}

/// What the browser needs to run Stripe.js for one intent.
pub struct StripeJs<'a> {
    pub js_url: &'a str,
    pub publishable_key: &'a str,
    /// The client secret of `intent`, which Stripe.js confirms.
    pub client_secret: &'a str,
    pub intent: &'a str,
    pub mode: Mode,
    /// Shows Stripe's test cards.
    pub test_mode: bool,
}

/// How the page offers a way out.
pub enum Leave<'a> {
    /// A button that POSTs to this (relative) address, e.g. to cancel a checkout.
    Post { action: &'a str, label: &'a str },
    /// A plain link back.
    Link { href: &'a str, label: &'a str },
}

/// What a payment page shows.
pub struct FormView<'a> {
    pub title: &'a str,
    pub heading: &'a str,
    /// `12.50 USD`, or `None` when nothing is charged now.
    pub amount: Option<&'a str>,
    /// Merchant, plan and what follows today's payment, in one line.
    pub terms: Option<&'a str>,
    pub note: Option<&'a str>,
    /// Where the form posts, relative to the page.
    pub action: &'a str,
    pub button: &'a str,
    pub leave: Leave<'a>,
}

/// The payment page: Stripe.js's card element (or the bank's confirmation) and a form that
/// posts the confirmed intent's id; `error` is shown above it.
pub fn payment_form(view: &FormView<'_>, stripe: &StripeJs<'_>, error: Option<&str>) -> String {
    let (hidden, error_text) = match error {
        Some(e) => ("", escape(e)),
        None => (" hidden", String::new()),
    };
    let amount = match view.amount {
        Some(a) => format!("<p class=\"amount\">{}</p>\n", escape(a)),
        None => String::new(),
    };
    let note = match view.note {
        Some(n) => format!("<p class=\"note\">{}</p>\n", escape(n)),
        None => String::new(),
    };
    let note = match view.terms {
        Some(t) => format!("<p class=\"note\" id=\"terms\">{}</p>\n{note}", escape(t)),
        None => note,
    };
    let leave = match view.leave {
        Leave::Post { action, label } => format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\" class=\"secondary\" \
             id=\"leave\">{}</button></form>\n",
            escape(action),
            escape(label)
        ),
        Leave::Link { href, label } => format!(
            "<p class=\"links\"><a id=\"leave\" href=\"{}\">{}</a></p>\n",
            escape(href),
            escape(label)
        ),
    };
    let (mode, card) = match stripe.mode {
        Mode::Setup => (
            "setup",
            "<label for=\"card-element\">Card</label>\n<div id=\"card-element\"></div>\n",
        ),
        Mode::Authenticate => ("authenticate", ""),
    };
    let test_cards = if stripe.test_mode { TEST_CARDS } else { "" };
    let body = format!(
        "<h1>{heading}</h1>\n{amount}{note}\
         <p class=\"error\" id=\"card-error\" role=\"alert\"{hidden}>{error_text}</p>\n\
         <form id=\"pay\" method=\"post\" action=\"{action}\" data-key=\"{key}\" \
         data-secret=\"{secret}\" data-mode=\"{mode}\">\n{card}\
         <input type=\"hidden\" name=\"intent\" value=\"{intent}\">\n\
         <input type=\"hidden\" name=\"message\" value=\"\">\n\
         <button type=\"submit\" id=\"pay-button\">{button}</button>\n</form>\n{leave}{test_cards}\
         <script src=\"{js_url}\"></script>\n<script>{SCRIPT}</script>\n",
        heading = escape(view.heading),
        action = escape(view.action),
        key = escape(stripe.publishable_key),
        secret = escape(stripe.client_secret),
        intent = escape(stripe.intent),
        button = escape(view.button),
        js_url = escape(stripe.js_url),
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
    fn interpolated_text_is_escaped_and_no_card_field_is_posted() {
        let view = FormView {
            title: "t",
            heading: "<script>alert(1)</script>",
            amount: Some("1 & 2"),
            terms: None,
            note: None,
            action: "pi_1\"x",
            button: "Pay",
            leave: Leave::Link {
                href: "https://x/?a=1&b=\"2\"",
                label: "Back",
            },
        };
        let stripe = StripeJs {
            js_url: "http://127.0.0.1:8420/js.stripe.com/v3/",
            publishable_key: "pk_test_1",
            client_secret: "seti_1_secret_\"x",
            intent: "seti_1",
            mode: Mode::Setup,
            test_mode: true,
        };
        let html = payment_form(&view, &stripe, Some("<b>declined</b>"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("1 &amp; 2"));
        assert!(html.contains("action=\"pi_1&quot;x\""));
        assert!(html.contains("data-secret=\"seti_1_secret_&quot;x\""));
        assert!(html.contains("&lt;b&gt;declined&lt;/b&gt;"));
        assert!(html.contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""));
        assert!(html.contains("<script src=\"http://127.0.0.1:8420/js.stripe.com/v3/\">"));
        assert!(html.contains("confirmCardSetup"));
        // The only named fields are the intent's id and Stripe.js's message.
        let names: Vec<&str> = html
            .split("name=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|n| *n != "viewport" && *n != "robots")
            .collect();
        assert_eq!(names, ["intent", "message"]);
        let live = StripeJs {
            test_mode: false,
            mode: Mode::Authenticate,
            ..stripe
        };
        let html = payment_form(&view, &live, None);
        assert!(!html.contains("Test cards"));
        assert!(!html.contains("card-element\""));
        assert!(html.contains("role=\"alert\" hidden"));
    }
}
