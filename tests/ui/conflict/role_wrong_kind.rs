use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity, max_new_tokens = 4)]
struct Row {
    #[eval(text)]
    text: String,
    #[eval(target)]
    target: String,
}

fn main() {}
