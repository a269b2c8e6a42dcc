use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(name = "arc/easy", kind = loglikelihood)]
struct Row {
    #[eval(context)]
    context: String,
    #[eval(continuation)]
    continuation: String,
}

fn main() {}
