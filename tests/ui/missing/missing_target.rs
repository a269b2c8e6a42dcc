use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 32)]
struct Row {
    #[eval(prompt)]
    question: String,
    answer: String,
}

fn main() {}
