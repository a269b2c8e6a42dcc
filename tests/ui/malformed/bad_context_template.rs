use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = loglikelihood)]
struct Row {
    #[eval(context = 3)]
    question: String,
    #[eval(continuation)]
    answer: String,
}

fn main() {}
