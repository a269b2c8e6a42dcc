use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
enum Row {
    A(String),
}

fn main() {}
