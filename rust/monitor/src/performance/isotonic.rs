//! Isotonic regression: the non-decreasing step function closest (in squared error) to
//! targets ordered by a score, fitted by pooling adjacent violators. Used to calibrate a
//! classifier's probabilities: the fitted value at a score is the share of positives among
//! the rows around it. Between the fitted points it interpolates linearly, and outside the
//! scores it was fitted on it keeps the end values (scikit-learn's `out_of_bounds="clip"`).

/// A fitted calibration map.
#[derive(Clone, Debug, PartialEq)]
pub struct Isotonic {
    /// The knots: increasing scores and their non-decreasing fitted values.
    x: Vec<f64>,
    y: Vec<f64>,
}

/// A run of pooled points: their weighted mean and the scores they span.
struct Block {
    sum: f64,
    weight: f64,
    first: f64,
    last: f64,
}

impl Block {
    fn mean(&self) -> f64 {
        self.sum / self.weight
    }
}

impl Isotonic {
    /// Fits on `(score, target)` points given in increasing order of score (equal scores
    /// are pooled first: they must get one value). None without points.
    pub fn fit_sorted(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Isotonic> {
        let mut blocks: Vec<Block> = Vec::new();
        for (x, y) in points {
            match blocks.last_mut() {
                Some(b) if b.last == x => {
                    b.sum += y;
                    b.weight += 1.0;
                }
                _ => blocks.push(Block {
                    sum: y,
                    weight: 1.0,
                    first: x,
                    last: x,
                }),
            }
            // pool while the last two blocks are out of order (means compared without
            // dividing: the weights are positive)
            while blocks.len() > 1 {
                let n = blocks.len();
                let (a, b) = (&blocks[n - 2], &blocks[n - 1]);
                if a.sum * b.weight <= b.sum * a.weight {
                    break;
                }
                let b = blocks.pop().expect("two blocks");
                let a = blocks.last_mut().expect("two blocks");
                a.sum += b.sum;
                a.weight += b.weight;
                a.last = b.last;
            }
        }
        if blocks.is_empty() {
            return None;
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for b in &blocks {
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
        // scikit-learn: IsotonicRegression().fit([1, 2, 3, 4, 5], [1, 3, 2, 4, 3.5])
        // fits [1, 2.5, 2.5, 3.75, 3.75]
        let iso =
            Isotonic::fit_sorted([(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0), (5.0, 3.5)])
                .unwrap();
        let fitted: Vec<f64> = [1.0, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .map(|x| iso.predict(*x))
            .collect();
        assert_eq!(fitted, [1.0, 2.5, 2.5, 3.75, 3.75]);
        // between knots: linear; outside: the end values
        assert!((iso.predict(1.5) - 1.75).abs() < 1e-12);
        assert!((iso.predict(3.5) - 3.125).abs() < 1e-12);
        assert_eq!(iso.predict(-10.0), 1.0);
        assert_eq!(iso.predict(10.0), 3.75);
        let scores = [-1.0, 1.0, 1.5, 2.0, 3.5, 3.5, 5.0, 9.0];
        let walked: Vec<f64> = iso.predict_ascending(scores).collect();
        let searched: Vec<f64> = scores.iter().map(|s| iso.predict(*s)).collect();
        assert_eq!(walked, searched);
    }

    #[test]
    fn equal_scores_get_their_mean() {
        let iso = Isotonic::fit_sorted([(0.2, 0.0), (0.5, 1.0), (0.5, 0.0), (0.9, 1.0)]).unwrap();
        assert_eq!(iso.predict(0.5), 0.5);
        assert_eq!(iso.predict(0.2), 0.0);
        assert!(Isotonic::fit_sorted(std::iter::empty()).is_none());
    }
}
