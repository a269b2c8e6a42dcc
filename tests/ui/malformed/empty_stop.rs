use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 8, stop("\n", ""))]
struct Row {
    #[eval(prompt)]
    question: String,
    #[eval(target)]
    answer: String,
}

fn main() {}
