use evalkit::Evaluation;

// `clean` returns the cleaned text: here a number.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, prompt = "{q}", clean = Self::digits)]
struct Row {
    q: String,
    #[eval(target)]
    a: String,
}

impl Row {
    fn digits(generated: &str) -> usize {
        generated.len()
    }
}

fn main() {}
