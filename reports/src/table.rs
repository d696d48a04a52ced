//! One table type, written three ways (aligned text, Markdown, HTML), so
//! every renderer shows the same rows and columns.

use crate::format::{escape_html, markdown_inert};
use std::fmt::Write as _;

/// Where a column's text sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// How a row reads: the HTML colours it, text and Markdown leave it alone
/// (their marks and `FAIL` already say it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Good,
    Bad,
}

impl Tone {
    fn class(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("good"),
            Tone::Bad => Some("bad"),
        }
    }
}

/// Column titles and rows of already formatted cells. A cell may hold
/// several lines (`\n`); text output keeps cells on one line, so callers
/// keep multi-line cells out of tables meant for the terminal.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    head: Vec<(String, Align)>,
    rows: Vec<(Vec<String>, Tone)>,
}

impl Table {
    /// A table with these columns and no rows.
    pub(crate) fn new(head: &[(&str, Align)]) -> Table {
        Table {
            head: head.iter().map(|(t, a)| ((*t).to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; it must have one cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>, tone: Tone) {
        assert_eq!(cells.len(), self.head.len(), "one cell per column");
        self.rows.push((cells, tone));
    }

    /// Whether there are no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Aligned columns, two spaces apart, each line starting with `indent`.
    pub(crate) fn to_text(&self, indent: &str) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.head.iter().map(|(t, _)| width(t)).collect();
        for (cells, _) in &self.rows {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let head: Vec<&str> = self.head.iter().map(|(t, _)| t.as_str()).collect();
        let lines = std::iter::once(head).chain(
            self.rows
                .iter()
                .map(|(c, _)| c.iter().map(String::as_str).collect()),
        );
        for cells in lines {
            let mut line = String::from(indent);
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.head[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A GitHub-flavoured Markdown table: `|` escaped, no cell able to open
    /// an HTML tag, lines joined by `<br>`.
    pub(crate) fn to_markdown(&self) -> String {
        let cell = |s: &str| markdown_inert(s).replace('|', "\\|").replace('\n', "<br>");
        let mut out = String::from("|");
        for (title, _) in &self.head {
            let _ = write!(out, " {} |", cell(title));
        }
        out.push_str("\n|");
        for (_, align) in &self.head {
            out.push_str(match align {
                Align::Left => " --- |",
                Align::Right => " ---: |",
            });
        }
        out.push('\n');
        for (cells, _) in &self.rows {
            out.push('|');
            for c in cells {
                let _ = write!(out, " {} |", cell(c));
            }
            out.push('\n');
        }
        out
    }

    /// An HTML `<table>` with CSS class `class`; every cell escaped.
    pub(crate) fn to_html(&self, class: &str) -> String {
        let cell = |s: &str| escape_html(s).replace('\n', "<br>");
        let align = |a: Align| match a {
            Align::Left => "",
            Align::Right => " class=\"num\"",
        };
        let mut out = format!("<table class=\"{}\">\n<thead><tr>", escape_html(class));
        for (title, a) in &self.head {
            let _ = write!(out, "<th{}>{}</th>", align(*a), cell(title));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (cells, tone) in &self.rows {
            match tone.class() {
                Some(c) => {
                    let _ = write!(out, "<tr class=\"{c}\">");
                }
                None => out.push_str("<tr>"),
            }
            for (c, (_, a)) in cells.iter().zip(&self.head) {
                let _ = write!(out, "<td{}>{}</td>", align(*a), cell(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["order → confirmed".into(), "7".into()], Tone::Plain);
        t.row(vec!["a|b<c>".into(), "12345".into()], Tone::Bad);
        t
    }

    // Proves columns line up by characters (not bytes) and numbers sit right.
    #[test]
    fn text_aligns_columns() {
        let text = sample().to_text("  ");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  name                   n");
        assert_eq!(lines[1], "  order → confirmed      7");
        assert_eq!(lines[2], "  a|b<c>             12345");
    }

    // Proves Markdown escapes pipes and HTML escapes markup and marks bad rows.
    #[test]
    fn markdown_and_html_escape() {
        let t = sample();
        assert!(t.to_markdown().contains("| a\\|b\\<c> | 12345 |"));
        assert!(t.to_markdown().contains("| --- | ---: |"));
        let html = t.to_html("x");
        assert!(html.contains("<tr class=\"bad\"><td>a|b&lt;c&gt;</td>"));
        assert!(!html.contains("<c>"));
    }
}
