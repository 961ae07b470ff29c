//! Rules for names users give: models, aliases, experiments, tags. Names end up in URIs,
//! messages and (for artifacts) nowhere near a path, but are still kept plain.

use crate::error::{RegistryError, Result};

const MAX: usize = 128;

fn check(what: &'static str, value: &str, extra: &str) -> Result<()> {
    if value.is_empty() {
        return Err(RegistryError::invalid(what, value, "it is empty"));
    }
    if value.len() > MAX {
        return Err(RegistryError::invalid(
            what,
            value,
            format!("it is longer than {MAX} characters"),
        ));
    }
    if value.contains("..") || value.starts_with('.') {
        return Err(RegistryError::invalid(
            what,
            value,
            "it may not start with '.' or contain '..'",
        ));
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c) || extra.contains(c));
    if !first_ok || !rest_ok {
        return Err(RegistryError::invalid(
            what,
            value,
            format!(
                "use letters, digits and '_', '-', '.'{extra}, starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

pub fn model(name: &str) -> Result<()> {
    check("model name", name, "")
}

pub fn alias(name: &str) -> Result<()> {
    check("alias", name, "")?;
    if name == "latest" || name.chars().all(|c| c.is_ascii_digit()) {
        return Err(RegistryError::invalid(
            "alias",
            name,
            "'latest' and plain numbers mean versions in URIs; pick another name",
        ));
    }
    Ok(())
}

/// A deployment's name: also a folder of the payload log, so never a path.
pub fn deployment(name: &str) -> Result<()> {
    check("deployment name", name, "")
}

pub fn experiment(name: &str) -> Result<()> {
    check("experiment name", name, " /")
}

pub fn key(what: &'static str, name: &str) -> Result<()> {
    check(what, name, " /:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(model("churn-v2.1").is_ok());
        for bad in [
            "",
            "../etc",
            "a/b",
            ".hidden",
            "x y",
            &"n".repeat(200),
            "naïve",
        ] {
            assert!(model(bad).is_err(), "{bad}");
        }
        assert!(alias("champion").is_ok());
        assert!(alias("latest").is_err());
        assert!(alias("3").is_err());
    }
}
