//! The invoice as PDF, written with `pdf-writer`: A4 pages, the standard Helvetica fonts
//! (nothing embedded), text in WinAnsi encoding, uncompressed content streams.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

use super::html::{date, describe, span};
use super::{InvoiceDocument, plain_amount};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Text in the standard fonts' WinAnsi encoding; what it cannot show becomes `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        })
        .collect()
}

/// Text placed line by line, top to bottom, onto as many pages as it takes.
struct Writer {
    pages: Vec<Content>,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        let mut w = Writer {
            pages: Vec::new(),
            y: 0.0,
        };
        w.new_page();
        w
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = HEIGHT - MARGIN;
    }

    fn page(&mut self) -> &mut Content {
        self.pages.last_mut().expect("a page")
    }

    /// Moves down by `by` points, onto a new page when the bottom margin is reached.
    fn down(&mut self, by: f32) {
        self.y -= by;
        if self.y < MARGIN {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, font: Name<'static>, size: f32, text: &str) {
        let y = self.y;
        let bytes = win_ansi(text);
        self.page()
            .begin_text()
            .set_font(font, size)
            .next_line(x, y)
            .show(Str(&bytes))
            .end_text();
    }

    /// One line of text at the left margin, then down a line.
    fn line(&mut self, font: Name<'static>, size: f32, text: &str) {
        self.text(MARGIN, font, size, text);
        self.down(size * 1.4);
    }

    fn rule(&mut self) {
        let y = self.y + 4.0;
        self.page()
            .move_to(MARGIN, y)
            .line_to(WIDTH - MARGIN, y)
            .stroke();
        self.down(8.0);
    }
}

pub fn invoice_pdf(doc: &InvoiceDocument) -> Vec<u8> {
    let mut w = Writer::new();
    w.line(BOLD, 20.0, &format!("Invoice {}", doc.number));
    w.line(REGULAR, 10.0, &format!("Status: {}", doc.status));
    w.down(6.0);
    w.line(BOLD, 11.0, &doc.merchant.name);
    for l in &doc.merchant.address {
        w.line(REGULAR, 10.0, l);
    }
    w.down(10.0);
    w.line(BOLD, 10.0, "Bill to");
    w.line(BOLD, 11.0, &doc.customer_name);
    for l in &doc.customer_address {
        w.line(REGULAR, 10.0, l);
    }
    w.line(REGULAR, 10.0, &doc.customer_email);
    w.down(10.0);
    w.line(REGULAR, 10.0, &format!("Number: {}", doc.number));
    w.line(REGULAR, 10.0, &format!("Issued: {}", date(doc.issued_at)));
    w.line(
        REGULAR,
        10.0,
        &format!("Period: {}", span(doc.period_start, doc.period_end)),
    );
    if let Some(plan) = &doc.plan {
        w.line(REGULAR, 10.0, &format!("Plan: {plan}"));
    }
    w.line(REGULAR, 10.0, &format!("Currency: {}", doc.currency));
    w.down(10.0);

    let (item, period, qty, amount) = (MARGIN, MARGIN + 190.0, MARGIN + 330.0, MARGIN + 430.0);
    for (x, h) in [
        (item, "Item"),
        (period, "Period"),
        (qty, "Qty x unit price"),
        (amount, "Amount"),
    ] {
        w.text(x, BOLD, 9.0, h);
    }
    w.down(14.0);
    w.rule();
    for l in &doc.lines {
        w.text(item, REGULAR, 9.0, &l.product);
        w.text(period, REGULAR, 9.0, &span(l.start, l.end));
        w.text(
            qty,
            REGULAR,
            9.0,
            &format!(
                "{} x {}",
                l.quantity.normalize(),
                plain_amount(l.unit_amount)
            ),
        );
        w.text(
            amount,
            REGULAR,
            9.0,
            &format!("{} {}", plain_amount(l.amount), doc.currency),
        );
        w.down(11.0);
        w.text(item, REGULAR, 8.0, &describe(&l.kind, &l.phase));
        w.down(14.0);
    }
    w.rule();
    w.text(item, BOLD, 11.0, "Total");
    w.text(
        amount,
        BOLD,
        11.0,
        &format!("{} {}", plain_amount(doc.total), doc.currency),
    );

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let first = 5;
    let ids: Vec<(Ref, Ref)> = (0..w.pages.len() as i32)
        .map(|i| (Ref::new(first + 2 * i), Ref::new(first + 2 * i + 1)))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(ids.iter().map(|(page, _)| *page))
        .count(ids.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for ((page_id, content_id), content) in ids.iter().zip(w.pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT))
            .parent(tree)
            .contents(*content_id);
        let mut resources = page.resources();
        resources.fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(resources);
        drop(page);
        let data = content.finish();
        pdf.stream(*content_id, &data);
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::win_ansi;

    #[test]
    fn text_is_encoded_for_the_standard_fonts() {
        assert_eq!(win_ansi("A–B €1 ø"), b"A\x96B \x801 \xf8");
        assert_eq!(win_ansi("日本"), b"??");
    }
}
