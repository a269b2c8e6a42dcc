use evalkit::Evaluation;

// In partial scoring the choices are whole contexts: an answer given as text matches none.
#[derive(Evaluation)]
#[eval(kind = multiple_choice, contexts = Self::contexts, continuation = "{rest}")]
struct Row {
    rest: String,
    #[eval(answer = text)]
    right: String,
}

impl Row {
    fn contexts(&self) -> Vec<String> {
        vec![]
    }
}

fn main() {}
