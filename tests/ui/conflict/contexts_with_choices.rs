use evalkit::Evaluation;

// Partial scoring gives one context per choice: a choices list as well is a mistake.
#[derive(Evaluation)]
#[eval(kind = multiple_choice, contexts = Self::contexts, continuation = "{rest}")]
struct Row {
    rest: String,
    #[eval(choices)]
    options: Vec<String>,
    #[eval(answer)]
    label: usize,
}

impl Row {
    fn contexts(&self) -> Vec<String> {
        vec![]
    }
}

fn main() {}
