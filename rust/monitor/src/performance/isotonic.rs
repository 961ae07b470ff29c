//! Isotonic regression: the non-decreasing step function closest (in squared error) to
//! 0/1 targets ordered by a score, fitted by pooling adjacent violators. Used to calibrate
//! a classifier's probabilities: the fitted value at a score is the share of positives
//! among the rows around it. Between the fitted points it interpolates linearly, and
//! outside the scores it was fitted on it keeps the end values (scikit-learn's
//! `out_of_bounds="clip"`).

/// A fitted calibration map.
#[derive(Clone, Debug, PartialEq)]
pub struct Isotonic {
    /// The knots: increasing scores and their non-decreasing fitted values.
    x: Vec<f64>,
    y: Vec<f64>,
    /// The slope of the line into each knot from the one before (the first: 0), as
    /// scipy's `interp1d` computes it: one division per knot, not per score.
    slope: Vec<f64>,
}

/// A run of pooled points: how many, how many of them positive, and the positions (in the
/// sorted points) of its first and last, whose scores are the knots. 16 bytes: the pooling
/// walks them back and forth.
#[derive(Clone, Copy)]
struct Block {
    positives: u32,
    weight: u32,
    first: u32,
    last: u32,
}

impl Block {
    fn mean(&self) -> f64 {
        f64::from(self.positives) / f64::from(self.weight)
    }

    fn absorb(&mut self, later: &Block) {
        self.positives += later.positives;
        self.weight += later.weight;
        self.last = later.last;
    }
}

/// Sorted `(score, positive)` points cut once into runs that one block can hold (the points
/// of one score, or neighbouring scores whose points all share one target), to fit the
/// calibration again and again without some of the points: a run that keeps all its points
/// is pushed whole, and only a run that loses some is read point by point. CBPE's check of
/// its calibration fits it ten times, each without a tenth of the points.
pub struct Runs<'a> {
    points: &'a [(f64, bool)],
    /// `start..end` of each run in `points`, and how many of them are positive.
    runs: Vec<(u32, u32, u32)>,
}

/// Up to 16 subsets of a [`Runs`]' points (bit `s` of a point's mark: it is in subset `s`),
/// with the union of the marks of each run, so that a fit without one subset pushes every
/// run that has none of its points whole.
pub struct Subsets {
    marks: Vec<u16>,
    per_run: Vec<u16>,
}

impl Subsets {
    /// The number of the subsets `among` (a mask) that a point is in.
    pub fn count(&self, point: usize, among: u16) -> u32 {
        (self.marks[point] & among).count_ones()
    }

    /// The points of subset `s`, in order.
    pub fn members(&self, s: u32) -> impl Iterator<Item = usize> + '_ {
        let bit = 1u16 << s;
        self.marks
            .iter()
            .enumerate()
            .filter(move |(_, m)| **m & bit != 0)
            .map(|(i, _)| i)
    }
}

impl<'a> Runs<'a> {
    /// Cuts `points`, given in increasing order of score (at most `u32::MAX` of them).
    pub fn new(points: &'a [(f64, bool)]) -> Runs<'a> {
        assert!(points.len() <= u32::MAX as usize, "at most u32::MAX points");
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        let mut cut = |start: usize, end: usize| {
            let positives = points[start..end].iter().filter(|p| p.1).count();
            runs.push((start as u32, end as u32, positives as u32));
        };
        // the current run's start and its one target (None: a score of mixed targets)
        let mut run: Option<(usize, Option<bool>)> = None;
        let mut i = 0;
        while i < points.len() {
            // the points of this score
            let mut j = i + 1;
            let mut target = Some(points[i].1);
            while j < points.len() && points[j].0 == points[i].0 {
                if target != Some(points[j].1) {
                    target = None;
                }
                j += 1;
            }
            match run {
                Some((_, Some(t))) if target == Some(t) => {}
                _ => {
                    if let Some((start, _)) = run {
                        cut(start, i);
                    }
                    run = Some((i, target));
                }
            }
            i = j;
        }
        if let Some((start, _)) = run {
            cut(start, points.len());
        }
        Runs { points, runs }
    }

    /// The fit on all the points.
    pub fn fit(&self) -> Option<Isotonic> {
        let mut blocks: Vec<Block> = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            push_pooled(&mut blocks, Self::whole(run));
        }
        self.knots(&blocks)
    }

    /// A run with all its points, as one block.
    fn whole(&(start, end, positives): &(u32, u32, u32)) -> Block {
        Block {
            positives,
            weight: end - start,
            first: start,
            last: end - 1,
        }
    }

    /// Marks subsets of the points: `marks` has one per point (bit `s`: in subset `s`).
    pub fn subsets(&self, marks: Vec<u16>) -> Subsets {
        assert_eq!(marks.len(), self.points.len(), "one mark per point");
        let per_run = self
            .runs
            .iter()
            .map(|(start, end, _)| {
                marks[*start as usize..*end as usize]
                    .iter()
                    .fold(0, |all, m| all | m)
            })
            .collect();
        Subsets { marks, per_run }
    }

    /// The fit on the points not in subset `s` (below 16) of `subsets`.
    pub fn fit_without(&self, subsets: &Subsets, s: u32) -> Option<Isotonic> {
        assert_eq!(
            subsets.per_run.len(),
            self.runs.len(),
            "subsets of these runs"
        );
        let bit = 1u16 << s;
        let mut blocks: Vec<Block> = Vec::with_capacity(self.runs.len());
        for (cut, union) in self.runs.iter().zip(&subsets.per_run) {
            if union & bit == 0 {
                push_pooled(&mut blocks, Self::whole(cut));
                continue;
            }
            let mut block: Option<Block> = None;
            for i in cut.0..cut.1 {
                if subsets.marks[i as usize] & bit != 0 {
                    continue;
                }
                let positives = u32::from(self.points[i as usize].1);
                match &mut block {
                    Some(b) => {
                        b.positives += positives;
                        b.weight += 1;
                        b.last = i;
                    }
                    None => {
                        block = Some(Block {
                            positives,
                            weight: 1,
                            first: i,
                            last: i,
                        })
                    }
                }
            }
            if let Some(b) = block {
                push_pooled(&mut blocks, b);
            }
        }
        self.knots(&blocks)
    }

    /// The knots of pooled blocks (None without blocks).
    fn knots(&self, blocks: &[Block]) -> Option<Isotonic> {
        if blocks.is_empty() {
            return None;
        }
        let (mut x, mut y) = (
            Vec::with_capacity(2 * blocks.len()),
            Vec::with_capacity(2 * blocks.len()),
        );
        for b in blocks {
            let m = b.mean();
            let (first, last) = (
                self.points[b.first as usize].0,
                self.points[b.last as usize].0,
            );
            x.push(first);
            y.push(m);
            if last != first {
                x.push(last);
                y.push(m);
            }
        }
        let slope = (0..x.len())
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    (y[i] - y[i - 1]) / (x[i] - x[i - 1])
                }
            })
            .collect();
        Some(Isotonic { x, y, slope })
    }
}

/// Appends a block, pooling it with the blocks before it while they are out of order
/// (shares compared exactly, by cross-multiplying the counts).
fn push_pooled(blocks: &mut Vec<Block>, mut b: Block) {
    while let Some(a) = blocks.last() {
        if u64::from(a.positives) * u64::from(b.weight)
            <= u64::from(b.positives) * u64::from(a.weight)
        {
            break;
        }
        let mut a = blocks.pop().expect("a block");
        a.absorb(&b);
        b = a;
    }
    blocks.push(b);
}

impl Isotonic {
    /// Fits on `(score, positive)` points given in increasing order of score (equal scores
    /// are pooled first: they must get one value). None without points.
    ///
    /// Neighbouring scores whose points are all positive (or all negative) are gathered
    /// into one block before pooling ([`Runs`]): in the fitted function they always share a
    /// value (the last point of a block is at most its mean and the first of the next at
    /// least its own, so a step between equal targets cannot happen), and a classifier's
    /// targets come in runs, so far fewer blocks are pushed and compared. At most
    /// `u32::MAX` points (the counts are 32 bits; their products fit 64).
    pub fn fit_sorted(points: &[(f64, bool)]) -> Option<Isotonic> {
        Runs::new(points).fit()
    }

    /// The calibrated value of `score`.
    pub fn predict(&self, score: f64) -> f64 {
        let (x, y) = (&self.x, &self.y);
        let last = x.len() - 1;
        if score <= x[0] {
            return y[0];
        }
        if score >= x[last] {
            return y[last];
        }
        // x[i - 1] < score <= x[i]
        let i = x.partition_point(|k| *k < score);
        if x[i] == score {
            return y[i];
        }
        self.between(i, score)
    }

    /// The calibrated values of `scores` given in increasing order: one walk along the
    /// knots instead of a search per score.
    pub fn predict_ascending<'a, I: IntoIterator<Item = f64> + 'a>(
        &'a self,
        scores: I,
    ) -> impl Iterator<Item = f64> + 'a {
        let mut i = 0;
        scores.into_iter().map(move |score| {
            // first knot at or above the score
            while i < self.x.len() && self.x[i] < score {
                i += 1;
            }
            if i == 0 {
                self.y[0]
            } else if i == self.x.len() {
                self.y[i - 1]
            } else if self.x[i] == score {
                self.y[i]
            } else {
                self.between(i, score)
            }
        })
    }

    /// The line between knots `i - 1` and `i` at `score` (strictly between them): by the
    /// slope, or by the share of the gap where the slope overflows (knots closer than the
    /// smallest normal number), kept between the two values (a rounding can step past
    /// the next by one unit in the last place, and calibrated values must keep the order).
    fn between(&self, i: usize, score: f64) -> f64 {
        let (x0, y0, y1) = (self.x[i - 1], self.y[i - 1], self.y[i]);
        let slope = self.slope[i];
        let v = if slope.is_finite() {
            y0 + (score - x0) * slope
        } else {
            y0 + (score - x0) / (self.x[i] - x0) * (y1 - y0)
        };
        v.max(y0).min(y1)
    }

    /// The number of knots (two per pooled run that spans several scores).
    pub fn knots(&self) -> usize {
        self.x.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violators_are_pooled_and_values_interpolated() {
        // scikit-learn: IsotonicRegression().fit([1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 1, 0])
        // fits [0, 0.5, 0.5, 2/3, 2/3, 2/3]
        let iso = Isotonic::fit_sorted(&[
            (1.0, false),
            (2.0, true),
            (3.0, false),
            (4.0, true),
            (5.0, true),
            (6.0, false),
        ])
        .unwrap();
        let fitted: Vec<f64> = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .map(|x| iso.predict(*x))
            .collect();
        assert_eq!(fitted, [0.0, 0.5, 0.5, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
        // between knots: linear; outside: the end values
        assert!((iso.predict(1.5) - 0.25).abs() < 1e-12);
        assert!((iso.predict(3.5) - (0.5 + 0.5 / 6.0)).abs() < 1e-12);
        assert_eq!(iso.predict(-10.0), 0.0);
        assert_eq!(iso.predict(10.0), 2.0 / 3.0);
        let scores = [-1.0, 1.0, 1.5, 2.0, 3.5, 3.5, 5.0, 9.0];
        let walked: Vec<f64> = iso.predict_ascending(scores).collect();
        let searched: Vec<f64> = scores.iter().map(|s| iso.predict(*s)).collect();
        assert_eq!(walked, searched);
    }

    /// Pool-adjacent-violators one point at a time, ties pooled first: what `fit_sorted`
    /// must agree with.
    fn plain_fit(points: &[(f64, bool)]) -> Vec<f64> {
        let mut groups: Vec<(f64, f64, usize)> = Vec::new(); // sum, weight, points
        let mut i = 0;
        while i < points.len() {
            let mut j = i;
            let mut sum = 0.0;
            while j < points.len() && points[j].0 == points[i].0 {
                sum += f64::from(u8::from(points[j].1));
                j += 1;
            }
            groups.push((sum, (j - i) as f64, j - i));
            while groups.len() > 1 {
                let n = groups.len();
                let (a, b) = (groups[n - 2], groups[n - 1]);
                if a.0 / a.1 <= b.0 / b.1 {
                    break;
                }
                groups.pop();
                groups[n - 2] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            }
            i = j;
        }
        groups
            .iter()
            .flat_map(|(s, w, n)| std::iter::repeat_n(s / w, *n))
            .collect()
    }

    /// Random sorted points for case `case`: few distinct scores in every third case (many
    /// ties); targets that follow the score, or (odd cases, when `noisy`) not at all.
    fn random_points(rng: &mut fastrand::Rng, case: usize, noisy: bool) -> Vec<(f64, bool)> {
        let n = rng.usize(1..400);
        let distinct = if case % 3 == 0 {
            rng.usize(1..20)
        } else {
            1000
        };
        let mut points: Vec<(f64, bool)> = (0..n)
            .map(|_| {
                let x = rng.usize(0..distinct) as f64 / distinct as f64;
                let y = if noisy && case % 2 == 1 {
                    rng.bool()
                } else {
                    rng.f64() < x
                };
                (x, y)
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    }

    #[test]
    fn runs_and_ties_fit_as_plain_pooling_does() {
        let mut rng = fastrand::Rng::with_seed(7);
        for case in 0..300 {
            let points = random_points(&mut rng, case, true);
            let iso = Isotonic::fit_sorted(&points).unwrap();
            let expected = plain_fit(&points);
            for (p, e) in points.iter().zip(&expected) {
                assert!((iso.predict(p.0) - e).abs() < 1e-12, "case {case}: {p:?}");
            }
            // between the points: linear between the plain fit's values at the two around
            for w in points.windows(2).filter(|w| w[0].0 < w[1].0) {
                let (i, j) = (
                    points.partition_point(|p| p.0 < w[0].0),
                    points.partition_point(|p| p.0 < w[1].0),
                );
                let mid = (w[0].0 + w[1].0) / 2.0;
                let line = (expected[i] + expected[j]) / 2.0;
                assert!(
                    (iso.predict(mid) - line).abs() < 1e-12,
                    "case {case}: {mid}"
                );
            }
        }
    }

    #[test]
    fn fits_without_held_points_equal_fits_on_the_rest() {
        let mut rng = fastrand::Rng::with_seed(11);
        for case in 0..300 {
            let points = random_points(&mut rng, case, false);
            let n = points.len();
            let runs = Runs::new(&points);
            // three overlapping subsets, each point in any of them with odds 1 in 5
            let marks: Vec<u16> = (0..n)
                .map(|_| (0..3).map(|s| u16::from(rng.f64() < 0.2) << s).sum())
                .collect();
            let subsets = runs.subsets(marks.clone());
            for s in 0..3 {
                let members: Vec<usize> = subsets.members(s).collect();
                let expected: Vec<usize> = (0..n).filter(|i| marks[*i] >> s & 1 == 1).collect();
                assert_eq!(members, expected, "case {case}");
                let rest: Vec<(f64, bool)> = points
                    .iter()
                    .zip(&marks)
                    .filter(|(_, m)| *m >> s & 1 == 0)
                    .map(|(p, _)| *p)
                    .collect();
                let (a, b) = (runs.fit_without(&subsets, s), Isotonic::fit_sorted(&rest));
                assert_eq!(a.is_none(), b.is_none(), "case {case}");
                let (Some(a), Some(b)) = (a, b) else { continue };
                for x in points
                    .iter()
                    .map(|p| p.0)
                    .chain((0..50).map(|k| k as f64 / 49.0))
                {
                    assert!(
                        (a.predict(x) - b.predict(x)).abs() < 1e-12,
                        "case {case}: {x}"
                    );
                }
            }
        }
    }

    #[test]
    fn knots_a_subnormal_gap_apart_interpolate_without_overflow() {
        let iso = Isotonic::fit_sorted(&[(0.0, false), (1e-310, true)]).unwrap();
        // subnormal scores carry few digits: near a half, and finite
        assert!((iso.predict(5e-311) - 0.5).abs() < 1e-9);
        let walked: Vec<f64> = iso.predict_ascending([0.0, 5e-311, 1e-310]).collect();
        assert_eq!((walked[0], walked[2]), (0.0, 1.0));
        assert!((walked[1] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn equal_scores_get_their_mean() {
        let iso =
            Isotonic::fit_sorted(&[(0.2, false), (0.5, true), (0.5, false), (0.9, true)]).unwrap();
        assert_eq!(iso.predict(0.5), 0.5);
        assert_eq!(iso.predict(0.2), 0.0);
        assert!(Isotonic::fit_sorted(&[]).is_none());
    }
}
