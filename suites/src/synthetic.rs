//! Synthetic benchmarks generated in code, deterministic per seed, with a difficulty knob:
//! arithmetic (generation), copying (next token), sorting and bracket matching (multiple
//! choice). They need no data files, so the demo and `cargo test` score gates use them.

use evalkit_core::Evaluation;
use rand::{Rng, SeedableRng};

/// How many rows and how hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// Rows to generate.
    pub rows: usize,
    /// Difficulty: digits of the operands, length of sequences.
    pub difficulty: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            rows: 100,
            difficulty: 2,
            seed: 0,
        }
    }
}

fn rng(c: &SyntheticConfig, salt: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(c.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt)
}

/// `a + b` or `a - b` with `difficulty`-digit operands.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "synthetic_arithmetic", kind = generate, max_new_tokens = 8, stop("\n"), prompt = "Q: What is {a} {op} {b}?\nA:", clean = first_number, check = number_match)]
pub struct Arithmetic {
    /// Left operand.
    pub a: i64,
    /// `+` or `-`.
    pub op: char,
    /// Right operand.
    pub b: i64,
    /// The result.
    #[eval(target)]
    pub result: i64,
}

/// Generates arithmetic problems.
pub fn arithmetic(c: &SyntheticConfig) -> Vec<Arithmetic> {
    let mut r = rng(c, 1);
    let hi = 10i64.pow(c.difficulty.clamp(1, 9) as u32);
    (0..c.rows)
        .map(|_| {
            let (a, b) = (r.random_range(0..hi), r.random_range(0..hi));
            let op = if r.random_bool(0.5) { '+' } else { '-' };
            Arithmetic {
                a,
                op,
                b,
                result: if op == '+' { a + b } else { a - b },
            }
        })
        .collect()
}

/// A random word sequence repeated: the last token of the copy is predicted.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "synthetic_copy", kind = next_token, text = "{words} | {words}")]
pub struct Copy {
    /// The sequence.
    pub words: String,
}

const WORDS: [&str; 16] = [
    "cat", "dog", "sun", "tree", "ball", "red", "blue", "big", "fish", "bird", "cake", "milk", "boat", "star", "hat",
    "box",
];

/// Generates copy rows of `difficulty + 2` words.
pub fn copy(c: &SyntheticConfig) -> Vec<Copy> {
    let mut r = rng(c, 2);
    (0..c.rows)
        .map(|_| Copy {
            words: (0..c.difficulty + 2)
                .map(|_| WORDS[r.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// Which ordering of numbers is sorted.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "synthetic_sort", kind = multiple_choice, context = "Sort {numbers} from smallest to largest:")]
pub struct Sort {
    /// The numbers as given.
    pub numbers: String,
    /// Candidate orderings.
    #[eval(choices)]
    pub orderings: Vec<String>,
    /// Index of the sorted one.
    #[eval(answer)]
    pub answer: usize,
}

/// Generates sorting rows of `difficulty + 2` numbers with three candidate orderings.
pub fn sort(c: &SyntheticConfig) -> Vec<Sort> {
    let mut r = rng(c, 3);
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    (0..c.rows)
        .map(|_| {
            let n = c.difficulty + 2;
            let mut v: Vec<u32> = Vec::new();
            while v.len() < n {
                let x = r.random_range(0..100);
                if !v.contains(&x) {
                    v.push(x);
                }
            }
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let mut rev = sorted.clone();
            rev.reverse();
            let mut shuffled = sorted.clone();
            shuffled.swap(0, n - 1);
            let mut choices = vec![join(&sorted), join(&rev), join(&shuffled)];
            let answer = r.random_range(0..3);
            choices.swap(0, answer);
            Sort {
                numbers: join(&v),
                orderings: choices,
                answer,
            }
        })
        .collect()
}

/// Whether a bracket string is balanced.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "synthetic_brackets", kind = multiple_choice, context = "Are the brackets in {brackets} balanced? Answer:", choices = Self::no_yes)]
pub struct Brackets {
    /// The bracket string.
    pub brackets: String,
    /// True when balanced.
    #[eval(answer)]
    pub balanced: bool,
}

impl Brackets {
    fn no_yes(&self) -> [&'static str; 2] {
        ["no", "yes"]
    }
}

fn balanced(s: &str) -> bool {
    let mut stack = vec![];
    for c in s.chars() {
        let open = match c {
            '(' | '[' => {
                stack.push(c);
                continue;
            }
            ')' => '(',
            ']' => '[',
            _ => continue,
        };
        if stack.pop() != Some(open) {
            return false;
        }
    }
    stack.is_empty()
}

/// Generates bracket strings of `2 × (difficulty + 1)` characters, about half balanced.
pub fn brackets(c: &SyntheticConfig) -> Vec<Brackets> {
    let mut r = rng(c, 4);
    (0..c.rows)
        .map(|_| {
            let pairs = c.difficulty + 1;
            let mut s = String::new();
            let mut stack = vec![];
            for _ in 0..pairs * 2 {
                if !stack.is_empty() && (s.len() + stack.len() >= pairs * 2 || r.random_bool(0.5)) {
                    s.push(if stack.pop() == Some('(') { ')' } else { ']' });
                } else {
                    let open = if r.random_bool(0.5) { '(' } else { '[' };
                    stack.push(open);
                    s.push(open);
                }
            }
            if r.random_bool(0.5) {
                // Break it: flip one closing bracket's kind.
                if let Some(i) = s.rfind([')', ']']) {
                    let flipped = if &s[i..i + 1] == ")" { "]" } else { ")" };
                    s.replace_range(i..i + 1, flipped);
                }
            }
            let spaced = s.chars().map(String::from).collect::<Vec<_>>().join(" ");
            Brackets {
                balanced: balanced(&s),
                brackets: spaced,
            }
        })
        .collect()
}

/// The evaluation named `name` (one of the four) for `config`.
pub fn evaluation(name: &str, c: &SyntheticConfig) -> Option<Box<dyn evalkit_core::Evaluation>> {
    Some(match name {
        "synthetic_arithmetic" => evalkit_core::task(arithmetic(c)).build(),
        "synthetic_copy" => evalkit_core::task(copy(c)).build(),
        "synthetic_sort" => evalkit_core::task(sort(c)).build(),
        "synthetic_brackets" => evalkit_core::task(brackets(c)).build(),
        _ => return None,
    })
}
