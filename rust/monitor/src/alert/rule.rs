//! An alert rule's life over a deployment's windows: inactive, pending (its condition held
//! for fewer than `for_windows` windows in a row), firing, and back. A rule fires when its
//! condition (gated by `only_if`) holds for `for_windows` consecutive windows, and resolves
//! when its `resolve_when` holds (hysteresis), or, without one, when its condition no longer
//! holds. A window where the condition is unknown (a series is missing: no traffic, no
//! labels yet) changes nothing.

use serde::{Deserialize, Serialize};

use super::condition::{Condition, Truth};
use crate::error::{MonitorError, Result};

/// The most windows a rule may wait for.
const MAX_FOR_WINDOWS: u32 = 10_000;

/// A rule's conditions, parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub when: Condition,
    pub for_windows: u32,
    pub resolve_when: Option<Condition>,
    pub only_if: Option<Condition>,
}

/// Where a rule stands for one deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

/// A rule's state, and how many windows in a row its condition has held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    pub state: State,
    pub held: u32,
}

/// A change a window brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The condition began to hold (it must hold longer to fire).
    Pending,
    /// Pending, then the condition stopped holding before it fired.
    Cleared,
    /// The condition held for `for_windows` windows in a row.
    Fired,
    /// A firing alert's resolve condition held.
    Resolved,
}

impl Transition {
    pub fn name(self) -> &'static str {
        match self {
            Transition::Pending => "pending",
            Transition::Cleared => "cleared",
            Transition::Fired => "fired",
            Transition::Resolved => "resolved",
        }
    }
}

impl Rule {
    /// Parses a rule's conditions; errors name which condition is wrong and where.
    pub fn new(
        when: &str,
        for_windows: u32,
        resolve_when: Option<&str>,
        only_if: Option<&str>,
    ) -> Result<Rule> {
        if !(1..=MAX_FOR_WINDOWS).contains(&for_windows) {
            return Err(MonitorError::Invalid(format!(
                "for_windows: {for_windows} is not from 1 to {MAX_FOR_WINDOWS}"
            )));
        }
        let parse = |what: &str, text: &str| {
            Condition::parse(text).map_err(|e| MonitorError::Invalid(format!("{what}: {e}")))
        };
        Ok(Rule {
            when: parse("when", when)?,
            for_windows,
            resolve_when: resolve_when.map(|t| parse("resolve_when", t)).transpose()?,
            only_if: only_if.map(|t| parse("only_if", t)).transpose()?,
        })
    }

    /// Every series the rule reads.
    pub fn series(&self) -> Vec<String> {
        let mut names = self.when.series();
        for c in [&self.resolve_when, &self.only_if].into_iter().flatten() {
            for n in c.series() {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }

    /// Whether the rule's firing condition holds in a window: its condition and its gate.
    fn holds(&self, series: &dyn Fn(&str) -> Option<f64>) -> Truth {
        let when = self.when.eval(series);
        match (&self.only_if, when) {
            (_, Truth::False) | (None, _) => when,
            (Some(gate), _) => match (when, gate.eval(series)) {
                (_, Truth::False) => Truth::False,
                (Truth::True, Truth::True) => Truth::True,
                _ => Truth::Unknown,
            },
        }
    }

    /// The state after one more window, and the transition it brought, if any.
    pub fn step(
        &self,
        before: RuleState,
        series: &dyn Fn(&str) -> Option<f64>,
    ) -> (RuleState, Option<Transition>) {
        match before.state {
            State::Inactive | State::Pending => match self.holds(series) {
                Truth::True => {
                    let held = before.held.saturating_add(1);
                    if held >= self.for_windows {
                        (
                            RuleState {
                                state: State::Firing,
                                held,
                            },
                            Some(Transition::Fired),
                        )
                    } else {
                        let transition =
                            (before.state == State::Inactive).then_some(Transition::Pending);
                        (
                            RuleState {
                                state: State::Pending,
                                held,
                            },
                            transition,
                        )
                    }
                }
                Truth::False => {
                    let transition =
                        (before.state == State::Pending).then_some(Transition::Cleared);
                    (RuleState::default(), transition)
                }
                Truth::Unknown => (before, None),
            },
            State::Firing => {
                let resolved = match &self.resolve_when {
                    Some(c) => c.eval(series) == Truth::True,
                    None => self.when.eval(series) == Truth::False,
                };
                if resolved {
                    (RuleState::default(), Some(Transition::Resolved))
                } else {
                    (before, None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a rule over windows of (name, value) series; the transitions, window by window.
    fn run(rule: &Rule, windows: &[&[(&str, f64)]]) -> Vec<Option<Transition>> {
        let mut state = RuleState::default();
        windows
            .iter()
            .map(|w| {
                let (next, t) =
                    rule.step(state, &|n| w.iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
                state = next;
                t
            })
            .collect()
    }

    use Transition::*;

    #[test]
    fn fires_after_its_windows_and_resolves_with_hysteresis() {
        let rule = Rule::new("drift_share > 0.3", 3, Some("drift_share < 0.2"), None).unwrap();
        let d = |x: f64| -> Vec<(&str, f64)> { vec![("drift_share", x)] };
        let windows: Vec<Vec<(&str, f64)>> = [0.4, 0.5, 0.1, 0.4, 0.4, 0.4, 0.25, 0.1, 0.1]
            .into_iter()
            .map(d)
            .collect();
        let refs: Vec<&[(&str, f64)]> = windows.iter().map(Vec::as_slice).collect();
        assert_eq!(
            run(&rule, &refs),
            [
                Some(Pending),
                None,
                Some(Cleared), // broke the run before the third window
                Some(Pending),
                None,
                Some(Fired),
                None, // 0.25: no longer above 0.3, but not yet below 0.2
                Some(Resolved),
                None,
            ]
        );
    }

    #[test]
    fn only_if_gates_firing_and_missing_series_change_nothing() {
        let rule = Rule::new(
            "drift_share > 0.3",
            1,
            None,
            Some("estimated.roc_auc < reference.roc_auc.lower"),
        )
        .unwrap();
        assert_eq!(
            rule.series(),
            [
                "drift_share",
                "estimated.roc_auc",
                "reference.roc_auc.lower"
            ]
        );
        let harmless: &[(&str, f64)] = &[
            ("drift_share", 0.9),
            ("estimated.roc_auc", 0.85),
            ("reference.roc_auc.lower", 0.8),
        ];
        let hurting: &[(&str, f64)] = &[
            ("drift_share", 0.9),
            ("estimated.roc_auc", 0.7),
            ("reference.roc_auc.lower", 0.8),
        ];
        let quiet: &[(&str, f64)] = &[];
        let calm: &[(&str, f64)] = &[("drift_share", 0.1)];
        assert_eq!(
            run(&rule, &[harmless, quiet, hurting, quiet, calm]),
            [None, None, Some(Fired), None, Some(Resolved)]
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(Rule::new("a > 1", 0, None, None)
            .unwrap_err()
            .to_string()
            .contains("for_windows"));
        let e = Rule::new("a > 1", 1, Some("b >"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("resolve_when: condition"), "{e}");
        let e = Rule::new("a > 1", 1, None, Some("("))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("only_if: condition"), "{e}");
    }
}
