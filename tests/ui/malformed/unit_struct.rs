use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
struct Row;

fn main() {}
