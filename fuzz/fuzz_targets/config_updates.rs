//! Differential fuzzing of `ConfigStore` against a plain-value model:
//! random sequences of updates (succeeding, refused by the closure, refused
//! by a validator, optimistic with a current or stale version), loads,
//! cached reads, subscriptions and history, every result compared.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use unlocked::config::{ConfigStore, UpdateError};

/// Values at or above this are refused by the validator.
const LIMIT: u32 = 50_000;

#[derive(Arbitrary, Debug)]
struct Input {
    history: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Set(u16, u16),
    Add(u16),
    RejectInClosure(u16),
    UpdateIf { back: u8, value: u16 },
    Load,
    ReaderLoad,
    Subscribe,
    SubCheck,
    History(u8),
}

#[derive(Clone, Debug, PartialEq)]
struct Cfg {
    a: u32,
    b: Vec<u16>,
}

/// The model: every committed (version, value), newest last.
struct Model {
    commits: Vec<Cfg>,
}

impl Model {
    fn version(&self) -> u64 {
        self.commits.len() as u64
    }
    fn current(&self) -> &Cfg {
        self.commits.last().unwrap()
    }
    fn apply(&mut self, next: Cfg) -> Result<u64, &'static str> {
        if next.a >= LIMIT {
            return Err("invalid");
        }
        self.commits.push(next);
        Ok(self.version())
    }
}

fuzz_target!(|input: Input| {
    let history = usize::from(input.history % 8) + 1;
    let initial = Cfg {
        a: 0,
        b: Vec::new(),
    };
    let store = ConfigStore::builder(initial.clone())
        .history(history)
        .validator(|c: &Cfg| if c.a < LIMIT { Ok(()) } else { Err("too big") })
        .build()
        .unwrap();
    let mut model = Model {
        commits: vec![initial],
    };
    let mut reader = store.reader();
    let mut subs = Vec::new();
    for (step, op) in input.ops.iter().take(256).enumerate() {
        match *op {
            Op::Set(a, b) => {
                let mut next = model.current().clone();
                next.a = u32::from(a);
                next.b.push(b);
                next.b.truncate(16);
                let expected = model.apply(next.clone());
                let got = store.update(|c| -> Result<(), ()> {
                    *c = next;
                    Ok(())
                });
                compare(step, got, expected);
            }
            Op::Add(n) => {
                let mut next = model.current().clone();
                next.a += u32::from(n);
                let expected = model.apply(next);
                let got = store.update(|c| -> Result<(), ()> {
                    c.a += u32::from(n);
                    Ok(())
                });
                compare(step, got, expected);
            }
            Op::RejectInClosure(n) => {
                let got = store.update(|c| {
                    c.a = u32::from(n);
                    Err(n)
                });
                assert!(
                    matches!(got, Err(UpdateError::Rejected(e)) if e == n),
                    "step {step}"
                );
            }
            Op::UpdateIf { back, value } => {
                let expected_version = model.version().saturating_sub(u64::from(back % 3)).max(1);
                let got = store.update_if(expected_version.into(), |c| -> Result<(), ()> {
                    c.a = u32::from(value);
                    Ok(())
                });
                if expected_version == model.version() {
                    let mut next = model.current().clone();
                    next.a = u32::from(value);
                    compare(step, got, model.apply(next));
                } else {
                    match got {
                        Err(UpdateError::Conflict { expected, actual }) => {
                            assert_eq!(expected.get(), expected_version, "step {step}");
                            assert_eq!(actual.get(), model.version(), "step {step}");
                        }
                        other => panic!("step {step}: expected a conflict, got {other:?}"),
                    }
                }
            }
            Op::Load => {
                let s = store.load();
                assert_eq!((s.version().get(), &*s), (model.version(), model.current()));
            }
            Op::ReaderLoad => {
                let c = reader.load();
                assert_eq!(
                    (c.version().get(), &**c),
                    (model.version(), model.current())
                );
            }
            Op::Subscribe => {
                if subs.len() < 4 {
                    let sub = store.subscribe();
                    assert_eq!(sub.seen().get(), model.version(), "step {step}");
                    subs.push(sub);
                }
            }
            Op::SubCheck => {
                for sub in &mut subs {
                    let before = sub.seen().get();
                    match sub.try_changed() {
                        Some(s) => {
                            assert!(before < model.version(), "step {step}");
                            assert_eq!(
                                (s.version().get(), &*s),
                                (model.version(), model.current())
                            );
                        }
                        None => assert_eq!(before, model.version(), "step {step}"),
                    }
                }
            }
            Op::History(n) => {
                let n = usize::from(n % 10);
                let got: Vec<(u64, Cfg)> = store
                    .history(n)
                    .iter()
                    .map(|s| (s.version().get(), (**s).clone()))
                    .collect();
                let keep = n.min(history).min(model.commits.len());
                let expected: Vec<(u64, Cfg)> = (0..keep)
                    .map(|i| {
                        let idx = model.commits.len() - 1 - i;
                        (idx as u64 + 1, model.commits[idx].clone())
                    })
                    .collect();
                assert_eq!(got, expected, "step {step}");
            }
        }
    }
});

fn compare(
    step: usize,
    got: Result<unlocked::config::Version, UpdateError<()>>,
    expected: Result<u64, &str>,
) {
    match (got, expected) {
        (Ok(v), Ok(e)) => assert_eq!(v.get(), e, "step {step}"),
        (Err(UpdateError::Invalid(_)), Err("invalid")) => {}
        (got, expected) => panic!("step {step}: got {got:?}, model says {expected:?}"),
    }
}
