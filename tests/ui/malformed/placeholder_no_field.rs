use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = multiple_choice, context = "Question: {questoin}\nAnswer:")]
struct Row {
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    #[eval(answer)]
    label: usize,
}

fn main() {}
