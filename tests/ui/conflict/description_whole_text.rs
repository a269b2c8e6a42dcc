use evalkit::Evaluation;

// Perplexity scores whole texts: there is no context for a description to precede.
#[derive(Evaluation)]
#[eval(kind = perplexity, description = "Wikipedia.\n\n")]
struct Page {
    #[eval(text)]
    body: String,
}

fn main() {}
