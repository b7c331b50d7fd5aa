//! Friendly run names (`brave-owl-417`) for runs created without one, as MLflow does.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "able",
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "daring",
    "eager",
    "fair",
    "fast",
    "gentle",
    "glad",
    "grand",
    "honest",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "mighty",
    "neat",
    "noble",
    "polite",
    "proud",
    "quick",
    "quiet",
    "rare",
    "resilient",
    "shy",
    "silent",
    "smart",
    "steady",
    "sturdy",
    "swift",
    "tidy",
    "vast",
    "warm",
    "wise",
];
const NOUNS: &[&str] = &[
    "ant", "bass", "bear", "bee", "cat", "colt", "crab", "crane", "deer", "dove", "eel", "elk",
    "finch", "fox", "frog", "gnu", "goat", "hare", "hawk", "hen", "jay", "koi", "lark", "lynx",
    "mole", "moth", "newt", "owl", "panda", "ram", "robin", "rook", "seal", "shark", "snail",
    "swan", "toad", "trout", "wasp", "wolf",
];

pub(crate) fn random_run_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("calm");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("owl");
    format!("{adjective}-{noun}-{}", rng.random_range(0..1000))
}
