use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
struct Row(String);

fn main() {}
