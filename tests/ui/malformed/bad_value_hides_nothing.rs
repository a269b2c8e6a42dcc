use evalkit::Evaluation;

// The wrong value is the one error: `prompt`, after it, is not reported missing.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = "8", prompt = "{question}")]
struct Row {
    question: String,
    #[eval(target)]
    answer: String,
}

fn main() {}
