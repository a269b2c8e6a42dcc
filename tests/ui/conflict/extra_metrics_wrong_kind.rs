use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = loglikelihood, context = "{a}", continuation = "{b}", extra_metrics = Self::mass)]
struct Row {
    a: String,
    b: String,
}

fn main() {}
