use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = multiple_choice)]
struct Row {
    #[eval(context)]
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    #[eval(answer = letters)]
    key: String,
}

fn main() {}
