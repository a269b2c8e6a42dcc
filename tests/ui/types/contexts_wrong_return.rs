use evalkit::Evaluation;

// `contexts` must give the contexts as Vec<String> (or a Result of it).
#[derive(Evaluation)]
#[eval(kind = multiple_choice, contexts = Self::contexts, continuation = "{rest}", answer = Self::first)]
struct Row {
    rest: String,
}

impl Row {
    fn contexts(&self) -> String {
        String::new()
    }
    fn first(&self) -> usize {
        0
    }
}

fn main() {}
