//! Seeded held-out splits and k-fold partitions, stratified by class for classification.
//!
//! The same seed gives the same split on every machine (ChaCha8). Per class, the rows are shuffled
//! and the first ones go to the test side; class quotas are the proportional share with the
//! remainder handed out by the largest fractional part, so every class keeps its share within
//! one row, as scikit-learn's `StratifiedShuffleSplit` does.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;

use crate::error::{Result, TrainError};
use crate::frame::Target;

/// Row indices of the two sides of a split, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Groups of rows to stratify on: one per class, or all rows for regression.
fn strata(target: &Target) -> Vec<Vec<usize>> {
    match target {
        Target::Classes { codes, labels } => {
            let mut groups = vec![Vec::new(); labels.len()];
            for (row, &c) in codes.iter().enumerate() {
                groups[c].push(row);
            }
            groups
        }
        Target::Values(v) => vec![(0..v.len()).collect()],
    }
}

/// Splits `target`'s rows into train and test, `test_size` being the test fraction (0, 1).
pub fn train_test_split(target: &Target, test_size: f64, seed: u64) -> Result<Split> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(TrainError::param(format!("--test-size must be between 0 and 1 (exclusive), not {test_size}")));
    }
    let n = target.len();
    let n_test = (test_size * n as f64).ceil() as usize;
    let n_train = n - n_test.min(n);
    let groups = strata(target);
    let classes = groups.iter().filter(|g| !g.is_empty()).count();
    let minimum_train = if matches!(target, Target::Classes { .. }) { classes } else { 2 };
    if n_test == 0 || n_train < minimum_train || (matches!(target, Target::Classes { .. }) && n_test < classes) {
        return Err(TrainError::data(format!(
            "too few rows for the split: {n} row(s) with --test-size {test_size} leave {n_train} to train and \
             {n_test} to test; {} needs at least {minimum_train} to train and {} to test",
            if classes > 1 { "stratifying these classes" } else { "training" },
            if classes > 1 { classes } else { 1 }
        )));
    }
    if let Target::Classes { labels, .. } = target
        && let Some((class, _)) = groups.iter().enumerate().find(|(_, g)| g.len() == 1)
    {
        return Err(TrainError::data(format!(
            "class '{}' has a single row: a stratified split needs at least two rows of every class",
            labels[class]
        )));
    }
    let quotas = proportional_quotas(&groups.iter().map(Vec::len).collect::<Vec<_>>(), n_test);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::with_capacity(n_train), Vec::with_capacity(n_test));
    for (mut group, quota) in groups.into_iter().zip(quotas) {
        group.shuffle(&mut rng);
        test.extend_from_slice(&group[..quota]);
        train.extend_from_slice(&group[quota..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Split { train, test })
}

/// `k` folds of `rows` (indices into `target`), stratified: fold `i`'s test side, every other
/// fold's rows train.
pub fn k_fold(target: &Target, rows: &[usize], k: usize, seed: u64) -> Result<Vec<Split>> {
    if k < 2 {
        return Err(TrainError::param(format!("--cv must be at least 2 folds, not {k}")));
    }
    if rows.len() < k {
        return Err(TrainError::data(format!("too few rows ({}) for {k}-fold cross-validation", rows.len())));
    }
    let sub = target.take(rows);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; rows.len()];
    let mut next = 0usize;
    for mut group in strata(&sub) {
        group.shuffle(&mut rng);
        // Round robin continues across classes so fold sizes differ by at most one.
        for local in group {
            fold_of[local] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|fold| {
            let (test, train): (Vec<usize>, Vec<usize>) = (0..rows.len()).partition(|&local| fold_of[local] == fold);
            Split {
                train: train.into_iter().map(|l| rows[l]).collect(),
                test: test.into_iter().map(|l| rows[l]).collect(),
            }
        })
        .collect())
}

/// Shares of `total` proportional to `sizes`, summing to `total`: floors first, then one more for
/// the largest remainders (ties to the larger group, then the earlier one).
pub fn proportional_quotas(sizes: &[usize], total: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes.iter().map(|&s| s as f64 * total as f64 / n as f64).collect();
    let mut quotas: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(sizes[b].cmp(&sizes[a])).then(a.cmp(&b))
    });
    let mut left = total.saturating_sub(quotas.iter().sum());
    for i in order.into_iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if quotas[i] < sizes[i] {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(counts: &[usize]) -> Target {
        let codes = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c, n)).collect();
        Target::Classes { codes, labels: (0..counts.len()).map(|c| c.to_string()).collect() }
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_seeded() {
        let t = classes(&[700, 200, 100]);
        let s = train_test_split(&t, 0.2, 42).expect("split");
        assert_eq!(s.test.len(), 200);
        assert_eq!(s.train.len(), 800);
        let Target::Classes { codes, .. } = &t else { unreachable!() };
        let count = |c| s.test.iter().filter(|&&r| codes[r] == c).count();
        assert_eq!((count(0), count(1), count(2)), (140, 40, 20));
        assert_eq!(s, train_test_split(&t, 0.2, 42).expect("again"));
        assert_ne!(s, train_test_split(&t, 0.2, 7).expect("other seed"));
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn too_few_rows_and_singleton_classes_are_errors() {
        let e = train_test_split(&classes(&[1, 1]), 0.2, 0).expect_err("tiny").to_string();
        assert!(e.contains("too few rows"), "{e}");
        let e = train_test_split(&classes(&[50, 1]), 0.2, 0).expect_err("singleton").to_string();
        assert!(e.contains("class '1' has a single row"), "{e}");
        assert!(train_test_split(&Target::Values(vec![1.0; 10]), 1.0, 0).is_err());
    }

    #[test]
    fn k_fold_covers_every_row_once() {
        let t = classes(&[30, 12]);
        let rows: Vec<usize> = (0..42).collect();
        let folds = k_fold(&t, &rows, 5, 1).expect("folds");
        let mut tested: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
        tested.sort_unstable();
        assert_eq!(tested, rows);
        for f in &folds {
            assert!(f.test.len() == 8 || f.test.len() == 9);
            assert_eq!(f.train.len() + f.test.len(), 42);
        }
    }

    #[test]
    fn quotas_sum_to_the_total() {
        assert_eq!(proportional_quotas(&[5, 5, 5], 4), vec![2, 1, 1]);
        assert_eq!(proportional_quotas(&[3, 1], 2), vec![2, 0]);
    }
}
