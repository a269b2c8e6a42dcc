use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity, kind = next_token)]
struct Row {
    #[eval(text, text)]
    text: String,
}

fn main() {}
