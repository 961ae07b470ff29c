//! Category frequencies: exact up to [`MAX_EXACT_CATEGORIES`] distinct values, then a
//! Misra-Gries summary of the most frequent ones (each kept count is low by at most
//! `undercount`) plus the remaining mass, and a HyperLogLog estimate of the distinct count.
//! Both summaries merge (Agarwal et al., "Mergeable summaries", 2012).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Builder};

/// Distinct values counted exactly per column; beyond it the most frequent are kept.
pub const MAX_EXACT_CATEGORIES: usize = 10_000;

const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// A HyperLogLog sketch with 4096 registers (standard error about 1.6%), hashing with
/// xxh3, whose output is fixed by its specification, so sketches merge across machines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: vec![0; HLL_REGISTERS],
        }
    }
}

impl Hll {
    pub fn insert(&mut self, value: &str) {
        let h = xxh3_64(value.as_bytes());
        let idx = (h >> (64 - HLL_BITS)) as usize;
        let rest = (h << HLL_BITS) | (1 << (HLL_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if self.registers[idx] < rank {
            self.registers[idx] = rank;
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = HLL_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|r| (-f64::from(*r)).exp2()).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln() // linear counting for small cardinalities
        } else {
            raw
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.registers.len() == HLL_REGISTERS && self.registers.iter().all(|r| *r <= 64)
    }
}

fn hll_of<'a>(values: impl Iterator<Item = &'a String>) -> Hll {
    let mut hll = Hll::default();
    values.for_each(|v| hll.insert(v));
    hll
}

pub(crate) type FastMap<K, V> = HashMap<K, V, Xxh3Builder>;

/// Frequencies of one categorical column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Categories {
    counts: FastMap<String, u64>,
    /// Non-null values seen.
    total: u64,
    /// The most a kept count can be below the true one (0 while exact).
    undercount: u64,
    /// Present once the column went past the exact limit.
    hll: Option<Hll>,
}

impl Categories {
    /// Adds `n` occurrences of a value.
    pub fn add(&mut self, value: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.total += n;
        match self.counts.get_mut(value) {
            Some(c) => *c += n,
            None => {
                self.counts.insert(value.to_owned(), n);
            }
        }
        if let Some(hll) = &mut self.hll {
            hll.insert(value);
        }
    }

    /// Call after a run of `add`s: past the limit, keeps the most frequent values.
    pub fn settle(&mut self) {
        if self.counts.len() <= MAX_EXACT_CATEGORIES {
            return;
        }
        if self.hll.is_none() {
            self.hll = Some(hll_of(self.counts.keys()));
        }
        let mut sorted: Vec<u64> = self.counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let cut = sorted[MAX_EXACT_CATEGORIES];
        self.counts.retain(|_, c| {
            *c = c.saturating_sub(cut);
            *c > 0
        });
        self.undercount += cut;
    }

    pub fn merge(&mut self, other: &Categories) {
        if self.hll.is_some() || other.hll.is_some() {
            // a side without a sketch is still exact: its keys are all it has seen
            let mut hll = self
                .hll
                .take()
                .unwrap_or_else(|| hll_of(self.counts.keys()));
            match &other.hll {
                Some(h) => hll.merge(h),
                None => other.counts.keys().for_each(|k| hll.insert(k)),
            }
            self.hll = Some(hll);
        }
        for (k, n) in &other.counts {
            match self.counts.get_mut(k.as_str()) {
                Some(c) => *c += n,
                None => {
                    self.counts.insert(k.clone(), *n);
                }
            }
        }
        self.total += other.total;
        self.undercount += other.undercount;
        self.settle();
    }

    /// True while every distinct value is counted exactly.
    pub fn exact(&self) -> bool {
        self.hll.is_none()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn undercount(&self) -> u64 {
        self.undercount
    }

    pub fn count(&self, value: &str) -> u64 {
        self.counts.get(value).copied().unwrap_or(0)
    }

    /// Values not among the kept counts (0 while exact).
    pub fn other(&self) -> u64 {
        self.total - self.counts.values().sum::<u64>()
    }

    pub fn distinct(&self) -> f64 {
        match &self.hll {
            None => self.counts.len() as f64,
            Some(h) => h.estimate().max(self.counts.len() as f64),
        }
    }

    /// Kept values, most frequent first (ties by value).
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct CategoriesData {
    counts: Vec<(String, u64)>,
    total: u64,
    undercount: u64,
    hll: Option<Hll>,
}

impl Serialize for Categories {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CategoriesData {
            counts: self
                .sorted()
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
            total: self.total,
            undercount: self.undercount,
            hll: self.hll.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let data = CategoriesData::deserialize(d)?;
        let kept = data
            .counts
            .iter()
            .try_fold(0u64, |a, (_, n)| a.checked_add(*n));
        if kept.is_none_or(|k| k > data.total)
            || data.total > crate::profile::MAX_COUNT
            || data.undercount > crate::profile::MAX_COUNT
            || data.hll.as_ref().is_some_and(|h| !h.is_valid())
        {
            return Err(D::Error::custom("category counts are inconsistent"));
        }
        let mut counts = FastMap::default();
        for (k, n) in data.counts {
            if counts.insert(k, n).is_some() {
                return Err(D::Error::custom("a category is listed twice"));
            }
        }
        Ok(Categories {
            counts,
            total: data.total,
            undercount: data.undercount,
            hll: data.hll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_the_limit_then_heavy_hitters_survive() {
        let mut c = Categories::default();
        for i in 0..(MAX_EXACT_CATEGORIES + 500) {
            c.add(&format!("rare{i}"), 1);
        }
        c.add("heavy", 100_000);
        c.settle();
        assert!(!c.exact());
        assert!(c.count("heavy") >= 100_000 - c.undercount());
        assert_eq!(c.total(), (MAX_EXACT_CATEGORIES + 500) as u64 + 100_000);
        let d = c.distinct();
        let truth = (MAX_EXACT_CATEGORIES + 501) as f64;
        assert!((d - truth).abs() / truth < 0.05, "{d}");
    }

    #[test]
    fn hll_estimates_within_a_few_percent() {
        let mut h = Hll::default();
        for i in 0..200_000 {
            h.insert(&i.to_string());
        }
        let e = h.estimate();
        assert!((e - 200_000.0).abs() / 200_000.0 < 0.05, "{e}");
    }
}
