use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 8, clean = no_such_cleaner)]
struct Row {
    #[eval(prompt)]
    question: String,
    #[eval(target)]
    answer: String,
}

fn main() {}
