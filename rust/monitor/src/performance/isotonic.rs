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
}

/// A run of pooled points: how many, how many of them positive, and the scores they span.
#[derive(Clone, Copy)]
struct Block {
    positives: u64,
    weight: u64,
    first: f64,
    last: f64,
}

impl Block {
    fn of(x: f64, positive: bool) -> Block {
        Block {
            positives: u64::from(positive),
            weight: 1,
            first: x,
            last: x,
        }
    }

    fn mean(&self) -> f64 {
        self.positives as f64 / self.weight as f64
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
        let mut blocks: Vec<Block> = Vec::new();
        for run in &self.runs {
            push_pooled(&mut blocks, self.whole(run));
        }
        Isotonic::of_blocks(&blocks)
    }

    /// A run with all its points, as one block.
    fn whole(&self, (start, end, positives): &(u32, u32, u32)) -> Block {
        let run = &self.points[*start as usize..*end as usize];
        Block {
            positives: u64::from(*positives),
            weight: run.len() as u64,
            first: run[0].0,
            last: run[run.len() - 1].0,
        }
    }

    /// The fit on the points not `held` (one flag per point).
    pub fn fit_without(&self, held: &[bool]) -> Option<Isotonic> {
        assert_eq!(held.len(), self.points.len(), "one flag per point");
        let mut blocks: Vec<Block> = Vec::new();
        for cut in &self.runs {
            let (start, end) = (cut.0 as usize, cut.1 as usize);
            let run = &self.points[start..end];
            let block = if !held[start..end].contains(&true) {
                Some(self.whole(cut))
            } else {
                let mut kept = run
                    .iter()
                    .zip(&held[start..end])
                    .filter(|(_, h)| !**h)
                    .map(|(p, _)| *p);
                kept.next().map(|(x, y)| {
                    let mut b = Block::of(x, y);
                    for (x, y) in kept {
                        b.absorb(&Block::of(x, y));
                    }
                    b
                })
            };
            if let Some(b) = block {
                push_pooled(&mut blocks, b);
            }
        }
        Isotonic::of_blocks(&blocks)
    }
}

/// Appends a block, pooling it with the blocks before it while they are out of order
/// (shares compared exactly, by cross-multiplying the counts).
fn push_pooled(blocks: &mut Vec<Block>, mut b: Block) {
    while let Some(a) = blocks.last() {
        if a.positives * b.weight <= b.positives * a.weight {
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
    /// `u32::MAX` points (the counts' products must fit 64 bits).
    pub fn fit_sorted(points: &[(f64, bool)]) -> Option<Isotonic> {
        Runs::new(points).fit()
    }

    /// The knots of pooled blocks (None without blocks).
    fn of_blocks(blocks: &[Block]) -> Option<Isotonic> {
        if blocks.is_empty() {
            return None;
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for b in blocks {
            let m = b.mean();
            x.push(b.first);
            y.push(m);
            if b.last != b.first {
                x.push(b.last);
                y.push(m);
            }
        }
        Some(Isotonic { x, y })
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
        let t = (score - x[i - 1]) / (x[i] - x[i - 1]);
        y[i - 1] + t * (y[i] - y[i - 1])
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
                let t = (score - self.x[i - 1]) / (self.x[i] - self.x[i - 1]);
                self.y[i - 1] + t * (self.y[i] - self.y[i - 1])
            }
        })
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
            let held: Vec<bool> = (0..n).map(|_| rng.f64() < 0.2).collect();
            let rest: Vec<(f64, bool)> = points
                .iter()
                .zip(&held)
                .filter(|(_, h)| !**h)
                .map(|(p, _)| *p)
                .collect();
            let (a, b) = (runs.fit_without(&held), Isotonic::fit_sorted(&rest));
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

    #[test]
    fn equal_scores_get_their_mean() {
        let iso =
            Isotonic::fit_sorted(&[(0.2, false), (0.5, true), (0.5, false), (0.9, true)]).unwrap();
        assert_eq!(iso.predict(0.5), 0.5);
        assert_eq!(iso.predict(0.2), 0.0);
        assert!(Isotonic::fit_sorted(&[]).is_none());
    }
}
