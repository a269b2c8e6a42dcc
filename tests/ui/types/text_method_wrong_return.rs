use evalkit::Evaluation;

// A text role's method must return the text.
#[derive(Evaluation)]
#[eval(kind = loglikelihood, context = Self::context, continuation = "{rest}")]
struct Row {
    rest: String,
}

impl Row {
    fn context(&self) -> i32 {
        0
    }
}

fn main() {}
