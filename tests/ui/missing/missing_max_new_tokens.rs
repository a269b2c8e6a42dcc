use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = generate, prompt = "Q: {question}\nA:")]
struct Row {
    question: String,
    #[eval(target)]
    answer: String,
}

fn main() {}
