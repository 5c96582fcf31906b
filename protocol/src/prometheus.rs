//! The Prometheus text exposition format (version 0.0.4), which both `/metrics`
//! pages speak: a writer for the pages and a strict reader for tests and for
//! tools that check a page.
//!
//! Pure: the writer appends to a `String`, the reader takes `&str`.

use std::fmt::Write;

/// `Content-Type` of a page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// Builds a page one metric family at a time.
#[derive(Debug, Default)]
pub struct Page {
    text: String,
}

impl Page {
    pub fn new() -> Self {
        Self::default()
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: MetricType, help: &str, value: f64) {
        self.family(name, kind, help, [(&[][..], value)]);
    }

    /// A family with one sample per label set. Label values are escaped here.
    pub fn family<'a, I>(&mut self, name: &str, kind: MetricType, help: &str, samples: I)
    where
        I: IntoIterator<Item = (&'a [(&'a str, &'a str)], f64)>,
    {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {}", format_value(value));
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// One sample read back from a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Read a page strictly: every sample must belong to a family declared by a
/// `# TYPE` line before it, names and labels must be well formed, values numbers.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut typed: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| ParseError {
            line: i + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(format!("malformed TYPE line {line:?}")));
            };
            if !valid_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(err(format!("unknown type {kind:?}")));
            }
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| err(format!("no value in {line:?}")))?;
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|_| err(format!("value {v:?} is not a number")))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| err(format!("unclosed labels in {line:?}")))?;
                (name, parse_labels(inner).map_err(err)?)
            }
        };
        if !valid_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let family_declared = typed.iter().any(|t| {
            name == t
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(t))
        });
        if !family_declared {
            return Err(err(format!("sample {name} has no TYPE line before it")));
        }
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("malformed labels {s:?}"))?;
        if !valid_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {s:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("bad escape in {s:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_page_reads_back_with_escaped_labels() {
        let mut page = Page::new();
        page.single("x_total", MetricType::Counter, "Things.\nMore.", 42.0);
        page.family(
            "y_seconds",
            MetricType::Gauge,
            "Ages",
            [
                (&[("route", "/a\"b\\c"), ("status", "200")][..], 1.5),
                (&[][..], f64::NAN),
            ],
        );
        let text = page.finish();
        assert!(text.contains("x_total 42\n"), "{text}");
        let samples = parse(&text).expect("parses");
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[1].label("route"), Some("/a\"b\\c"));
        assert_eq!(samples[1].label("status"), Some("200"));
        assert_eq!(samples[1].value, 1.5);
        assert!(samples[2].value.is_nan());
    }

    #[test]
    fn samples_without_a_type_line_or_with_bad_values_are_refused() {
        assert_eq!(parse("x 1\n").expect_err("untyped").line, 1);
        let bad = "# TYPE x gauge\nx one\n";
        assert!(parse(bad).expect_err("bad value").reason.contains("number"));
        let unclosed = "# TYPE x gauge\nx{a=\"1\" 1\n";
        assert!(parse(unclosed).is_err());
    }
}
