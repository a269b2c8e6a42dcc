use evalkit::Evaluation;

// `score = self.method` calls a method of the row: here there is none.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, prompt = "{q}", score = self.run_tests)]
struct Row {
    q: String,
    #[eval(target)]
    a: String,
}

fn main() {}
