//! Alert rules, pure: their conditions ([`condition`]: series compared with numbers or with
//! each other, joined by `and`/`or`) and their life over windows ([`rule`]: pending, firing,
//! resolved, with `for_windows`, hysteresis and an `only_if` gate). Which series a window
//! has, where rule states are kept and how alerts are delivered are the registry's and the
//! server's.

pub mod condition;
pub mod rule;

pub use condition::{Condition, Op, Operand, Truth};
pub use rule::{Rule, RuleState, State, Transition};
