use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = multiple_choice, metric(acc))]
struct Row {
    #[eval(context)]
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    #[eval(answer)]
    label: usize,
}

fn main() {}
