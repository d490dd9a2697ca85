//! A small HTML writer for the run reports: one self-contained page (inline CSS
//! and SVG, no script, no external reference) where every text is escaped.

use std::fmt::Write;

/// `text` with the five HTML special characters escaped (safe in text and in quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #282828; background: #f6f7f9; margin: 0; }
header { background: #1f3b63; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; opacity: .85; font-size: 14px; }
main { max-width: 1360px; margin: 0 auto; padding: 16px 24px 40px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; margin-bottom: 16px; }
main > section { margin-bottom: 16px; }
section { min-width: 0; overflow-x: auto; background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 14px 18px; }
h2 { font-size: 17px; margin: 0 0 8px; font-weight: 600; }
p.note { font-size: 13px; color: #5a5f66; margin: 6px 0 0; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eceef1; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #b42318; font-weight: 600; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 16px; }
.kpi { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 10px 16px; min-width: 130px; }
.kpi b { display: block; font-size: 20px; }
.kpi span { font-size: 12px; color: #5a5f66; }
"#;

/// A report page being written.
pub struct Page {
    body: String,
}

impl Page {
    /// Starts a page; `title` and `subtitle` are plain text.
    pub fn new(title: &str, subtitle: &str) -> Page {
        let mut body = String::new();
        let _ = write!(
            body,
            "<header><h1>{}</h1><p>{}</p></header>\n<main>\n",
            escape(title),
            escape(subtitle)
        );
        Page { body }
    }

    /// Headline figures: (value, caption) pairs, plain text.
    pub fn kpis(&mut self, items: &[(String, &str)]) {
        self.body.push_str("<div class=\"kpis\">");
        for (v, c) in items {
            let _ = write!(
                self.body,
                "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
                escape(v),
                escape(c)
            );
        }
        self.body.push_str("</div>\n");
    }

    /// Opens a grid of sections.
    pub fn grid(&mut self) {
        self.body.push_str("<div class=\"grid\">\n");
    }

    /// Closes a grid.
    pub fn end_grid(&mut self) {
        self.body.push_str("</div>\n");
    }

    /// A section holding a heading, trusted markup from this module (tables, charts), and a note.
    pub fn section(&mut self, heading: &str, content: &str, note: &str) {
        let _ = write!(
            self.body,
            "<section><h2>{}</h2>\n{content}",
            escape(heading)
        );
        if !note.is_empty() {
            let _ = write!(self.body, "<p class=\"note\">{}</p>", escape(note));
        }
        self.body.push_str("</section>\n");
    }

    /// The finished document.
    pub fn finish(self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}</main>\n</body>\n</html>\n",
            escape(title),
            self.body
        )
    }
}

/// A chart: an SVG string produced by `charts` wrapped in a figure with a text alternative.
pub fn figure(svg: &str, label: &str) -> String {
    format!(
        "<figure role=\"img\" aria-label=\"{}\">{svg}</figure>\n",
        escape(label)
    )
}

/// A cell of [`table`]: text, or a number aligned right.
pub enum Cell {
    /// Left-aligned text.
    Text(String),
    /// Right-aligned figure.
    Num(String),
    /// Text with a status class (`ok` or `bad`).
    Status(String, bool),
}

/// A table of plain-text cells under plain-text headers (a header starting with `#` is numeric).
pub fn table(headers: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in headers {
        match h.strip_prefix('#') {
            Some(h) => {
                let _ = write!(s, "<th class=\"n\">{}</th>", escape(h));
            }
            None => {
                let _ = write!(s, "<th>{}</th>", escape(h));
            }
        }
    }
    s.push_str("</tr></thead><tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = match c {
                Cell::Text(t) => write!(s, "<td>{}</td>", escape(t)),
                Cell::Num(t) => write!(s, "<td class=\"n\">{}</td>", escape(t)),
                Cell::Status(t, ok) => write!(
                    s,
                    "<td class=\"{}\">{}</td>",
                    if *ok { "ok" } else { "bad" },
                    escape(t)
                ),
            };
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape("Loyal Customers"), "Loyal Customers");
    }

    #[test]
    fn tables_escape_every_cell() {
        let t = table(
            &["name", "#n"],
            &[vec![Cell::Text("<b>".into()), Cell::Num("1 & 2".into())]],
        );
        assert!(t.contains("&lt;b&gt;") && t.contains("1 &amp; 2") && !t.contains("<b>"));
        assert!(t.contains("<th class=\"n\">n</th>"));
    }
}
