//! Diagnostics with file:line:column positions, and the collector the decoder reports into.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (not bytes).
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Converts byte offsets into 1-based line and character column.
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        SourceMap { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

/// Collects the diagnostics of one source text.
pub(crate) struct Report<'a> {
    file: &'a str,
    map: SourceMap<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Report {
            file,
            map: SourceMap::new(text),
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, severity: Severity, offset: usize, message: impl Into<String>) {
        let (line, column) = self.map.position(offset);
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    pub(crate) fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.push(Severity::Error, offset, message);
    }

    pub(crate) fn warning(&mut self, offset: usize, message: impl Into<String>) {
        self.push(Severity::Warning, offset, message);
    }

    /// `line:column` of an offset, for messages that point at a second place.
    pub(crate) fn describe_position(&self, offset: usize) -> String {
        let (line, column) = self.map.position(offset);
        format!("{line}:{column}")
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics, in source order (stable for diagnostics at the same place).
    pub(crate) fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let map = SourceMap::new("ab\nçd\r\n\nx");
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(2), (1, 3));
        assert_eq!(map.position(3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(map.position(5), (2, 2));
        assert_eq!(map.position(9), (4, 1));
        // Past the end and inside a character are clamped, not panics.
        assert_eq!(map.position(100), (4, 2));
        assert_eq!(map.position(4), (2, 1));
    }

    #[test]
    fn display_is_file_line_column_severity_message() {
        let error = Diagnostic {
            severity: Severity::Error,
            file: "a.kdl".into(),
            line: 3,
            column: 9,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "a.kdl:3:9: error: bad");
        let warning = Diagnostic {
            severity: Severity::Warning,
            ..error
        };
        assert_eq!(warning.to_string(), "a.kdl:3:9: warning: bad");
    }

    #[test]
    fn report_sorts_by_position() {
        let mut report = Report::new("f", "one\ntwo\n");
        report.warning(4, "second");
        report.error(0, "first");
        assert!(report.has_errors());
        let messages: Vec<_> = report
            .into_diagnostics()
            .into_iter()
            .map(|d| d.message)
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }
}
