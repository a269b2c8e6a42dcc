use evalkit::Evaluation;

// `check` decides whether a cleaned generation matches the target: it returns bool.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, prompt = "{q}", check = same)]
struct Row {
    q: String,
    #[eval(target)]
    a: String,
}

fn same(target: &str, cleaned: &str) -> f64 {
    (target == cleaned) as u8 as f64
}

fn main() {}
