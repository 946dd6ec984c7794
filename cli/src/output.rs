//! What a command prints: an [`Output`] holds both renderings, text for
//! people and one JSON object for scripts; `main` picks one. Also the small
//! helpers the text renderings share: aligned tables and UTC timestamps.
//!
//! Invariant: commands never print; everything they say goes through here,
//! so `--json` output is always exactly one object.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A command's result, rendered both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Text for a terminal, without the final newline.
    pub human: String,
    /// Exactly one JSON object.
    pub json: Value,
}

impl Output {
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Output { human: human.into(), json }
    }

    pub fn render(&self, json: bool) -> String {
        if json {
            self.json.to_string()
        } else {
            self.human.clone()
        }
    }
}

/// Left-aligned columns separated by two spaces, with a header row.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|header| (*header).to_owned()).collect();
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| {
                let line: Vec<String> =
                    row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
                line.join("  ").trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `Some(7)` as "7", `None` as "-".
pub fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Unix milliseconds as RFC 3339 UTC, to the second: `2024-02-29T12:00:00Z`.
pub fn utc_time(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`), so the CLI needs no date
/// crate for one timestamp column.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let mut table = Table::new(&["ID", "NAME", "NOTE"]);
        table.row(vec!["1".into(), "alice".into(), String::new()]);
        table.row(vec!["22".into(), "b".into(), "x".into()]);
        assert_eq!(table.render(), "ID  NAME   NOTE\n1   alice\n22  b      x");
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(utc_time(4_107_542_400_000), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn json_output_is_one_line() {
        let output = Output::new("done", json!({"a": [1, 2], "b": null}));
        assert_eq!(output.render(true), r#"{"a":[1,2],"b":null}"#);
        assert_eq!(output.render(false), "done");
    }
}
