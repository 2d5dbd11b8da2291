//! A goal a bench judges: one place renders its summary row, console line and cell.
#![allow(dead_code)]

/// Which side of the target a measured value must stay on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comparison {
    AtMost,
    AtLeast,
}

/// A measured value against its target, e.g. "first call / anchor ≤ 1.0".
pub struct Goal {
    pub label: String,
    pub value: f64,
    pub comparison: Comparison,
    pub target: f64,
    /// Decimals the value is shown with.
    pub digits: usize,
    /// Appended to the value and the target ("" or "×").
    pub unit: &'static str,
    /// The target as `Display` shows it ("≥ 1"), not as `Debug` does ("≥ 1.0").
    pub display_target: bool,
}

impl Goal {
    pub fn new(label: impl Into<String>, value: f64, comparison: Comparison, target: f64) -> Goal {
        Goal {
            label: label.into(),
            value,
            comparison,
            target,
            digits: 3,
            unit: "",
            display_target: false,
        }
    }

    /// Shows the value with `digits` decimals and `unit` after value and target.
    pub fn shown(mut self, digits: usize, unit: &'static str) -> Goal {
        self.digits = digits;
        self.unit = unit;
        self
    }

    /// Shows the target as `Display` does: "≥ 1", as group 3's rows always have.
    pub fn display_target(mut self) -> Goal {
        self.display_target = true;
        self
    }

    pub fn met(&self) -> bool {
        match self.comparison {
            Comparison::AtMost => self.value <= self.target,
            Comparison::AtLeast => self.value >= self.target,
        }
    }

    pub fn value_text(&self) -> String {
        format!("{:.*}{}", self.digits, self.value, self.unit)
    }

    /// "≤ 1.0", "≥ 20×", "≤ 1.01".
    pub fn goal_text(&self) -> String {
        let sign = match self.comparison {
            Comparison::AtMost => "≤",
            Comparison::AtLeast => "≥",
        };
        let target = if self.unit.is_empty() && !self.display_target {
            format!("{:?}", self.target)
        } else {
            format!("{}", self.target)
        };
        format!("{sign} {target}{}", self.unit)
    }

    /// The BENCHMARKS.md summary row: `| group | label | value | goal | verdict |`.
    pub fn summary_row(&self, group: &str) -> String {
        format!(
            "| {group} | {} | {} | {} | {} |",
            self.label,
            self.value_text(),
            self.goal_text(),
            super::stats::verdict(self.met())
        )
    }

    /// A table's goal cell: "≥ 0.97: met".
    pub fn cell(&self) -> String {
        format!(
            "{}: {}",
            self.goal_text(),
            super::stats::verdict(self.met())
        )
    }

    /// `met` / `MISSED` for the console.
    pub fn console_verdict(&self) -> &'static str {
        if self.met() {
            "met"
        } else {
            "MISSED"
        }
    }
}
