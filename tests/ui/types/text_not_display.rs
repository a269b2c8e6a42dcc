use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
struct Row {
    #[eval(text)]
    bytes: Vec<u8>,
}

fn main() {}
