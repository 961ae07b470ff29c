//! A log-linear histogram over every f64: the numeric half of a profile.
//!
//! Each value falls in the bucket named by the top bits of its order-preserving bit
//! pattern: the sign, the 11 exponent bits and the first [`SUB_BUCKET_BITS`] bits of the
//! mantissa. Every power of two is therefore split into 1024 buckets, so a bucket spans
//! at most 2^-10 (about 0.1%) of the magnitude of the values in it, and the grid is the
//! same for every profile ever made. That makes merging exact (counts add), makes any two
//! profiles comparable on shared edges, and keeps an update to a shift and an increment.
//!
//! The rank error of a CDF or quantile read from the grid is at most the share of the
//! fullest bucket that can hold more than one value ([`Buckets::rank_error`]): CDFs are
//! exact at bucket edges, and integers below 2048 in magnitude each get a bucket of their
//! own, so small counts and codes are exact.

use serde::{Deserialize, Serialize};

/// Mantissa bits that select the sub-bucket inside a power of two.
pub const SUB_BUCKET_BITS: u32 = 10;
const SHIFT: u32 = 52 - SUB_BUCKET_BITS;
const BLOCK: usize = 1 << SUB_BUCKET_BITS;
const BLOCKS: usize = 1 << 12; // sign + exponent
const NONE: u32 = u32::MAX;
/// Keys are below this bound.
pub const KEY_LIMIT: u32 = 1 << (12 + SUB_BUCKET_BITS);

#[inline]
fn ordered(x: f64) -> u64 {
    // branch-free: negative values flip every bit, others only the sign bit (half the
    // values of centred data are negative, so a branch here would mispredict constantly)
    let b = x.to_bits();
    let mask = ((b as i64) >> 63) as u64;
    b ^ (mask | (1 << 63))
}

#[inline]
fn unordered(o: u64) -> f64 {
    f64::from_bits(if o >> 63 == 1 { o & !(1 << 63) } else { !o })
}

/// The bucket of a value (-0.0 and +0.0 share one).
#[inline]
pub fn key_of(x: f64) -> u32 {
    (ordered(x + 0.0) >> SHIFT) as u32
}

/// The smallest value in a bucket.
pub fn lower_edge(key: u32) -> f64 {
    if key >= KEY_LIMIT {
        return f64::INFINITY;
    }
    unordered(u64::from(key) << SHIFT)
}

/// The value of the bucket with the low mantissa bits cleared: the exact value when the
/// bucket can hold only one (small integers).
pub fn anchor(key: u32) -> f64 {
    if key >= KEY_LIMIT / 2 {
        lower_edge(key)
    } else {
        unordered(((u64::from(key) + 1) << SHIFT) - 1)
    }
}

/// Width of a bucket, from its smallest value to the next bucket's.
pub fn width(key: u32) -> f64 {
    lower_edge(key + 1) - lower_edge(key)
}

/// Counts per bucket while values stream in. Blocks of 1024 buckets (one power of two)
/// are allocated as values reach them, in one flat vector; the index of blocks itself is
/// allocated with the first value, so an empty grid costs nothing.
#[derive(Clone, Debug, Default)]
pub struct Grid {
    /// Block number of each sign-and-exponent (NONE: no block yet); empty until used.
    index: Box<[u32]>,
    block_keys: Vec<u16>,
    counts: Vec<u64>,
    total: u64,
}

impl PartialEq for Grid {
    fn eq(&self, other: &Self) -> bool {
        self.buckets() == other.buckets()
    }
}

impl Grid {
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.add_key(key_of(x), 1);
    }

    /// Where a key's count lives, allocating its block on first use.
    #[inline]
    fn slot(&mut self, key: u32) -> usize {
        let hi = (key >> SUB_BUCKET_BITS) as usize;
        if self.index.is_empty() {
            self.index = vec![NONE; BLOCKS].into_boxed_slice();
        }
        let mut b = self.index[hi];
        if b == NONE {
            b = self.block_keys.len() as u32;
            self.block_keys.push(hi as u16);
            self.counts.resize(self.counts.len() + BLOCK, 0);
            self.index[hi] = b;
        }
        ((b as usize) << SUB_BUCKET_BITS) | (key as usize & (BLOCK - 1))
    }

    #[inline]
    pub fn add_key(&mut self, key: u32, n: u64) {
        let slot = self.slot(key);
        self.counts[slot] += n;
        self.total += n;
    }

    /// Adds many finite values (the hot loop of profiling). Runs over plain slices until a
    /// value needs a block not yet allocated, allocates it, and goes on.
    pub fn add_all(&mut self, xs: &[f64]) {
        if self.index.is_empty() && !xs.is_empty() {
            self.index = vec![NONE; BLOCKS].into_boxed_slice();
        }
        let mut rest = xs;
        while !rest.is_empty() {
            let done = count_into(&self.index, &mut self.counts, rest);
            rest = &rest[done..];
            if let Some(x) = rest.first() {
                let slot = self.slot(key_of(*x));
                self.counts[slot] += 1;
                rest = &rest[1..];
            }
        }
        self.total += xs.len() as u64;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Adds another grid's counts, a block of 1024 buckets at a time.
    pub fn merge(&mut self, other: &Grid) {
        for (b, hi) in other.block_keys.iter().enumerate() {
            let start = self.slot(u32::from(*hi) << SUB_BUCKET_BITS);
            let theirs = &other.counts[b * BLOCK..(b + 1) * BLOCK];
            for (mine, n) in self.counts[start..start + BLOCK].iter_mut().zip(theirs) {
                *mine += n;
            }
        }
        self.total += other.total;
    }

    /// Non-empty buckets in increasing order of value.
    pub fn buckets(&self) -> Vec<(u32, u64)> {
        let mut blocks: Vec<(u16, usize)> = self
            .block_keys
            .iter()
            .enumerate()
            .map(|(b, hi)| (*hi, b))
            .collect();
        blocks.sort_unstable();
        let mut out = Vec::new();
        for (hi, b) in blocks {
            let base = u32::from(hi) << SUB_BUCKET_BITS;
            let counts = &self.counts[b * BLOCK..(b + 1) * BLOCK];
            out.extend(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (base + i as u32, *n)),
            );
        }
        out
    }
}

/// Counts values while their blocks exist; returns how many it counted. The arguments are
/// separate borrows so that the compiler keeps the table and slice in registers.
#[inline]
fn count_into(index: &[u32], counts: &mut [u64], xs: &[f64]) -> usize {
    for (i, x) in xs.iter().enumerate() {
        let key = key_of(*x) as usize;
        let b = index[(key >> SUB_BUCKET_BITS) & (BLOCKS - 1)];
        if b == NONE {
            return i;
        }
        counts[((b as usize) << SUB_BUCKET_BITS) | (key & (BLOCK - 1))] += 1;
    }
    xs.len()
}

/// The serialised form: non-empty buckets, keys as gaps from the previous key.
#[derive(Serialize, Deserialize)]
pub(crate) struct SparseGrid {
    key_gaps: Vec<u32>,
    counts: Vec<u64>,
}

impl From<Grid> for SparseGrid {
    fn from(grid: Grid) -> Self {
        let mut prev = 0;
        let (mut key_gaps, mut counts) = (Vec::new(), Vec::new());
        for (k, n) in grid.buckets() {
            key_gaps.push(k - prev);
            counts.push(n);
            prev = k;
        }
        SparseGrid { key_gaps, counts }
    }
}

impl TryFrom<SparseGrid> for Grid {
    type Error = String;

    fn try_from(s: SparseGrid) -> Result<Self, String> {
        if s.key_gaps.len() != s.counts.len() {
            return Err("histogram keys and counts differ in length".into());
        }
        let mut grid = Grid::default();
        let mut key: u64 = 0;
        for (i, (gap, n)) in s.key_gaps.iter().zip(&s.counts).enumerate() {
            key += u64::from(*gap);
            if (i > 0 && *gap == 0) || key >= u64::from(KEY_LIMIT) || *n == 0 {
                return Err(format!("histogram bucket {i} is out of order or empty"));
            }
            // Counts come from stored bytes: their total must stay far from overflowing, so
            // that merging such grids later cannot overflow either.
            if grid
                .total
                .checked_add(*n)
                .is_none_or(|t| t > crate::profile::MAX_COUNT)
            {
                return Err(format!("histogram bucket {i} has an impossible count {n}"));
            }
            grid.add_key(key as u32, *n);
        }
        Ok(grid)
    }
}

impl Serialize for Grid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SparseGrid::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Grid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Grid::try_from(SparseGrid::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A grid frozen for reading: sorted buckets with running totals, clamped to the data's
/// observed range.
#[derive(Clone, Debug)]
pub struct Buckets {
    pub keys: Vec<u32>,
    pub counts: Vec<u64>,
    /// cum[i]: values in buckets 0..=i
    pub cum: Vec<u64>,
    pub total: u64,
    pub min: f64,
    pub max: f64,
}

impl Buckets {
    pub fn new(grid: &Grid, min: f64, max: f64) -> Buckets {
        let (keys, counts): (Vec<u32>, Vec<u64>) = grid.buckets().into_iter().unzip();
        let mut cum = Vec::with_capacity(counts.len());
        let mut run = 0;
        for n in &counts {
            run += n;
            cum.push(run);
        }
        Buckets {
            keys,
            counts,
            cum,
            total: run,
            min,
            max,
        }
    }

    fn before(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.cum[i - 1]
        }
    }

    /// The interval bucket `i` covers, clamped to the observed range.
    pub fn span(&self, i: usize) -> (f64, f64) {
        let k = self.keys[i];
        let lo = lower_edge(k).max(self.min);
        let hi = lower_edge(k + 1).min(self.max);
        (lo, hi.max(lo))
    }

    /// True when bucket `i` can hold only one value of an integer column.
    fn single_valued(&self, i: usize, integer: bool) -> bool {
        let k = self.keys[i];
        (integer && width(k) <= 1.0) || self.min == self.max
    }

    /// The largest rank error of a CDF or quantile read from these buckets: the share of
    /// the fullest bucket that may hold more than one distinct value.
    pub fn rank_error(&self, integer: bool) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let worst = (0..self.keys.len())
            .filter(|i| !self.single_valued(*i, integer))
            .map(|i| self.counts[i])
            .max()
            .unwrap_or(0);
        worst as f64 / self.total as f64
    }

    /// The q-quantile (0..=1), linear inside a bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let target = (q.clamp(0.0, 1.0) * self.total as f64).max(f64::MIN_POSITIVE);
        let i = self
            .cum
            .partition_point(|c| (*c as f64) < target)
            .min(self.keys.len() - 1);
        let (lo, hi) = self.span(i);
        let frac = (target - self.before(i) as f64) / self.counts[i] as f64;
        Some(lo + frac.clamp(0.0, 1.0) * (hi - lo))
    }

    /// Share of values at or below `x`, linear inside a bucket.
    pub fn cdf(&self, x: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let k = key_of(x);
        let i = self.keys.partition_point(|key| *key < k);
        let mut below = self.before(i) as f64;
        if i < self.keys.len() && self.keys[i] == k {
            let (lo, hi) = self.span(i);
            let frac = if hi > lo {
                ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            below += frac * self.counts[i] as f64;
        }
        below / self.total as f64
    }

    /// Count of values in buckets with keys below `key`.
    pub fn count_below_key(&self, key: u32) -> u64 {
        self.before(self.keys.partition_point(|k| *k < key))
    }
}
