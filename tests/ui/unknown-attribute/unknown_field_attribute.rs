use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
struct Row {
    #[eval(text, label)]
    text: String,
}

fn main() {}
