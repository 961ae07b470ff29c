//! The version-search language, compiled to parameterised SQL:
//!
//! ```text
//! filter   := clause ( AND clause )*
//! clause   := field op value | field IN ( value, ... )
//! field    := name | version | status | description | created_by | created_at | run_id
//!           | dataset | metrics.<key> | tags.<key> | params.<key>
//! op       := = | != | <> | < | <= | > | >= | LIKE | ILIKE
//! value    := 'text' | number
//! order_by := field [ASC|DESC] ( , field [ASC|DESC] )*
//! ```
//! `created_at` compares with an ISO-8601 time ('2026-11-01T12:00') or microseconds.

use crate::error::{RegistryError, Result};
use crate::store::Value;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Text(String),
    Number(f64),
    Op(String),
    LParen,
    RParen,
    Comma,
}

fn invalid(query: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::invalid("search filter", query, reason)
}

fn tokenize(q: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(invalid(q, "a quoted value is not closed")),
                    Some(&ch) if ch == quote => {
                        if chars.get(i + 1) == Some(&quote) {
                            s.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Text(s));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || ".eE+-".contains(chars[i])) {
                if "+-".contains(chars[i]) && !"eE".contains(chars[i - 1]) {
                    break;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token::Number(
                text.parse()
                    .map_err(|_| invalid(q, format!("'{text}' is not a number")))?,
            ));
        } else if c.is_alphabetic() || c == '_' || c == '`' {
            let start = i;
            if c == '`' {
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.-".contains(chars[i])) {
                    i += 1;
                }
            }
            let text: String = chars[start..i.min(chars.len())]
                .iter()
                .filter(|c| **c != '`')
                .collect();
            match text.to_ascii_uppercase().as_str() {
                "AND" | "LIKE" | "ILIKE" | "IN" | "OR" | "NOT" => {
                    out.push(Token::Op(text.to_ascii_uppercase()))
                }
                _ => out.push(Token::Ident(text)),
            }
        } else if c == '(' {
            out.push(Token::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Token::RParen);
            i += 1;
        } else if c == ',' {
            out.push(Token::Comma);
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["!=", "<>", "<=", ">=", "=="].contains(&two.as_str()) {
                out.push(Token::Op(if two == "==" { "=".into() } else { two }));
                i += 2;
            } else if "=<>".contains(c) {
                out.push(Token::Op(c.to_string()));
                i += 1;
            } else {
                return Err(invalid(q, format!("unexpected character '{c}'")));
            }
        }
    }
    Ok(out)
}

enum Field {
    Column(&'static str),
    Metric(String),
    Tag(String),
    Param(String),
}

fn field(q: &str, name: &str) -> Result<Field> {
    if let Some(key) = name
        .strip_prefix("metrics.")
        .or_else(|| name.strip_prefix("metric."))
    {
        return Ok(Field::Metric(key.to_string()));
    }
    if let Some(key) = name
        .strip_prefix("tags.")
        .or_else(|| name.strip_prefix("tag."))
    {
        return Ok(Field::Tag(key.to_string()));
    }
    if let Some(key) = name
        .strip_prefix("params.")
        .or_else(|| name.strip_prefix("param."))
    {
        return Ok(Field::Param(key.to_string()));
    }
    Ok(match name.to_ascii_lowercase().as_str() {
        "name" | "model" => Field::Column("v.model"),
        "version" => Field::Column("v.version"),
        "status" => Field::Column("v.status"),
        "description" => Field::Column("v.description"),
        "created_by" | "user" => Field::Column("v.created_by"),
        "created_at" | "creation_time" => Field::Column("v.created_at"),
        "run_id" | "run" => Field::Column("v.run_id"),
        "dataset" => Field::Column("v.dataset"),
        "sha256" => Field::Column("v.sha256"),
        _ => {
            return Err(invalid(
                q,
                format!("unknown field '{name}'; use name, version, status, description, created_by, created_at, run_id, dataset, sha256, metrics.<key>, tags.<key> or params.<key>"),
            ))
        }
    })
}

fn literal(q: &str, token: Option<&Token>, column: &str) -> Result<Value> {
    match token {
        Some(Token::Text(s)) if column == "v.created_at" => {
            Ok(Value::Int(parse_time(s).map_err(|e| invalid(q, e))?))
        }
        Some(Token::Text(s)) => Ok(Value::Text(s.clone())),
        Some(Token::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(Value::Int(*n as i64)),
        Some(Token::Number(n)) => Ok(Value::Float(*n)),
        other => Err(invalid(q, format!("expected a value, found {other:?}"))),
    }
}

/// ISO-8601 time (UTC unless an offset is given) to microseconds since the epoch.
pub fn parse_time(text: &str) -> std::result::Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros());
    }
    Err(format!(
        "'{text}' is not a time; use ISO 8601, as in 2026-11-01T12:00 or 2026-11-01T12:00:00+02:00"
    ))
}

/// A compiled filter: SQL conditions on `versions v` plus their parameters.
pub struct Compiled {
    pub condition: String,
    pub params: Vec<Value>,
    pub mentions_status: bool,
}

pub fn compile_filter(q: &str) -> Result<Compiled> {
    let tokens = tokenize(q)?;
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let mut mentions_status = false;
    let mut i = 0;
    while i < tokens.len() {
        let Token::Ident(name) = &tokens[i] else {
            return Err(invalid(
                q,
                format!("expected a field name, found {:?}", tokens[i]),
            ));
        };
        let f = field(q, name)?;
        if matches!(f, Field::Column("v.status")) {
            mentions_status = true;
        }
        let Some(Token::Op(op)) = tokens.get(i + 1) else {
            return Err(invalid(q, format!("expected an operator after '{name}'")));
        };
        if op == "OR" || op == "NOT" || op == "AND" {
            return Err(invalid(
                q,
                format!("expected a comparison after '{name}', found {op}"),
            ));
        }
        let sql_op = match op.as_str() {
            "=" => "=",
            "!=" | "<>" => "<>",
            "<" => "<",
            "<=" => "<=",
            ">" => ">",
            ">=" => ">=",
            "LIKE" => "LIKE",
            "ILIKE" => "ILIKE",
            "IN" => "IN",
            other => return Err(invalid(q, format!("unknown operator {other}"))),
        };
        let column = match &f {
            Field::Column(c) => *c,
            Field::Metric(_) => "m.value",
            Field::Tag(_) => "t.value",
            Field::Param(_) => "p.value",
        };
        let mut values = Vec::new();
        let mut next = i + 2;
        if sql_op == "IN" {
            if tokens.get(next) != Some(&Token::LParen) {
                return Err(invalid(
                    q,
                    "IN takes a parenthesised list: version IN (1, 2)",
                ));
            }
            next += 1;
            loop {
                values.push(literal(q, tokens.get(next), column)?);
                next += 1;
                match tokens.get(next) {
                    Some(Token::Comma) => next += 1,
                    Some(Token::RParen) => {
                        next += 1;
                        break;
                    }
                    _ => return Err(invalid(q, "the IN list is not closed with ')'")),
                }
            }
        } else {
            values.push(literal(q, tokens.get(next), column)?);
            next += 1;
        }
        let comparison = |lhs: &str| -> String {
            let lhs = if sql_op == "ILIKE" {
                format!("LOWER({lhs})")
            } else {
                lhs.to_string()
            };
            match sql_op {
                "IN" => format!("{lhs} IN ({})", vec!["?"; values.len()].join(", ")),
                "ILIKE" => format!("{lhs} LIKE LOWER(?)"),
                _ => format!("{lhs} {sql_op} ?"),
            }
        };
        let condition = match &f {
            Field::Column(c) => comparison(c),
            Field::Metric(key) => {
                params.push(Value::Text(key.clone()));
                format!("EXISTS (SELECT 1 FROM version_metrics m WHERE m.model = v.model AND m.version = v.version AND m.key = ? AND {})", comparison("m.value"))
            }
            Field::Tag(key) => {
                params.push(Value::Text(key.clone()));
                format!("EXISTS (SELECT 1 FROM version_tags t WHERE t.model = v.model AND t.version = v.version AND t.key = ? AND {})", comparison("t.value"))
            }
            Field::Param(key) => {
                params.push(Value::Text(key.clone()));
                format!("EXISTS (SELECT 1 FROM params p WHERE p.run_id = v.run_id AND p.key = ? AND {})", comparison("p.value"))
            }
        };
        // numbers compared with text columns (tags, params) compare as text
        let values: Vec<Value> = values
            .into_iter()
            .map(|v| match (&f, v) {
                (Field::Tag(_) | Field::Param(_), Value::Int(n)) => Value::Text(n.to_string()),
                (Field::Tag(_) | Field::Param(_), Value::Float(n)) => Value::Text(n.to_string()),
                (_, v) => v,
            })
            .collect();
        params.extend(values);
        conditions.push(condition);
        i = next;
        match tokens.get(i) {
            None => break,
            Some(Token::Op(op)) if op == "AND" => i += 1,
            Some(Token::Op(op)) if op == "OR" => {
                return Err(invalid(
                    q,
                    "OR is not supported; run two searches, or use IN (...)",
                ))
            }
            Some(other) => return Err(invalid(q, format!("expected AND, found {other:?}"))),
        }
    }
    Ok(Compiled {
        condition: if conditions.is_empty() {
            "1 = 1".into()
        } else {
            conditions.join(" AND ")
        },
        params,
        mentions_status,
    })
}

/// `order_by` to an SQL ORDER BY clause and its parameters.
pub fn compile_order(order: &str) -> Result<(String, Vec<Value>)> {
    let mut parts = Vec::new();
    let mut params = Vec::new();
    for item in order.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = item.split_whitespace();
        let name = words.next().unwrap_or("");
        let direction = match words.next().map(|w| w.to_ascii_uppercase()) {
            None => "ASC",
            Some(w) if w == "ASC" => "ASC",
            Some(w) if w == "DESC" => "DESC",
            Some(w) => {
                return Err(RegistryError::invalid(
                    "order_by",
                    order,
                    format!("'{w}' is not ASC or DESC"),
                ))
            }
        };
        let expr = match field(order, name)? {
            Field::Column(c) => c.to_string(),
            Field::Metric(key) => {
                params.push(Value::Text(key));
                "(SELECT m.value FROM version_metrics m WHERE m.model = v.model AND m.version = v.version AND m.key = ?)".to_string()
            }
            Field::Tag(key) => {
                params.push(Value::Text(key));
                "(SELECT t.value FROM version_tags t WHERE t.model = v.model AND t.version = v.version AND t.key = ?)".to_string()
            }
            Field::Param(key) => {
                params.push(Value::Text(key));
                "(SELECT p.value FROM params p WHERE p.run_id = v.run_id AND p.key = ?)".to_string()
            }
        };
        parts.push(format!("{expr} {direction} NULLS LAST"));
    }
    parts.push("v.model ASC".into());
    parts.push("v.version DESC".into());
    Ok((parts.join(", "), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_the_documented_example() {
        let c =
            compile_filter("name = 'churn' and metrics.auc > 0.85 and tags.team = 'risk'").unwrap();
        assert!(c.condition.starts_with("v.model = ?"));
        assert_eq!(
            c.params,
            vec![
                Value::Text("churn".into()),
                Value::Text("auc".into()),
                Value::Float(0.85),
                Value::Text("team".into()),
                Value::Text("risk".into())
            ]
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        for bad in [
            "nme = 'x'",
            "name = ",
            "name = 'x' or version = 1",
            "version ~ 3",
            "name = 'x",
        ] {
            assert!(compile_filter(bad).is_err(), "{bad}");
        }
        assert!(compile_filter("version IN (1, 2, 3) AND created_at >= '2026-01-01'").is_ok());
        assert!(compile_order("metrics.auc desc, version").is_ok());
        assert!(compile_order("metrics.auc sideways").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01").unwrap(), 1_000_000);
        assert_eq!(
            parse_time("1970-01-01T00:00:01+01:00").unwrap(),
            1_000_000 - 3_600_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
