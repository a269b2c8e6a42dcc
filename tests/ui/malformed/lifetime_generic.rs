use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = perplexity)]
struct Row<'a> {
    #[eval(text)]
    text: &'a str,
}

fn main() {}
