//! What bounds a running session besides the idle watchdog: the budgets a user sets
//! (`agent.maxTurns`, `agent.maxTokens`, `agent.maxCost`) and the empty-turn guard.
//!
//! Both are checked after every model turn (each `step-finish` part OpenCode reports),
//! so a run stops at the first turn that crosses a limit, not at the pod's deadline.
//! Pure arithmetic on the running totals: unit-tested without a server.

/// Consecutive turns with no tokens and no tool call that end the run. OpenCode starts the
/// next turn at once when a model call ends without a real answer (a stream cut before its
/// `finish`, an HTTP 200 that is not a stream): measured 1,274 calls in 175 s, about 7 a
/// second, so this fires within seconds while a flaky turn or two still passes.
pub const MAX_EMPTY_TURNS: u32 = 8;

/// The budgets' defaults and `agent.maxCost`'s reading, part of the pod env contract.
pub use crate::contract::{DEFAULT_MAX_COST, DEFAULT_MAX_TOKENS, DEFAULT_MAX_TURNS, parse_cost};

/// Limits on one run; 0 (or 0.0) is "no limit".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub max_turns: u64,
    /// Input plus output tokens, summed over every turn.
    pub max_tokens: u64,
    /// US dollars, from the cost OpenCode reports per step.
    pub max_cost: f64,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            max_turns: DEFAULT_MAX_TURNS,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_cost: DEFAULT_MAX_COST,
        }
    }
}

/// The totals so far, as the tracker keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub turns: u64,
    pub tokens: u64,
    pub cost: f64,
}

/// A budget crossed: `<what> <value> > <limit>` on the marker line.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub what: &'static str,
    pub value: String,
    pub limit: String,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} > {}", self.what, self.value, self.limit)
    }
}

impl Budgets {
    /// The first budget the totals are over, if any (turns, then tokens, then cost).
    pub fn check(&self, t: &Totals) -> Option<Exceeded> {
        if self.max_turns > 0 && t.turns > self.max_turns {
            return Some(Exceeded {
                what: "turns",
                value: t.turns.to_string(),
                limit: self.max_turns.to_string(),
            });
        }
        if self.max_tokens > 0 && t.tokens > self.max_tokens {
            return Some(Exceeded {
                what: "tokens",
                value: t.tokens.to_string(),
                limit: self.max_tokens.to_string(),
            });
        }
        if self.max_cost > 0.0 && t.cost > self.max_cost {
            return Some(Exceeded {
                what: "cost",
                value: dollars(t.cost),
                limit: dollars(self.max_cost),
            });
        }
        None
    }

    /// `max-turns 300, max-tokens -, max-cost $1.50`, for `asdo agent --dry-run`.
    pub fn describe(&self) -> String {
        let n = |v: u64| {
            if v == 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        let cost = if self.max_cost > 0.0 {
            dollars(self.max_cost)
        } else {
            "-".into()
        };
        format!(
            "turns {}, tokens {}, cost {cost}",
            n(self.max_turns),
            n(self.max_tokens)
        )
    }
}

/// `$0.5123`: enough digits to see how far over a cap a run went.
pub fn dollars(v: f64) -> String {
    format!("${v:.4}")
}

/// One finished model turn, as far as the guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Input plus output tokens the provider reported for it.
    pub tokens: u64,
    /// The model called a tool in it.
    pub tool_call: bool,
    /// Its finish reason was `stop`: the model answered and the session ends by itself.
    pub stopped: bool,
}

/// Counts consecutive empty turns: no tokens and no tool call, and not a final answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EmptyTurns {
    pub run: u32,
}

impl EmptyTurns {
    /// Records a turn; true when the run of empty turns has reached [`MAX_EMPTY_TURNS`].
    pub fn record(&mut self, turn: Turn) -> bool {
        if turn.tokens == 0 && !turn.tool_call && !turn.stopped {
            self.run += 1;
        } else {
            self.run = 0;
        }
        self.run >= MAX_EMPTY_TURNS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(turns: u64, tokens: u64, cost: f64) -> Totals {
        Totals {
            turns,
            tokens,
            cost,
        }
    }

    #[test]
    fn budgets_fire_only_when_exceeded_and_name_what() {
        let b = Budgets {
            max_turns: 3,
            max_tokens: 1000,
            max_cost: 0.5,
        };
        assert_eq!(b.check(&totals(3, 1000, 0.5)), None, "at the limit is fine");
        assert_eq!(
            b.check(&totals(4, 0, 0.0)).unwrap().to_string(),
            "turns 4 > 3"
        );
        assert_eq!(
            b.check(&totals(1, 1001, 0.0)).unwrap().to_string(),
            "tokens 1001 > 1000"
        );
        assert_eq!(
            b.check(&totals(1, 10, 0.50001)).unwrap().to_string(),
            "cost $0.5000 > $0.5000"
        );
        assert_eq!(
            b.check(&totals(2, 10, 0.75)).unwrap().to_string(),
            "cost $0.7500 > $0.5000"
        );
        // Turns are named first when several are over.
        assert_eq!(b.check(&totals(9, 9999, 9.0)).unwrap().what, "turns");
    }

    #[test]
    fn zero_is_no_limit() {
        let off = Budgets {
            max_turns: 0,
            max_tokens: 0,
            max_cost: 0.0,
        };
        assert_eq!(off.check(&totals(u64::MAX, u64::MAX, 1e12)), None);
        assert_eq!(off.describe(), "turns -, tokens -, cost -");
        assert_eq!(
            Budgets::default().describe(),
            format!("turns {DEFAULT_MAX_TURNS}, tokens -, cost -")
        );
    }

    #[test]
    fn costs_parse_as_dollars() {
        assert_eq!(parse_cost("1.5"), Ok(1.5));
        assert_eq!(parse_cost("$0.25"), Ok(0.25));
        assert_eq!(parse_cost("0"), Ok(0.0));
        assert!(parse_cost("-1").is_err());
        assert!(parse_cost("NaN").is_err());
        assert!(parse_cost("lots").is_err());
    }

    #[test]
    fn empty_turn_guard_counts_a_run_and_resets_on_any_real_turn() {
        let empty = Turn {
            tokens: 0,
            tool_call: false,
            stopped: false,
        };
        let mut g = EmptyTurns::default();
        for _ in 1..MAX_EMPTY_TURNS {
            assert!(!g.record(empty));
        }
        // A turn with tokens, or a tool call, breaks the run.
        assert!(!g.record(Turn { tokens: 5, ..empty }));
        assert_eq!(g.run, 0);
        for _ in 1..MAX_EMPTY_TURNS {
            assert!(!g.record(empty));
        }
        assert!(!g.record(Turn {
            tool_call: true,
            ..empty
        }));
        // A final answer without usage (a provider that reports none) is not empty.
        assert!(!g.record(Turn {
            stopped: true,
            ..empty
        }));
        for _ in 1..MAX_EMPTY_TURNS {
            assert!(!g.record(empty));
        }
        assert!(
            g.record(empty),
            "the {MAX_EMPTY_TURNS}th empty turn in a row"
        );
    }
}
