//! Looping strategies (`matrix`, `repeat`, `parallelism`) and their
//! expansion into copies named `<id>_0`, `<id>_1`, … as Harness names them.
//!
//! Axes and counts may be expressions (`<+pipeline.variables.x.split(",")>`,
//! `<+input>`); those are resolved by the caller through [`Inputs`], so the
//! same expansion serves `validate` (literals only) and `run`.

use super::location::Location;
use super::model::{ExecutionItem, Parallel, Pipeline, Setting, Stage, Str};

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Matrix(Matrix),
    Repeat(Repeat),
    Parallelism {
        count: Setting<u32>,
        max_concurrency: Option<Setting<u32>>,
        loc: Location,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Axes in the order written.
    pub axes: Vec<(Str, Axis)>,
    /// Combinations to leave out; each lists some axes' values.
    pub exclude: Vec<Vec<(Str, Str)>>,
    pub max_concurrency: Option<Setting<u32>>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Axis {
    Values(Vec<Str>),
    /// An expression yielding a list at run time.
    Expr(Str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    pub source: RepeatSource,
    pub max_concurrency: Option<Setting<u32>>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RepeatSource {
    Times(Setting<u32>),
    Items(Axis),
}

/// What one copy of a looped step, group or stage knows about its loop:
/// `<+strategy.iteration>`, `<+strategy.iterations>`, `<+matrix.KEY>`,
/// `<+repeat.item>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iteration {
    pub index: usize,
    pub count: usize,
    pub matrix: Vec<(String, String)>,
    pub repeat_item: Option<String>,
}

impl Iteration {
    pub fn matrix_value(&self, key: &str) -> Option<&str> {
        self.matrix
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The identifier of this copy: `test` -> `test_0`.
    pub fn suffixed(&self, id: &Str) -> Str {
        Str::new(format!("{}_{}", id.value, self.index), id.loc)
    }
}

/// Whether `id` is a copy's identifier of `written` ([`Iteration::suffixed`]:
/// `written_N`).
pub fn is_copy_of(id: &str, written: &str) -> bool {
    id.strip_prefix(written)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrategyError {
    #[error("expression `{expr}` at line {} must be resolved first: {reason}", loc.line)]
    Unresolved {
        expr: String,
        loc: Location,
        reason: String,
    },
    #[error("the strategy at line {} yields no iterations", loc.line)]
    Empty { loc: Location },
    #[error("the strategy at line {} yields {count} iterations, more than the limit of {MAX_ITERATIONS}", loc.line)]
    TooMany { loc: Location, count: usize },
}

/// One matrix combination: axis name and value, in axis order.
type Combination = Vec<(String, String)>;

/// Most copies one strategy may make.
pub const MAX_ITERATIONS: usize = 256;

/// Resolves expressions found in strategies.
pub trait Inputs {
    /// A list-valued expression (a matrix axis or repeat items).
    fn list(&self, expr: &Str) -> Result<Vec<String>, String>;
    /// A number-valued expression (times, parallelism, maxConcurrency).
    fn number(&self, expr: &Str) -> Result<u32, String>;
}

/// Resolves nothing: for checking literal strategies without running.
pub struct LiteralsOnly;

impl Inputs for LiteralsOnly {
    fn list(&self, _expr: &Str) -> Result<Vec<String>, String> {
        Err("it is only known at run time".into())
    }
    fn number(&self, _expr: &Str) -> Result<u32, String> {
        Err("it is only known at run time".into())
    }
}

fn number(setting: &Setting<u32>, inputs: &dyn Inputs) -> Result<u32, StrategyError> {
    match setting {
        Setting::Value(n) => Ok(*n),
        Setting::Expr(e) => inputs
            .number(e)
            .map_err(|reason| StrategyError::Unresolved {
                expr: e.value.clone(),
                loc: e.loc,
                reason,
            }),
    }
}

fn axis_values(axis: &Axis, inputs: &dyn Inputs) -> Result<Vec<String>, StrategyError> {
    match axis {
        Axis::Values(values) => Ok(values.iter().map(|v| v.value.clone()).collect()),
        Axis::Expr(e) => inputs.list(e).map_err(|reason| StrategyError::Unresolved {
            expr: e.value.clone(),
            loc: e.loc,
            reason,
        }),
    }
}

impl Strategy {
    pub fn loc(&self) -> Location {
        match self {
            Strategy::Matrix(m) => m.loc,
            Strategy::Repeat(r) => r.loc,
            Strategy::Parallelism { loc, .. } => *loc,
        }
    }

    /// How many copies may run at once (`None`: all of them).
    pub fn max_concurrency(&self, inputs: &dyn Inputs) -> Result<Option<usize>, StrategyError> {
        let setting = match self {
            Strategy::Matrix(m) => &m.max_concurrency,
            Strategy::Repeat(r) => &r.max_concurrency,
            Strategy::Parallelism {
                max_concurrency, ..
            } => max_concurrency,
        };
        match setting {
            None => Ok(None),
            Some(s) => Ok(Some(number(s, inputs)? as usize)),
        }
    }

    /// The iterations this strategy yields, in Harness order.
    pub fn iterations(&self, inputs: &dyn Inputs) -> Result<Vec<Iteration>, StrategyError> {
        let loc = self.loc();
        let combos: Vec<(Combination, Option<String>)> = match self {
            Strategy::Matrix(m) => matrix_combinations(m, inputs)?
                .into_iter()
                .map(|c| (c, None))
                .collect(),
            Strategy::Repeat(Repeat {
                source: RepeatSource::Times(times),
                ..
            })
            | Strategy::Parallelism { count: times, .. } => {
                let n = number(times, inputs)? as usize;
                if n > MAX_ITERATIONS {
                    return Err(StrategyError::TooMany { loc, count: n });
                }
                (0..n).map(|_| (Vec::new(), None)).collect()
            }
            Strategy::Repeat(Repeat {
                source: RepeatSource::Items(axis),
                ..
            }) => axis_values(axis, inputs)?
                .into_iter()
                .map(|item| (Vec::new(), Some(item)))
                .collect(),
        };
        if combos.is_empty() {
            return Err(StrategyError::Empty { loc });
        }
        if combos.len() > MAX_ITERATIONS {
            return Err(StrategyError::TooMany {
                loc,
                count: combos.len(),
            });
        }
        let count = combos.len();
        Ok(combos
            .into_iter()
            .enumerate()
            .map(|(index, (matrix, repeat_item))| Iteration {
                index,
                count,
                matrix,
                repeat_item,
            })
            .collect())
    }
}

/// The cartesian product of the axes, first axis varying slowest, minus
/// the excluded combinations.
fn matrix_combinations(m: &Matrix, inputs: &dyn Inputs) -> Result<Vec<Combination>, StrategyError> {
    let mut combos: Vec<Combination> = vec![Vec::new()];
    for (key, axis) in &m.axes {
        let values = axis_values(axis, inputs)?;
        let mut next = Vec::with_capacity(combos.len() * values.len());
        for combo in &combos {
            for value in &values {
                let mut c = combo.clone();
                c.push((key.value.clone(), value.clone()));
                next.push(c);
            }
        }
        if next.len() > MAX_ITERATIONS {
            return Err(StrategyError::TooMany {
                loc: m.loc,
                count: next.len(),
            });
        }
        combos = next;
    }
    combos.retain(|combo| {
        !m.exclude.iter().any(|ex| {
            ex.iter().all(|(k, v)| {
                combo
                    .iter()
                    .any(|(ck, cv)| ck == &k.value && cv == &v.value)
            })
        })
    });
    Ok(combos)
}

/// Expands every strategy in a list of execution items: a looped step or
/// group becomes a `Parallel` of its copies.
pub fn expand_items(
    items: &[ExecutionItem],
    inputs: &dyn Inputs,
) -> Result<Vec<ExecutionItem>, StrategyError> {
    items.iter().map(|item| expand_item(item, inputs)).collect()
}

fn expand_item(item: &ExecutionItem, inputs: &dyn Inputs) -> Result<ExecutionItem, StrategyError> {
    match item {
        ExecutionItem::Step(step) => {
            let Some(strategy) = &step.strategy else {
                return Ok(item.clone());
            };
            let copies = strategy
                .iterations(inputs)?
                .into_iter()
                .map(|it| {
                    let mut copy = step.clone();
                    copy.id = it.suffixed(&step.id);
                    copy.strategy = None;
                    copy.iteration = Some(it);
                    ExecutionItem::Step(copy)
                })
                .collect();
            Ok(ExecutionItem::Parallel(Parallel {
                items: copies,
                max_concurrency: strategy.max_concurrency(inputs)?,
                loc: step.loc,
            }))
        }
        ExecutionItem::Parallel(p) => Ok(ExecutionItem::Parallel(Parallel {
            items: expand_items(&p.items, inputs)?,
            max_concurrency: p.max_concurrency,
            loc: p.loc,
        })),
        ExecutionItem::Group(group) => {
            let mut inner = group.clone();
            inner.steps = expand_items(&group.steps, inputs)?;
            let Some(strategy) = &group.strategy else {
                return Ok(ExecutionItem::Group(inner));
            };
            inner.strategy = None;
            let copies = strategy
                .iterations(inputs)?
                .into_iter()
                .map(|it| {
                    let mut copy = inner.clone();
                    copy.id = it.suffixed(&group.id);
                    copy.iteration = Some(it);
                    ExecutionItem::Group(copy)
                })
                .collect();
            Ok(ExecutionItem::Parallel(Parallel {
                items: copies,
                max_concurrency: strategy.max_concurrency(inputs)?,
                loc: group.loc,
            }))
        }
    }
}

/// Expands a stage's own strategy and those of its steps. Copies of a
/// looped stage share a fresh `loop_group` (the caller passes one), which
/// is also their `parallel_group` unless the stage is in a `parallel:` block.
pub fn expand_stage(
    stage: &Stage,
    inputs: &dyn Inputs,
    group_for_copies: usize,
) -> Result<Vec<Stage>, StrategyError> {
    let mut base = stage.clone();
    base.execution = expand_items(&stage.execution, inputs)?;
    let Some(strategy) = &stage.strategy else {
        return Ok(vec![base]);
    };
    base.strategy = None;
    let max_concurrency = strategy.max_concurrency(inputs)?;
    Ok(strategy
        .iterations(inputs)?
        .into_iter()
        .map(|it| {
            let mut copy = base.clone();
            copy.id = it.suffixed(&stage.id);
            // Copies run beside the other stages of their `parallel:` block.
            copy.parallel_group = stage.parallel_group.or(Some(group_for_copies));
            copy.loop_group = Some(group_for_copies);
            copy.max_concurrency = max_concurrency;
            copy.iteration = Some(it);
            copy
        })
        .collect())
}

/// The pipeline with every strategy expanded: looped stages become
/// copies sharing a new `parallel_group`, looped steps and groups become
/// `Parallel` blocks of copies.
pub fn expand_pipeline(
    pipeline: &Pipeline,
    inputs: &dyn Inputs,
) -> Result<Pipeline, StrategyError> {
    let mut next_group = pipeline
        .stages
        .iter()
        .filter_map(|s| s.parallel_group)
        .max()
        .unwrap_or(0)
        + 1;
    let mut stages = Vec::with_capacity(pipeline.stages.len());
    for stage in &pipeline.stages {
        stages.extend(expand_stage(stage, inputs, next_group)?);
        if stage.strategy.is_some() {
            next_group += 1;
        }
    }
    Ok(Pipeline {
        stages,
        ..pipeline.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Str {
        Str::new(v, Location::new(1, 1))
    }

    fn matrix(axes: &[(&str, &[&str])], exclude: &[&[(&str, &str)]]) -> Strategy {
        Strategy::Matrix(Matrix {
            axes: axes
                .iter()
                .map(|(k, vs)| (s(k), Axis::Values(vs.iter().map(|v| s(v)).collect())))
                .collect(),
            exclude: exclude
                .iter()
                .map(|ex| ex.iter().map(|(k, v)| (s(k), s(v))).collect())
                .collect(),
            max_concurrency: Some(Setting::Value(2)),
            loc: Location::new(1, 1),
        })
    }

    #[test]
    fn matrix_is_a_product_minus_exclusions() {
        let m = matrix(
            &[("os", &["linux", "mac"]), ("py", &["3.8", "3.9"])],
            &[&[("os", "mac"), ("py", "3.8")]],
        );
        let its = m.iterations(&LiteralsOnly).unwrap();
        let got: Vec<(usize, usize, Option<&str>, Option<&str>)> = its
            .iter()
            .map(|i| (i.index, i.count, i.matrix_value("os"), i.matrix_value("py")))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 3, Some("linux"), Some("3.8")),
                (1, 3, Some("linux"), Some("3.9")),
                (2, 3, Some("mac"), Some("3.9")),
            ]
        );
        assert_eq!(m.max_concurrency(&LiteralsOnly).unwrap(), Some(2));
    }

    #[test]
    fn repeat_and_parallelism_count_iterations() {
        let items = Strategy::Repeat(Repeat {
            source: RepeatSource::Items(Axis::Values(vec![s("usw"), s("use")])),
            max_concurrency: None,
            loc: Location::new(1, 1),
        });
        let its = items.iterations(&LiteralsOnly).unwrap();
        assert_eq!(its[1].repeat_item.as_deref(), Some("use"));
        assert_eq!(its[1].suffixed(&s("deploy")).value, "deploy_1");

        let par = Strategy::Parallelism {
            count: Setting::Value(5),
            max_concurrency: None,
            loc: Location::new(1, 1),
        };
        let its = par.iterations(&LiteralsOnly).unwrap();
        assert_eq!((its.len(), its[4].index, its[4].count), (5, 4, 5));

        let zero = Strategy::Parallelism {
            count: Setting::Value(0),
            max_concurrency: None,
            loc: Location::new(1, 1),
        };
        assert!(matches!(
            zero.iterations(&LiteralsOnly),
            Err(StrategyError::Empty { .. })
        ));
    }

    #[test]
    fn expressions_need_inputs() {
        struct Fixed;
        impl Inputs for Fixed {
            fn list(&self, _: &Str) -> Result<Vec<String>, String> {
                Ok(vec!["18".into(), "20".into()])
            }
            fn number(&self, _: &Str) -> Result<u32, String> {
                Ok(3)
            }
        }
        let m = Strategy::Matrix(Matrix {
            axes: vec![(
                s("node"),
                Axis::Expr(s("<+pipeline.variables.v.split(\",\")>")),
            )],
            exclude: Vec::new(),
            max_concurrency: None,
            loc: Location::new(1, 1),
        });
        assert!(matches!(
            m.iterations(&LiteralsOnly),
            Err(StrategyError::Unresolved { .. })
        ));
        let its = m.iterations(&Fixed).unwrap();
        assert_eq!(its[1].matrix_value("node"), Some("20"));
    }
}
