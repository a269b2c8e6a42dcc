use evalkit::Evaluation;

// The field form `answer = letter` written on the struct.
#[derive(Evaluation)]
#[eval(kind = multiple_choice, answer = letter)]
struct Row {
    #[eval(context)]
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    key: String,
}

fn main() {}
