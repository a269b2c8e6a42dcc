use evalkit::Evaluation;

// `score` takes (target, cleaned generation) and returns the row's metrics: this one takes
// only the generation.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, prompt = "{q}", score = self.grade)]
struct Row {
    q: String,
    #[eval(target)]
    a: String,
}

impl Row {
    fn grade(&self, generated: &str) -> f64 {
        generated.len() as f64
    }
}

fn main() {}
