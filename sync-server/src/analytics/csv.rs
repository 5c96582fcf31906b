//! CSV rendering (RFC 4180): a header row, then one row per record.

/// One CSV field: quoted when it holds a comma, quote or line break, and
/// prefixed with `'` when a spreadsheet would read it as a formula.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A table from JSON rows: `columns` name the keys, in order; a missing or
/// null value is an empty field.
pub fn render(columns: &[&str], rows: &[serde_json::Value]) -> String {
    let mut out = String::new();
    out.push_str(
        &columns
            .iter()
            .map(|c| field(c))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for r in rows {
        let line: Vec<String> = columns
            .iter()
            .map(|c| match r.get(*c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => field(s),
                Some(v) => field(&v.to_string()),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let rows = [
            json!({"name": "Van, \"blue\"", "km": 12.5, "group": null}),
            json!({"name": "=HYPERLINK()", "km": -3}),
        ];
        assert_eq!(
            render(&["name", "km", "group"], &rows),
            "name,km,group\r\n\"Van, \"\"blue\"\"\",12.5,\r\n'=HYPERLINK(),-3,\r\n"
        );
    }
}
