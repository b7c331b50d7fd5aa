//! A red-team campaign: the checks a plan names, run on one model and one dataset, gathered
//! into a report with flat metric names a policy can test (`redteam.pgd.eps_0_1.
//! robust_accuracy`, `privacy.membership_auc`, …) and the successful adversarial examples.
//!
//! Evasion attacks the rows the model did not train on when the data is its training data
//! (the split is recomputed from the model's recorded seed), otherwise a sample of all rows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bastion_ml::predictor::{Predictor, Table};
use bastion_ml::split::Fold;
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{RedteamError, RedteamResult};
use crate::extraction::{Extracted, extraction};
use crate::gradient::{GradientAttack, loss_gradient};
use crate::hopskipjump::HopSkipJump;
use crate::membership::{Separation, loss_threshold, shadow};
use crate::norm::Norm;
use crate::oracle::{Oracle, argmax_rows};
use crate::space::Space;
use crate::square::Square;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Fgsm,
    Pgd,
    HopSkipJump,
    Square,
    Membership,
    Extraction,
    Poisoning,
    Defence,
}

impl Check {
    pub const ALL: [Check; 8] = [
        Check::Fgsm,
        Check::Pgd,
        Check::HopSkipJump,
        Check::Square,
        Check::Membership,
        Check::Extraction,
        Check::Poisoning,
        Check::Defence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fgsm => "fgsm",
            Self::Pgd => "pgd",
            Self::HopSkipJump => "hopskipjump",
            Self::Square => "square",
            Self::Membership => "membership",
            Self::Extraction => "extraction",
            Self::Poisoning => "poisoning",
            Self::Defence => "defence",
        }
    }

    pub fn parse(s: &str) -> RedteamResult<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s || (s == "hsj" && *c == Self::HopSkipJump))
            .ok_or_else(|| {
                RedteamError::invalid(format!(
                    "unknown check '{s}' (choose from fgsm, pgd, hopskipjump, square, membership, extraction, poisoning, defence)"
                ))
            })
    }
}

/// What to run and how hard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub checks: BTreeSet<Check>,
    /// Perturbation sizes, in feature units (standard deviations for built-in models).
    pub eps: Vec<f64>,
    pub norms: Vec<Norm>,
    pub pgd_steps: usize,
    pub random_start: bool,
    pub hopskipjump: HopSkipJump,
    pub square_iterations: usize,
    /// Rows attacked for evasion, at most.
    pub max_rows: usize,
    pub extraction_budgets: Vec<usize>,
    /// Shares of training labels flipped.
    pub poison_rates: Vec<f64>,
    /// Successful adversarial examples kept per attack and ε, at most.
    pub max_examples: usize,
    /// The defence check retrains with adversarial training at this L∞ radius, with this
    /// many PGD steps (1: FGSM).
    pub defence_eps: f64,
    pub defence_steps: usize,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            checks: Check::ALL.into_iter().collect(),
            eps: vec![0.05, 0.1, 0.2, 0.3, 0.5],
            norms: vec![Norm::Linf],
            pgd_steps: 40,
            random_start: false,
            hopskipjump: HopSkipJump {
                max_iter: 20,
                ..HopSkipJump::default()
            },
            square_iterations: 300,
            max_rows: 500,
            extraction_budgets: vec![50, 100, 250, 500, 1000],
            poison_rates: vec![0.05, 0.1, 0.2],
            max_examples: 1000,
            defence_eps: 0.1,
            defence_steps: 1,
            seed: 0,
        }
    }
}

impl Plan {
    pub fn check(&self) -> RedteamResult<()> {
        if let Some(e) = self.eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
            return Err(RedteamError::invalid(format!(
                "epsilon {e} is not a positive number"
            )));
        }
        if let Some(r) = self.poison_rates.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
            return Err(RedteamError::invalid(format!(
                "poisoning rate {r} is not between 0 and 1"
            )));
        }
        if self
            .extraction_budgets
            .iter()
            .any(|&b| b == 0 || b > 1_000_000)
        {
            return Err(RedteamError::invalid(
                "extraction budgets must be between 1 and 1,000,000 queries",
            ));
        }
        crate::norm::check_eps(self.defence_eps)?;
        if self.max_rows == 0 || self.norms.is_empty() {
            return Err(RedteamError::invalid(
                "a plan needs at least one row and one norm",
            ));
        }
        Ok(())
    }
}

/// Trains a model like the one under attack, for shadow models and poisoning.
pub trait Retrain: Sync {
    /// A model of the same kind and parameters (`overrides` replacing some), fitted on
    /// `fold.train` rows of the subject's table, with the classes of the rows in `relabel`
    /// replaced (`(row, class)`).
    fn retrain(
        &self,
        fold: &Fold,
        relabel: &[(usize, usize)],
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> RedteamResult<Box<dyn Predictor>>;
}

/// The model and data under attack.
pub struct Subject<'a> {
    pub model: &'a dyn Predictor,
    /// The data in the model's input columns.
    pub table: &'a Table,
    /// Each row's true class, as the model's class index.
    pub y: Vec<usize>,
    /// The model's own training split of `table`, when `table` is its training data.
    pub split: Option<Fold>,
    pub space: Space,
    pub trainer: Option<&'a dyn Retrain>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evasion {
    pub attack: Check,
    pub norm: Norm,
    pub eps: f64,
    pub robust_accuracy: f64,
    /// Share of the correctly classified rows the attack turned.
    pub success_rate: f64,
    /// Prediction queries spent (black-box attacks).
    pub queries: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinimalPerturbation {
    pub attack: Check,
    pub norm: Norm,
    /// Median over the correctly classified rows of the smallest perturbation that turned
    /// them (for FGSM and PGD, the smallest ε of the plan); `None` when fewer than half
    /// were turned.
    pub median: Option<f64>,
    pub turned: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Membership {
    pub members: usize,
    pub non_members: usize,
    pub loss_threshold: Separation,
    pub shadow: Option<Separation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Poisoned {
    pub flipped: f64,
    pub rows_flipped: usize,
    pub accuracy: f64,
    /// Accuracy of the same training without flipped labels, minus `accuracy`.
    pub drop: f64,
}

/// Clean and robust accuracy of the model and of the same training with adversarial
/// training, on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Defence {
    pub train_eps: f64,
    pub train_steps: usize,
    pub clean_accuracy: Pair,
    pub robust: Vec<DefendedAttack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    pub without: f64,
    pub with: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefendedAttack {
    pub attack: Check,
    pub norm: Norm,
    pub eps: f64,
    pub robust_accuracy: Pair,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub check: Check,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceSummary {
    pub features: Vec<String>,
    pub lo: Vec<Option<f64>>,
    pub hi: Vec<Option<f64>>,
    pub immutable: Vec<String>,
    pub integer: Vec<String>,
    pub one_hot_groups: usize,
}

impl SpaceSummary {
    fn of(s: &Space) -> Self {
        let finite = |v: f64| v.is_finite().then_some(v);
        let pick = |f: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..s.dim())
                .filter(|&j| f(j))
                .map(|j| s.features[j].clone())
                .collect()
        };
        Self {
            features: s.features.clone(),
            lo: s.lo.iter().copied().map(finite).collect(),
            hi: s.hi.iter().copied().map(finite).collect(),
            immutable: pick(&|j| !s.mutable[j]),
            integer: pick(&|j| s.integer[j].is_some()),
            one_hot_groups: s.one_hot.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub seed: u64,
    /// Which rows evasion attacked: "held-out" (the model's test rows) or "sample".
    pub rows_from: &'static str,
    pub rows: usize,
    /// The rows of the data evasion attacked, in order.
    pub attacked: Vec<usize>,
    pub clean_accuracy: f64,
    pub differentiable: bool,
    pub space: SpaceSummary,
    pub plan: Plan,
    pub evasion: Vec<Evasion>,
    pub minimal_perturbation: Vec<MinimalPerturbation>,
    pub membership: Option<Membership>,
    pub extraction: Vec<Extracted>,
    pub poisoning: Vec<Poisoned>,
    pub defence: Option<Defence>,
    pub skipped: Vec<Skipped>,
    /// Every figure under a flat name, as policies refer to them.
    pub metrics: BTreeMap<String, f64>,
}

/// A successful adversarial example, in feature space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub attack: Check,
    pub norm: Norm,
    /// The attack's ε (`None` for HopSkipJump, whose perturbation is minimal, not bounded).
    pub eps: Option<f64>,
    /// The row of the data it was made from.
    pub row: usize,
    pub class: usize,
    pub predicted: usize,
    pub perturbation: f64,
    pub features: Vec<f64>,
}

/// `eps_0_1` for 0.1: a metric-name segment.
pub fn eps_key(eps: f64) -> String {
    let t = format!("{eps:.6}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("eps_{}", t.replace('.', "_"))
}

fn attack_key(attack: Check, norm: Norm) -> String {
    match norm {
        Norm::Linf => attack.as_str().to_owned(),
        Norm::L2 => format!("{}_l2", attack.as_str()),
    }
}

struct Run<'s, 'a> {
    subject: &'s Subject<'a>,
    plan: &'s Plan,
    oracle: Oracle<'a>,
    progress: &'s (dyn Fn(&str) + Sync),
    report: Report,
    examples: Vec<Example>,
}

/// Runs the plan's checks on the subject. `progress` hears what is starting.
pub fn run(
    subject: &Subject,
    plan: &Plan,
    progress: &(dyn Fn(&str) + Sync),
) -> RedteamResult<(Report, Vec<Example>)> {
    plan.check()?;
    subject.table.check()?;
    if subject.y.len() != subject.table.rows() {
        return Err(RedteamError::invalid(format!(
            "{} labels for {} rows",
            subject.y.len(),
            subject.table.rows()
        )));
    }
    if subject.space.dim() != subject.model.signature().features.len() {
        return Err(RedteamError::invalid(
            "the attack space does not match the model's features",
        ));
    }
    let oracle = Oracle::new(subject.model)?;
    let x_all = subject.model.features(subject.table)?;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let (rows_from, mut rows) = match &subject.split {
        Some(f) => ("held-out", f.test.clone()),
        None => ("sample", (0..subject.table.rows()).collect::<Vec<_>>()),
    };
    rows.shuffle(&mut rng);
    rows.truncate(plan.max_rows);
    rows.sort_unstable();
    if rows.is_empty() {
        return Err(RedteamError::invalid("there are no rows to attack"));
    }
    let x = x_all.select(Axis(0), &rows);
    let y: Vec<usize> = rows.iter().map(|&i| subject.y[i]).collect();
    let clean = oracle.labels(x.view())?;
    let correct = clean.iter().zip(&y).filter(|(a, b)| a == b).count();
    let differentiable = oracle.differentiable(x.view(), &y);
    let mut r = Run {
        subject,
        plan,
        progress,
        report: Report {
            seed: plan.seed,
            rows_from,
            rows: rows.len(),
            attacked: rows.clone(),
            clean_accuracy: correct as f64 / rows.len() as f64,
            differentiable,
            space: SpaceSummary::of(&subject.space),
            plan: plan.clone(),
            evasion: Vec::new(),
            minimal_perturbation: Vec::new(),
            membership: None,
            extraction: Vec::new(),
            poisoning: Vec::new(),
            defence: None,
            skipped: Vec::new(),
            metrics: BTreeMap::new(),
        },
        oracle,
        examples: Vec::new(),
    };
    r.evasion(&x, &y, &rows, &clean)?;
    r.membership()?;
    r.extraction(&x_all)?;
    r.poisoning()?;
    r.defence(&x, &y, &rows)?;
    r.metrics();
    Ok((r.report, r.examples))
}

impl Run<'_, '_> {
    fn skip(&mut self, check: Check, why: impl Into<String>) {
        if self.plan.checks.contains(&check) {
            self.report.skipped.push(Skipped {
                check,
                why: why.into(),
            });
        }
    }

    /// Records one attack's outcome at one ε and keeps its successful examples.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        attack: Check,
        norm: Norm,
        eps: f64,
        x: &Array2<f64>,
        adv: &Array2<f64>,
        y: &[usize],
        rows: &[usize],
        clean: &[usize],
        queries: u64,
        seconds: f64,
    ) -> RedteamResult<Vec<bool>> {
        let predicted = argmax_rows(&self.oracle.probabilities(adv.view())?);
        let turned: Vec<bool> = (0..y.len())
            .map(|i| clean[i] == y[i] && predicted[i] != y[i])
            .collect();
        let correct = (0..y.len()).filter(|&i| predicted[i] == y[i]).count();
        let clean_correct = (0..y.len()).filter(|&i| clean[i] == y[i]).count();
        self.report.evasion.push(Evasion {
            attack,
            norm,
            eps,
            robust_accuracy: correct as f64 / y.len() as f64,
            success_rate: if clean_correct == 0 {
                0.0
            } else {
                turned.iter().filter(|&&t| t).count() as f64 / clean_correct as f64
            },
            queries,
            seconds,
        });
        for i in (0..y.len())
            .filter(|&i| turned[i])
            .take(self.plan.max_examples)
        {
            self.examples.push(Example {
                attack,
                norm,
                eps: Some(eps),
                row: rows[i],
                class: y[i],
                predicted: predicted[i],
                perturbation: norm.distance(adv.row(i), x.row(i)),
                features: adv.row(i).to_vec(),
            });
        }
        Ok(turned)
    }

    fn evasion(
        &mut self,
        x: &Array2<f64>,
        y: &[usize],
        rows: &[usize],
        clean: &[usize],
    ) -> RedteamResult<()> {
        let plan = self.plan;
        let clean_correct = (0..y.len()).filter(|&i| clean[i] == y[i]).count();
        let mut eps = plan.eps.clone();
        eps.sort_by(f64::total_cmp);
        for &norm in &plan.norms {
            // The gradient at the rows themselves, computed by the first white-box attack
            // that needs it; its time is that attack's.
            let mut at_rows: Option<Array2<f64>> = None;
            for attack in [Check::Fgsm, Check::Pgd] {
                if !plan.checks.contains(&attack) {
                    continue;
                }
                if !self.report.differentiable {
                    self.skip(
                        attack,
                        "the model has no input gradients (only MLP, logistic and linear models have them); the black-box attacks cover it",
                    );
                    continue;
                }
                // Per row, the smallest ε that turned it.
                let mut first: Vec<Option<f64>> = vec![None; y.len()];
                for &e in &eps {
                    (self.progress)(&format!("{} {} ε={e}", attack.as_str(), norm.as_str()));
                    let started = Instant::now();
                    let a = match attack {
                        Check::Fgsm => GradientAttack::fgsm(norm, e),
                        _ => GradientAttack::pgd(norm, e, plan.pgd_steps, plan.random_start),
                    };
                    if at_rows.is_none() && !a.random_start {
                        at_rows = Some(loss_gradient(&self.oracle, x.view(), y)?);
                    }
                    let adv = a.run_from(
                        &self.oracle,
                        &self.subject.space,
                        x.view(),
                        y,
                        plan.seed,
                        at_rows.as_ref().map(Array2::view),
                    )?;
                    // The attack alone: judging its examples is not part of it.
                    let seconds = started.elapsed().as_secs_f64();
                    let turned =
                        self.record(attack, norm, e, x, &adv, y, rows, clean, 0, seconds)?;
                    for (f, t) in first.iter_mut().zip(turned) {
                        if t && f.is_none() {
                            *f = Some(e);
                        }
                    }
                }
                let sizes: Vec<f64> = first.iter().flatten().copied().collect();
                self.minimal(attack, norm, sizes, clean_correct);
            }
            if plan.checks.contains(&Check::HopSkipJump) {
                (self.progress)(&format!("hopskipjump {}", norm.as_str()));
                let started = Instant::now();
                let hsj = HopSkipJump {
                    norm,
                    ..plan.hopskipjump
                };
                let found = hsj.run(&self.oracle, &self.subject.space, x.view(), y, plan.seed)?;
                let queries: u64 = found.iter().map(|f| f.queries).sum();
                let seconds = started.elapsed().as_secs_f64();
                let dist: Vec<f64> = (0..y.len())
                    .filter(|&i| clean[i] == y[i])
                    .map(|i| found[i].distance)
                    .collect();
                for &e in &eps {
                    let standing = dist.iter().filter(|&&d| d > e).count();
                    self.report.evasion.push(Evasion {
                        attack: Check::HopSkipJump,
                        norm,
                        eps: e,
                        robust_accuracy: standing as f64 / y.len() as f64,
                        success_rate: if dist.is_empty() {
                            0.0
                        } else {
                            (dist.len() - standing) as f64 / dist.len() as f64
                        },
                        queries,
                        seconds,
                    });
                }
                for (i, f) in found.iter().enumerate() {
                    if clean[i] != y[i] || self.examples_of(Check::HopSkipJump) >= plan.max_examples
                    {
                        continue;
                    }
                    if let Some(a) = &f.adversarial {
                        self.examples.push(Example {
                            attack: Check::HopSkipJump,
                            norm,
                            eps: None,
                            row: rows[i],
                            class: y[i],
                            predicted: argmax_rows(
                                &self.oracle.probabilities(a.view().insert_axis(Axis(0)))?,
                            )[0],
                            perturbation: f.distance,
                            features: a.to_vec(),
                        });
                    }
                }
                let sizes = dist.iter().copied().filter(|d| d.is_finite()).collect();
                self.minimal(Check::HopSkipJump, norm, sizes, clean_correct);
            }
            if plan.checks.contains(&Check::Square) {
                if norm != Norm::Linf {
                    self.skip(Check::Square, "the Square attack here is the L∞ version");
                    continue;
                }
                for &e in &eps {
                    (self.progress)(&format!("square linf ε={e}"));
                    let started = Instant::now();
                    let sq = Square::new(e, plan.square_iterations);
                    let (adv, queries) =
                        sq.run(&self.oracle, &self.subject.space, x.view(), y, plan.seed)?;
                    let seconds = started.elapsed().as_secs_f64();
                    self.record(
                        Check::Square,
                        norm,
                        e,
                        x,
                        &adv,
                        y,
                        rows,
                        clean,
                        queries,
                        seconds,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn examples_of(&self, attack: Check) -> usize {
        self.examples.iter().filter(|e| e.attack == attack).count()
    }

    fn minimal(&mut self, attack: Check, norm: Norm, mut sizes: Vec<f64>, rows: usize) {
        sizes.sort_by(f64::total_cmp);
        // The median over all correct rows: unturned rows count as larger than any size.
        let median = (rows > 0 && sizes.len() * 2 > rows).then(|| {
            let m = rows / 2;
            if rows % 2 == 1 || m >= sizes.len() {
                sizes[m.min(sizes.len() - 1)]
            } else {
                (sizes[m - 1] + sizes[m]) / 2.0
            }
        });
        self.report.minimal_perturbation.push(MinimalPerturbation {
            attack,
            norm,
            median,
            turned: sizes.len(),
            rows,
        });
    }

    fn membership(&mut self) -> RedteamResult<()> {
        if !self.plan.checks.contains(&Check::Membership) {
            return Ok(());
        }
        let Some(split) = &self.subject.split else {
            self.skip(
                Check::Membership,
                "the data is not the model's training data, so its members are unknown",
            );
            return Ok(());
        };
        (self.progress)("membership inference");
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed ^ 0x6d65_6d62);
        let non: Vec<usize> = split.test.clone();
        let mut members = split.train.clone();
        members.shuffle(&mut rng);
        members.truncate(non.len().max(1));
        members.sort_unstable();
        let answers =
            |m: &dyn Predictor, idx: &[usize]| -> RedteamResult<(Array2<f64>, Vec<usize>)> {
                let p = match m.predict(&self.subject.table.take(idx))? {
                    bastion_ml::predictor::Prediction::Classes(p) => p,
                    _ => {
                        return Err(RedteamError::invalid(
                            "the model did not return probabilities",
                        ));
                    }
                };
                Ok((p, idx.iter().map(|&i| self.subject.y[i]).collect()))
            };
        let (pm, ym) = answers(self.subject.model, &members)?;
        let (pn, yn) = answers(self.subject.model, &non)?;
        let loss = loss_threshold((&pm, &ym), (&pn, &yn))?;
        let shadow_sep = match self.subject.trainer {
            None => {
                self.report.skipped.push(Skipped {
                    check: Check::Membership,
                    why:
                        "shadow-model attack: the model is not a built-in model Bastion can retrain"
                            .into(),
                });
                None
            }
            Some(t) => {
                // The attacker's data: the rows the model never saw, half to train the
                // shadow on, half to show it non-members.
                let mut own = non.clone();
                own.shuffle(&mut rng);
                let half = own.len() / 2;
                let fold = Fold {
                    train: own[..half].to_vec(),
                    test: own[half..].to_vec(),
                };
                match t.retrain(&fold, &[], &Default::default()) {
                    Ok(sm) => {
                        let (pi, yi) = answers(sm.as_ref(), &fold.train)?;
                        let (po, yo) = answers(sm.as_ref(), &fold.test)?;
                        Some(shadow((&pi, &yi), (&po, &yo), (&pm, &ym), (&pn, &yn))?)
                    }
                    Err(e) => {
                        self.report.skipped.push(Skipped {
                            check: Check::Membership,
                            why: format!(
                                "shadow-model attack: the shadow model could not be trained: {e}"
                            ),
                        });
                        None
                    }
                }
            }
        };
        self.report.membership = Some(Membership {
            members: members.len(),
            non_members: non.len(),
            loss_threshold: loss,
            shadow: shadow_sep,
        });
        Ok(())
    }

    fn extraction(&mut self, x_all: &Array2<f64>) -> RedteamResult<()> {
        if !self.plan.checks.contains(&Check::Extraction) {
            return Ok(());
        }
        (self.progress)("model extraction");
        let mut own: Vec<usize> = match &self.subject.split {
            Some(f) => f.test.clone(),
            None => (0..self.subject.table.rows()).collect(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed ^ 0x6578_7472);
        own.shuffle(&mut rng);
        if own.len() < 4 {
            self.skip(
                Check::Extraction,
                "fewer than 4 rows to query near and compare on",
            );
            return Ok(());
        }
        let half = own.len() / 2;
        let pool = x_all.select(Axis(0), &own[..half]);
        let eval = x_all.select(Axis(0), &own[half..]);
        let y_eval: Vec<usize> = own[half..].iter().map(|&i| self.subject.y[i]).collect();
        let mut budgets = self.plan.extraction_budgets.clone();
        budgets.sort_unstable();
        budgets.dedup();
        self.report.extraction = extraction(
            &self.oracle,
            &self.subject.space,
            pool.view(),
            (eval.view(), &y_eval),
            &budgets,
            self.plan.seed,
        )?;
        Ok(())
    }

    fn poisoning(&mut self) -> RedteamResult<()> {
        if !self.plan.checks.contains(&Check::Poisoning) {
            return Ok(());
        }
        let (Some(split), Some(trainer)) = (&self.subject.split, self.subject.trainer) else {
            self.skip(
                Check::Poisoning,
                "retraining needs a built-in model and its own training data",
            );
            return Ok(());
        };
        let classes = self.oracle.classes();
        let accuracy = |m: &dyn Predictor| -> RedteamResult<f64> {
            let t = self.subject.table.take(&split.test);
            let pred = m
                .predict(&t)?
                .labels()
                .ok_or_else(|| RedteamError::invalid("the model did not return classes"))?;
            let ok = pred
                .iter()
                .zip(&split.test)
                .filter(|(p, i)| **p == self.subject.y[**i])
                .count();
            Ok(ok as f64 / split.test.len() as f64)
        };
        (self.progress)("poisoning: retraining without flipped labels");
        let baseline = accuracy(trainer.retrain(split, &[], &Default::default())?.as_ref())?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed ^ 0x706f_6973);
        for &rate in &self.plan.poison_rates {
            (self.progress)(&format!("poisoning: {:.0}% flipped labels", rate * 100.0));
            let k = ((split.train.len() as f64 * rate).round() as usize).min(split.train.len());
            let mut rows = split.train.clone();
            rows.shuffle(&mut rng);
            let relabel: Vec<(usize, usize)> = rows[..k]
                .iter()
                .map(|&i| {
                    let c = self.subject.y[i];
                    let other = (c + rng.random_range(1..classes.max(2))) % classes.max(2);
                    (i, other)
                })
                .collect();
            let acc = accuracy(
                trainer
                    .retrain(split, &relabel, &Default::default())?
                    .as_ref(),
            )?;
            self.report.poisoning.push(Poisoned {
                flipped: rate,
                rows_flipped: k,
                accuracy: acc,
                drop: baseline - acc,
            });
        }
        Ok(())
    }

    fn defence(&mut self, x: &Array2<f64>, y: &[usize], rows: &[usize]) -> RedteamResult<()> {
        if !self.plan.checks.contains(&Check::Defence) {
            return Ok(());
        }
        let (Some(split), Some(trainer)) = (&self.subject.split, self.subject.trainer) else {
            self.skip(
                Check::Defence,
                "adversarial training needs a built-in model and its own training data",
            );
            return Ok(());
        };
        if !self.report.differentiable {
            self.skip(Check::Defence, "adversarial training needs input gradients");
            return Ok(());
        }
        (self.progress)("defence: adversarial training");
        let mut overrides = serde_json::Map::new();
        overrides.insert("adversarial_eps".into(), self.plan.defence_eps.into());
        overrides.insert("adversarial_steps".into(), self.plan.defence_steps.into());
        let defended = match trainer.retrain(split, &[], &overrides) {
            Ok(m) => m,
            Err(e) => {
                self.skip(
                    Check::Defence,
                    format!(
                        "adversarial training is an option of the MLP and logistic trainers: {e}"
                    ),
                );
                return Ok(());
            }
        };
        // The defended model's own features: its scaling was fitted on the same rows, so
        // the same table rows give the same feature matrix.
        let xd = defended.features(&self.subject.table.take(rows))?;
        let oracle = Oracle::new(defended.as_ref())?;
        let accuracy = |o: &Oracle, m: &Array2<f64>| -> RedteamResult<f64> {
            let l = o.labels(m.view())?;
            Ok(l.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
        };
        let mut robust = Vec::new();
        let mut eps = self.plan.eps.clone();
        eps.sort_by(f64::total_cmp);
        for &norm in &self.plan.norms {
            for attack in [Check::Fgsm, Check::Pgd] {
                for &e in &eps {
                    let a = match attack {
                        Check::Fgsm => GradientAttack::fgsm(norm, e),
                        _ => GradientAttack::pgd(
                            norm,
                            e,
                            self.plan.pgd_steps,
                            self.plan.random_start,
                        ),
                    };
                    let without = a.run(
                        &self.oracle,
                        &self.subject.space,
                        x.view(),
                        y,
                        self.plan.seed,
                    )?;
                    let with = a.run(&oracle, &self.subject.space, xd.view(), y, self.plan.seed)?;
                    robust.push(DefendedAttack {
                        attack,
                        norm,
                        eps: e,
                        robust_accuracy: Pair {
                            without: accuracy(&self.oracle, &without)?,
                            with: accuracy(&oracle, &with)?,
                        },
                    });
                }
            }
        }
        self.report.defence = Some(Defence {
            train_eps: self.plan.defence_eps,
            train_steps: self.plan.defence_steps,
            clean_accuracy: Pair {
                without: self.report.clean_accuracy,
                with: accuracy(&oracle, &xd)?,
            },
            robust,
        });
        Ok(())
    }

    fn metrics(&mut self) {
        let m = &mut self.report.metrics;
        m.insert("redteam.clean_accuracy".into(), self.report.clean_accuracy);
        for e in &self.report.evasion {
            let key = format!(
                "redteam.{}.{}",
                attack_key(e.attack, e.norm),
                eps_key(e.eps)
            );
            m.insert(format!("{key}.robust_accuracy"), e.robust_accuracy);
            m.insert(format!("{key}.success_rate"), e.success_rate);
        }
        let mut worst: BTreeMap<String, f64> = BTreeMap::new();
        for e in &self.report.evasion {
            let w = worst
                .entry(format!("redteam.{}.robust_accuracy", eps_key(e.eps)))
                .or_insert(1.0);
            *w = w.min(e.robust_accuracy);
        }
        m.extend(worst);
        for p in &self.report.minimal_perturbation {
            if let Some(v) = p.median {
                m.insert(
                    format!(
                        "redteam.{}.median_perturbation",
                        attack_key(p.attack, p.norm)
                    ),
                    v,
                );
            }
        }
        if let Some(mb) = &self.report.membership {
            m.insert("privacy.membership.loss_auc".into(), mb.loss_threshold.auc);
            m.insert(
                "privacy.membership.loss_advantage".into(),
                mb.loss_threshold.advantage,
            );
            let (mut auc, mut adv) = (mb.loss_threshold.auc, mb.loss_threshold.advantage);
            if let Some(s) = &mb.shadow {
                m.insert("privacy.membership.shadow_auc".into(), s.auc);
                m.insert("privacy.membership.shadow_advantage".into(), s.advantage);
                auc = auc.max(s.auc);
                adv = adv.max(s.advantage);
            }
            m.insert("privacy.membership_auc".into(), auc);
            m.insert("privacy.membership_advantage".into(), adv);
        }
        for x in &self.report.extraction {
            m.insert(
                format!("privacy.extraction.queries_{}.fidelity", x.queries),
                x.fidelity,
            );
        }
        if let Some(last) = self.report.extraction.last() {
            m.insert("privacy.extraction_fidelity".into(), last.fidelity);
        }
        for p in &self.report.poisoning {
            let k = eps_key(p.flipped).replacen("eps_", "flip_", 1);
            m.insert(format!("poisoning.{k}.accuracy"), p.accuracy);
            m.insert(format!("poisoning.{k}.accuracy_drop"), p.drop);
        }
        if let Some(d) = &self.report.defence {
            m.insert("defence.clean_accuracy".into(), d.clean_accuracy.with);
            for r in &d.robust {
                let key = format!(
                    "defence.{}.{}.robust_accuracy",
                    attack_key(r.attack, r.norm),
                    eps_key(r.eps)
                );
                m.insert(key, r.robust_accuracy.with);
            }
        }
        if let Some(max) = self
            .report
            .poisoning
            .iter()
            .map(|p| p.drop)
            .reduce(f64::max)
        {
            m.insert("poisoning.max_accuracy_drop".into(), max);
        }
    }
}
