//! A goal a bench judges: one place renders its summary row, console line and cell.
#![allow(dead_code)]

/// Which side of the target a measured value must stay on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comparison {
    AtMost,
    AtLeast,
    /// No target: the value is reported only (verdict "—").
    Reported,
}

/// A measured value against its target, e.g. "first call / anchor ≤ 1.0".
#[derive(Clone)]
pub struct Goal {
    pub label: String,
    pub value: f64,
    pub comparison: Comparison,
    pub target: f64,
    /// Decimals the value is shown with.
    pub digits: usize,
    /// Appended to the value and the target ("" or "×").
    pub unit: &'static str,
    /// Shown instead of the value, e.g. "worst 1.004 (TLS 1.3, RSA-2048); all setups: …".
    pub text: Option<String>,
    /// Decimals of the target (`None`: as short as it reads, "1.01", "1.0").
    pub target_digits: Option<usize>,
    /// After "reported", in parentheses.
    pub note: Option<&'static str>,
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
            text: None,
            target_digits: None,
            note: None,
            display_target: false,
        }
    }

    /// A value reported without a target: goal "reported", verdict "—".
    pub fn reported(label: impl Into<String>, text: impl Into<String>) -> Goal {
        Goal::new(label, f64::NAN, Comparison::Reported, f64::NAN).described(text)
    }

    /// Shows `text` instead of the value.
    pub fn described(mut self, text: impl Into<String>) -> Goal {
        self.text = Some(text.into());
        self
    }

    /// Shows the target with `digits` decimals ("≤ 1.10").
    pub fn target_shown(mut self, digits: usize) -> Goal {
        self.target_digits = Some(digits);
        self
    }

    /// "reported (`note`)".
    pub fn noted(mut self, note: &'static str) -> Goal {
        self.note = Some(note);
        self
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
            Comparison::Reported => true,
        }
    }

    pub fn value_text(&self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        format!("{:.*}{}", self.digits, self.value, self.unit)
    }

    /// "≤ 1.0", "≥ 20×", "≤ 1.01", "reported (docs/alpn.md)".
    pub fn goal_text(&self) -> String {
        let sign = match self.comparison {
            Comparison::AtMost => "≤",
            Comparison::AtLeast => "≥",
            Comparison::Reported => {
                return match self.note {
                    Some(note) => format!("reported ({note})"),
                    None => "reported".to_string(),
                }
            }
        };
        let target = if let Some(digits) = self.target_digits {
            format!("{:.*}", digits, self.target)
        } else if self.unit.is_empty() && !self.display_target {
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
            self.verdict()
        )
    }

    /// The table cell and summary verdict: `met`, `**MISSED**`, or `—` when only reported.
    pub fn verdict(&self) -> String {
        match self.comparison {
            Comparison::Reported => "—".to_string(),
            _ => super::stats::verdict(self.met()),
        }
    }

    /// Of goals of one comparison in several setups, the one furthest from its target
    /// (the first of equals).
    pub fn worst<'a>(goals: impl IntoIterator<Item = &'a Goal>) -> Option<&'a Goal> {
        goals
            .into_iter()
            .fold(None, |worst: Option<&Goal>, g| match worst {
                Some(w) if !g.worse_than(w) => Some(w),
                _ => Some(g),
            })
    }

    fn worse_than(&self, other: &Goal) -> bool {
        match self.comparison {
            Comparison::AtLeast => self.value < other.value,
            _ => self.value > other.value,
        }
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
        if self.comparison == Comparison::Reported {
            "reported"
        } else if self.met() {
            "met"
        } else {
            "MISSED"
        }
    }
}
