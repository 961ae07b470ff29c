//! The conditions of alert rules: `drift_share > 0.3`, `latency_p99_ms > 50 and
//! requests >= 100`, `estimated.roc_auc < reference.roc_auc.lower`. A condition compares
//! series (named numbers of one window) with numbers or with other series, joined by `and`
//! and `or` (`and` binds tighter) and grouped with parentheses. A comparison with a series
//! the window does not have is unknown, neither true nor false, so a window without traffic
//! neither fires nor resolves an alert.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};

/// The longest condition accepted, in bytes: rules are written by people.
const MAX_LEN: usize = 4096;
/// How deep parentheses may nest.
const MAX_DEPTH: usize = 32;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operand {
    Number(f64),
    Series(String),
}

impl Operand {
    fn value(&self, series: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
        match self {
            Operand::Number(x) => Some(*x),
            Operand::Series(name) => series(name).filter(|x| !x.is_nan()),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Number(x) => write!(f, "{x}"),
            Operand::Series(name) => f.write_str(name),
        }
    }
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    Compare(Operand, Op, Operand),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

/// What a condition says of a window: true, false, or unknown (a series it reads is
/// missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Condition {
    /// Parses a condition; the error names the position and what was expected there.
    pub fn parse(text: &str) -> Result<Condition> {
        if text.len() > MAX_LEN {
            return Err(MonitorError::Invalid(format!(
                "condition: {} bytes is longer than the {MAX_LEN} a rule may have",
                text.len()
            )));
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            text,
            tokens,
            at: 0,
            depth: 0,
        };
        let condition = parser.or()?;
        if let Some((token, pos)) = parser.tokens.get(parser.at) {
            return Err(parser.error(*pos, &format!("'and', 'or' or the end, not {token}")));
        }
        Ok(condition)
    }

    /// True, false or unknown for a window whose series `series` reads.
    pub fn eval(&self, series: &dyn Fn(&str) -> Option<f64>) -> Truth {
        match self {
            Condition::Compare(a, op, b) => match (a.value(series), b.value(series)) {
                (Some(a), Some(b)) if op.holds(a, b) => Truth::True,
                (Some(_), Some(_)) => Truth::False,
                _ => Truth::Unknown,
            },
            Condition::And(parts) => {
                let mut truth = Truth::True;
                for p in parts {
                    match p.eval(series) {
                        Truth::False => return Truth::False,
                        Truth::Unknown => truth = Truth::Unknown,
                        Truth::True => {}
                    }
                }
                truth
            }
            Condition::Or(parts) => {
                let mut truth = Truth::False;
                for p in parts {
                    match p.eval(series) {
                        Truth::True => return Truth::True,
                        Truth::Unknown => truth = Truth::Unknown,
                        Truth::False => {}
                    }
                }
                truth
            }
        }
    }

    /// The series the condition reads, each once, in the order written.
    pub fn series(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.collect(&mut names);
        names
    }

    fn collect(&self, names: &mut Vec<String>) {
        match self {
            Condition::Compare(a, _, b) => {
                for side in [a, b] {
                    if let Operand::Series(name) = side {
                        if !names.contains(name) {
                            names.push(name.clone());
                        }
                    }
                }
            }
            Condition::And(parts) | Condition::Or(parts) => {
                parts.iter().for_each(|p| p.collect(names));
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare(a, op, b) => write!(f, "{a} {} {b}", op.symbol()),
            Condition::And(parts) | Condition::Or(parts) => {
                let joint = if matches!(self, Condition::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joint)?;
                    }
                    match p {
                        Condition::Or(_) if joint == " and " => write!(f, "({p})")?,
                        _ => write!(f, "{p}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Name(String),
    Number(f64),
    Op(Op),
    And,
    Or,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Name(n) => write!(f, "'{n}'"),
            Token::Number(x) => write!(f, "{x}"),
            Token::Op(op) => write!(f, "'{}'", op.symbol()),
            Token::And => f.write_str("'and'"),
            Token::Or => f.write_str("'or'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
        }
    }
}

/// A series name: letters, digits, `_`, `-` and `.` (a column's name may be quoted with
/// backticks inside it: ``drift.`monthly charges`.p_value``).
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>> {
    let bad = |pos: usize, why: &str| {
        MonitorError::Invalid(format!(
            "condition {text:?}: at character {}: {why}",
            pos + 1
        ))
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..].iter().take(2).map(|(_, c)| *c).collect();
        let op = match two.as_str() {
            "<=" => Some((Op::Le, 2)),
            ">=" => Some((Op::Ge, 2)),
            "==" => Some((Op::Eq, 2)),
            "!=" => Some((Op::Ne, 2)),
            _ => match c {
                '<' => Some((Op::Lt, 1)),
                '>' => Some((Op::Gt, 1)),
                '=' => Some((Op::Eq, 1)),
                _ => None,
            },
        };
        if let Some((op, len)) = op {
            tokens.push((Token::Op(op), pos));
            i += len;
            continue;
        }
        match c {
            '(' => {
                tokens.push((Token::Open, pos));
                i += 1;
            }
            ')' => {
                tokens.push((Token::Close, pos));
                i += 1;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                i += 1;
                while i < chars.len() {
                    let (_, d) = chars[i];
                    let exponent_sign =
                        (d == '-' || d == '+') && matches!(chars[i - 1].1, 'e' | 'E');
                    if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let word: String = chars[start..i].iter().map(|(_, c)| *c).collect();
                let x: f64 = word
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite())
                    .ok_or_else(|| bad(pos, &format!("{word:?} is not a finite number")))?;
                tokens.push((Token::Number(x), pos));
            }
            c if c.is_alphabetic() || c == '_' || c == '`' => {
                let mut name = String::new();
                while i < chars.len() {
                    let (p, d) = chars[i];
                    if d == '`' {
                        let close = chars[i + 1..]
                            .iter()
                            .position(|(_, e)| *e == '`')
                            .ok_or_else(|| bad(p, "a quoted column name is not closed with `"))?;
                        let quoted: String = chars[i + 1..i + 1 + close]
                            .iter()
                            .map(|(_, c)| *c)
                            .collect();
                        if quoted.is_empty() {
                            return Err(bad(p, "a quoted column name is empty"));
                        }
                        name.push('`');
                        name.push_str(&quoted);
                        name.push('`');
                        i += close + 2;
                    } else if d.is_alphanumeric() || d == '_' || d == '-' || d == '.' {
                        name.push(d);
                        i += 1;
                    } else {
                        break;
                    }
                }
                let token = match name.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    _ => {
                        if name.ends_with('.') || name.contains("..") {
                            return Err(bad(pos, &format!("{name:?} is not a series name")));
                        }
                        Token::Name(name)
                    }
                };
                tokens.push((token, pos));
            }
            other => return Err(bad(pos, &format!("{other:?} has no meaning here"))),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, pos: usize, expected: &str) -> MonitorError {
        MonitorError::Invalid(format!(
            "condition {:?}: at character {}: expected {expected}",
            self.text,
            pos + 1
        ))
    }

    fn end(&self) -> usize {
        self.text.chars().count()
    }

    fn or(&mut self) -> Result<Condition> {
        let mut parts = vec![self.and()?];
        while matches!(self.tokens.get(self.at), Some((Token::Or, _))) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Condition> {
        let mut parts = vec![self.primary()?];
        while matches!(self.tokens.get(self.at), Some((Token::And, _))) {
            self.at += 1;
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::And(parts)
        })
    }

    fn primary(&mut self) -> Result<Condition> {
        if let Some((Token::Open, pos)) = self.tokens.get(self.at) {
            let pos = *pos;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error(pos, &format!("at most {MAX_DEPTH} nested parentheses")));
            }
            self.at += 1;
            let inner = self.or()?;
            match self.tokens.get(self.at) {
                Some((Token::Close, _)) => self.at += 1,
                Some((t, p)) => return Err(self.error(*p, &format!("')', not {t}"))),
                None => return Err(self.error(self.end(), "')'")),
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.tokens.get(self.at) {
            Some((Token::Op(op), _)) => *op,
            Some((t, p)) => {
                return Err(self.error(*p, &format!("a comparison (< <= > >= == !=), not {t}")))
            }
            None => return Err(self.error(self.end(), "a comparison (< <= > >= == !=)")),
        };
        self.at += 1;
        let right = self.operand()?;
        if matches!((&left, &right), (Operand::Number(_), Operand::Number(_))) {
            let pos = self.tokens[self.at - 1].1;
            return Err(self.error(pos, "a series on one side at least"));
        }
        Ok(Condition::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand> {
        match self.tokens.get(self.at) {
            Some((Token::Name(n), _)) => {
                let n = n.clone();
                self.at += 1;
                Ok(Operand::Series(n))
            }
            Some((Token::Number(x), _)) => {
                let x = *x;
                self.at += 1;
                Ok(Operand::Number(x))
            }
            Some((t, p)) => Err(self.error(*p, &format!("a series or a number, not {t}"))),
            None => Err(self.error(self.end(), "a series or a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(pairs: &'a [(&'a str, f64)]) -> impl Fn(&str) -> Option<f64> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn comparisons_joined_and_grouped() {
        let c =
            Condition::parse("drift_share > 0.3 and (latency_p99_ms >= 5e1 or error_rate != 0)")
                .unwrap();
        assert_eq!(c.series(), ["drift_share", "latency_p99_ms", "error_rate"]);
        let v = [
            ("drift_share", 0.5),
            ("latency_p99_ms", 10.0),
            ("error_rate", 0.0),
        ];
        assert_eq!(c.eval(&values(&v)), Truth::False);
        let v = [
            ("drift_share", 0.5),
            ("latency_p99_ms", 50.0),
            ("error_rate", 0.0),
        ];
        assert_eq!(c.eval(&values(&v)), Truth::True);
        assert_eq!(
            c.to_string(),
            "drift_share > 0.3 and (latency_p99_ms >= 50 or error_rate != 0)"
        );
        assert_eq!(Condition::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn series_on_both_sides_and_quoted_columns() {
        let c = Condition::parse("estimated.roc_auc < reference.roc_auc.lower").unwrap();
        let v = [("estimated.roc_auc", 0.7), ("reference.roc_auc.lower", 0.8)];
        assert_eq!(c.eval(&values(&v)), Truth::True);
        let c = Condition::parse("drift.`monthly charges`.p_value < 0.01").unwrap();
        assert_eq!(c.series(), ["drift.`monthly charges`.p_value"]);
    }

    #[test]
    fn a_missing_series_is_unknown() {
        let c = Condition::parse("realized.accuracy < 0.8").unwrap();
        assert_eq!(c.eval(&values(&[])), Truth::Unknown);
        assert_eq!(
            c.eval(&values(&[("realized.accuracy", f64::NAN)])),
            Truth::Unknown
        );
        // false wins an `and`, true wins an `or`, whatever is unknown
        let and = Condition::parse("a > 1 and b > 1").unwrap();
        assert_eq!(and.eval(&values(&[("a", 0.0)])), Truth::False);
        assert_eq!(and.eval(&values(&[("a", 2.0)])), Truth::Unknown);
        let or = Condition::parse("a > 1 or b > 1").unwrap();
        assert_eq!(or.eval(&values(&[("a", 2.0)])), Truth::True);
        assert_eq!(or.eval(&values(&[("a", 0.0)])), Truth::Unknown);
    }

    #[test]
    fn mistakes_are_named_with_their_place() {
        for (text, said) in [
            ("", "at character 1: expected a series or a number"),
            ("drift_share", "expected a comparison"),
            ("drift_share >", "expected a series or a number"),
            ("drift_share > 0.3 and", "expected a series or a number"),
            (
                "drift_share > 0.3 0.4",
                "at character 19: expected 'and', 'or' or the end",
            ),
            ("(a > 1", "expected ')'"),
            ("a > 1)", "expected 'and', 'or' or the end, not ')'"),
            ("a ~ 1", "'~' has no meaning here"),
            ("1 > 2", "a series on one side at least"),
            ("a > 1e999", "is not a finite number"),
            ("a. > 1", "is not a series name"),
            ("drift.`x > 1", "not closed"),
        ] {
            let e = Condition::parse(text).unwrap_err().to_string();
            assert!(e.contains(said), "{text:?}: {e}");
        }
        let deep = format!("{}a > 1{}", "(".repeat(40), ")".repeat(40));
        assert!(Condition::parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        assert!(Condition::parse(&"a > 1 and ".repeat(1000)).is_err());
    }
}
